#include "idtune/diffusion/score_model.h"

#include "idtune/core/atomic_file.h"

#include "idtune/core/error.h"
#include "idtune/core/json_reader.h"
#include "idtune/core/text.h"
#include "idtune/core/torchscript.h"

#include <torch/csrc/jit/serialization/export.h>
#include <torch/script.h>
#include <torch/torch.h>

#include <cstdio>
#include <filesystem>
#include <optional>

namespace idtune {

struct ScoreModel::State {
  torch::jit::Module module;
  ModelCard card;
  Schedule schedule;
  ScoreModelOptions options;
  std::string name;
  /// A latent model's decoder (frozen, shared by copies); null otherwise.
  std::shared_ptr<const torch::jit::Module> decoder;
  /// A conditional model's tensor null condition [1, shape…] (null_file), on the device.
  at::Tensor null_tensor;
  /// Low-rank adapters (null: none); a copy of the model gets copies of them.
  std::shared_ptr<LoraAdapters> lora;
};

namespace {

/// The card's output channels (0 in a card built in code means C).
int64_t output_channels(const ModelCard& card) {
  return card.output_channels > 0 ? card.output_channels : card.shape.at(0);
}

/// [batch, shape…].
std::vector<int64_t> with_batch(int64_t batch, const std::vector<int64_t>& shape) {
  std::vector<int64_t> sizes{batch};
  sizes.insert(sizes.end(), shape.begin(), shape.end());
  return sizes;
}

/// `dir/stem.pt` -> `dir/stem<suffix>`: where save() writes a file that travels with the model
/// (a latent model's decoder, a tensor-conditional model's null condition).
std::filesystem::path companion_path(const std::string& model_path, const std::string& suffix) {
  const std::filesystem::path path(model_path);
  return path.parent_path() / (path.stem().string() + suffix);
}

}  // namespace

ScoreModel::ScoreModel(std::shared_ptr<State> state) : state_(std::move(state)) {}

ScoreModel::ScoreModel(torch::jit::Module module, ModelCard card, const ScoreModelOptions& options,
                       std::string name, at::Tensor null_tensor)
    : state_(std::make_shared<State>(State{std::move(module),
                                           card,
                                           Schedule(card.schedule),
                                           options,
                                           std::move(name),
                                           {},
                                           {},
                                           {}})) {
  check(options.dtype == c10::kFloat || options.dtype == c10::kDouble, state_->name,
        ": dtype must be float32 or float64");
  check_precision(options.precision, options.device, options.dtype);
  if (const auto& c = card.condition;
      c && c->kind == ConditionKind::Tensor && !c->null_file.empty()) {
    check(null_tensor.defined() && null_tensor.sizes() == c10::IntArrayRef(c->shape), state_->name,
          ": the null condition '", c->null_file,
          "' must be a tensor of the card's condition shape ", shape_string(c->shape), ", got ",
          null_tensor.defined() ? shape_string(null_tensor.sizes()) : std::string("none"));
    state_->null_tensor = null_tensor.unsqueeze(0).to(options.device, options.dtype);
  }
  state_->module.eval();
  state_->module.to(options.device, options.dtype);
  for (auto p : state_->module.parameters())
    if (p.is_floating_point()) p.requires_grad_(true);
  validate();
}

ScoreModel ScoreModel::load(const std::string& model_path, const ScoreModelOptions& options) {
  auto module = load_torchscript(model_path, options.device, "model");
  const std::string card_path = card_path_for(model_path);
  check(is_existing_file(card_path), "model card '", card_path,
        "' does not exist: every model needs a JSON card beside it "
        "(see scripts/export_model.py or docs/model-card.md)");
  ModelCard card = load_model_card(card_path);
  const auto relative_to_card = [&](const std::string& file) {
    auto path = std::filesystem::path(file);
    return (path.is_relative() ? std::filesystem::path(card_path).parent_path() / path : path)
        .string();
  };
  at::Tensor null_tensor;
  if (card.condition && !card.condition->null_file.empty())
    null_tensor = at_json_path(card_path, "/condition/null_file", [&] {
      return load_saved_tensor(relative_to_card(card.condition->null_file), "null condition");
    });
  ScoreModel model(std::move(module), card, options, model_path, null_tensor);
  if (card.decoder) {
    model.attach_decoder(at_json_path(card_path, "/decoder/file", [&] {
      return load_torchscript(relative_to_card(card.decoder->file), options.device, "decoder");
    }));
  }
  return model;
}

void ScoreModel::attach_decoder(torch::jit::Module decoder) {
  auto& s = *state_;
  check(s.card.decoder.has_value(), s.name, ": a decoder needs the card's \"decoder\" section ",
        "(scale_factor, image_shape)");
  decoder.eval();
  decoder.to(s.options.device, s.options.dtype);
  for (auto p : decoder.parameters()) p.requires_grad_(false);
  s.decoder = std::make_shared<const torch::jit::Module>(std::move(decoder));
  torch::NoGradGuard no_grad;
  const auto probe =
      images(torch::zeros(batch_shape(2), torch::dtype(s.options.dtype).device(s.options.device)));
  const auto expected = with_batch(2, s.card.decoder->image_shape);
  check(probe.sizes() == c10::IntArrayRef(expected), s.name, ": the decoder returned shape ",
        shape_string(probe.sizes()), " for latents ", shape_string(batch_shape(2)), ", expected ",
        shape_string(expected), " (the card's decoder.image_shape)");
}

at::Tensor ScoreModel::images(const at::Tensor& samples) const {
  const auto& s = *state_;
  if (!s.card.decoder) return samples;
  check(s.decoder != nullptr, s.name, ": the card names a decoder, but none is attached");
  return call_torchscript(*s.decoder, "forward", {samples / s.card.decoder->scale_factor},
                          s.name + " decoder");
}

std::vector<at::Tensor> ScoreModel::probe_gradients(const std::vector<at::Tensor>& wrt) const {
  const auto& s = *state_;
  torch::AutoGradMode grad(true);
  const auto options = torch::dtype(s.options.dtype).device(s.options.device);
  const auto x = torch::randn(batch_shape(2), options).requires_grad_(true);
  const auto t = torch::full({2}, 0.5 * s.schedule.t_max(), options);
  std::vector<at::Tensor> inputs{x};
  inputs.insert(inputs.end(), wrt.begin(), wrt.end());
  const auto out = score(x, t, probe_conditions(2));
  auto grads = torch::autograd::grad({out}, inputs, {torch::ones_like(out)}, /*retain_graph=*/false,
                                     /*create_graph=*/false, /*allow_unused=*/true);
  grads.erase(grads.begin());
  return grads;
}

void ScoreModel::check_differentiable() const {
  try {
    probe_gradients(trainable_parameters());
  } catch (const std::exception& e) {
    throw Error(state_->name + ": the model cannot be differentiated (" + error_summary(e) +
                "). A graph traced under torch.no_grad() or in eval mode records inference-only "
                "kernels such as aten::_native_multi_head_attention: re-export it with "
                "scripts/export_model.py, which traces with autograd on and checks this");
  }
}

void ScoreModel::validate() const {
  auto& s = *state_;
  auto method = s.module.find_method("forward");
  check(method.has_value(), s.name, ": the module has no forward method");
  // forward(self, x, t[, c], ...): further arguments need defaults (lucidrains' x_self_cond=None).
  const size_t inputs = s.card.condition ? 4 : 3;
  const auto& args = method->function().getSchema().arguments();
  bool extras_have_defaults = true;
  for (size_t i = inputs; i < args.size(); ++i)
    extras_have_defaults = extras_have_defaults && args[i].default_value().has_value();
  check(args.size() >= inputs && extras_have_defaults, s.name, ": forward must take ",
        s.card.condition ? "(x, t, c): the card declares a condition" : "(x, t)",
        " (any further argument with a default), found ", method->function().getSchema());
  torch::NoGradGuard no_grad;
  auto x = torch::zeros(batch_shape(2), torch::dtype(s.options.dtype).device(s.options.device));
  auto t = torch::full({2}, 0.5 * s.schedule.t_max(), x.options());
  at::Tensor out;
  try {
    out = network(x, t, probe_conditions(2));
  } catch (const Error& e) {
    const std::string message = e.what();
    const bool dtype_mismatch = message.find("same dtype") != std::string::npos ||
                                message.find("expected scalar type") != std::string::npos;
    if (!dtype_mismatch || s.options.dtype == c10::kFloat) throw;
    throw Error(message + "; the network computes part of its graph in a fixed dtype (often a " +
                "time embedding built in float32, which a trace records): run it with dtype " +
                "float32");
  }
  auto expected = x.sizes().vec();
  expected[1] = output_channels(s.card);
  check(out.sizes() == c10::IntArrayRef(expected), s.name, ": forward(x, t) returned shape ",
        shape_string(out.sizes()), ", expected ", shape_string(expected),
        " (the card's shape with a batch of 2)");
}

at::Tensor ScoreModel::network_time(const at::Tensor& t) const {
  const auto& card = state_->card;
  if (card.time_input == TimeInput::Discrete)
    return t.round().to(card.time_dtype == TimeDtype::Long ? torch::kLong : t.scalar_type());
  return card.time_scale == 1.0 ? t : t * card.time_scale;
}

at::Tensor ScoreModel::network(const at::Tensor& x, const at::Tensor& t,
                               const at::Tensor& c) const {
  const auto& s = *state_;
  check_presence(c);
  std::optional<LoraAdapters::Applied> adapted;  // W₀ + (α/r) B A in float32, then autocast
  if (s.lora) adapted.emplace(*s.lora, s.module);
  const AutocastGuard autocast(s.options.precision, s.options.device);
  std::vector<at::Tensor> inputs{x, network_time(t)};
  if (s.card.condition) inputs.push_back(c);
  const auto out = call_torchscript(s.module, "forward", inputs, s.name);
  return out.scalar_type() == s.options.dtype ? out : out.to(s.options.dtype);
}

void ScoreModel::check_presence(const at::Tensor& c) const {
  const auto& s = *state_;
  check(s.card.condition || !c.defined(), s.name, ": conditions were given, but the model is ",
        "not conditional (its card has no \"condition\")");
  check(!s.card.condition || c.defined(), s.name, ": the model is conditional (its card has a ",
        "\"condition\"), but no conditions were given");
}

at::Tensor ScoreModel::probe_conditions(int64_t batch) const {
  const auto& c = state_->card.condition;
  if (!c) return {};
  if (c->has_null()) return null_condition(batch);
  const auto device = state_->options.device;
  if (c->kind == ConditionKind::Class)
    return torch::zeros({batch}, torch::dtype(torch::kLong).device(device));
  return torch::zeros(with_batch(batch, c->shape),
                      torch::dtype(state_->options.dtype).device(device));
}

at::Tensor ScoreModel::null_condition(int64_t batch) const {
  const auto& s = *state_;
  const auto& c = s.card.condition;
  check(c && c->has_null(), s.name, ": classifier-free guidance needs the card's null condition ",
        "(condition.null_class, or condition.null_file for tensor conditions)");
  if (c->kind == ConditionKind::Class)
    return torch::full({batch}, c->null_class, torch::dtype(torch::kLong).device(s.options.device));
  return s.null_tensor.expand(with_batch(batch, c->shape));
}

void ScoreModel::check_conditions(const at::Tensor& c, int64_t batch) const {
  const auto& s = *state_;
  const auto& card = s.card.condition;
  check_presence(c);
  if (!card) return;
  if (card->kind == ConditionKind::Class) {
    check(c.scalar_type() == torch::kLong && c.dim() == 1 && c.size(0) == batch, s.name,
          ": class conditions must be int64 labels [", batch, "], got ", c.scalar_type(), " ",
          shape_string(c.sizes()));
    const auto lo = c.min().item<int64_t>(), hi = c.max().item<int64_t>();
    check(lo >= 0 && hi < card->num_classes, s.name, ": class label ", lo < 0 ? lo : hi,
          " is out of range: the model has ", card->num_classes, " classes (0..",
          card->num_classes - 1, ")");
    return;
  }
  const auto shape = with_batch(batch, card->shape);
  check(c.is_floating_point() && c.sizes() == c10::IntArrayRef(shape), s.name,
        ": tensor conditions must be floating ", shape_string(shape), ", got ", c.scalar_type(),
        " ", shape_string(c.sizes()));
}

at::Tensor ScoreModel::output(const at::Tensor& x, const at::Tensor& t, const at::Tensor& c) const {
  const auto out = network(x, t, c);
  // Channels past C (a learned variance) are not used: the sampler brings its own σ_k.
  return out.size(1) == x.size(1) ? out : out.narrow(1, 0, x.size(1));
}

at::Tensor ScoreModel::guided_score(const at::Tensor& x, const at::Tensor& t, const at::Tensor& c,
                                    double w) const {
  if (w == 0) return score(x, t, c);
  check(c.defined(), state_->name, ": guidance (w = ", w, ") needs the samples' conditions");
  const int64_t B = x.size(0);
  // One batched call for the conditional and the unconditional halves.
  const auto both = score(torch::cat({x, x}), torch::cat({t, t}),
                          torch::cat({c, null_condition(B).to(c.dtype())}));
  return (1 + w) * both.narrow(0, 0, B) - w * both.narrow(0, B, B);
}

at::Tensor ScoreModel::score(const at::Tensor& x, const at::Tensor& t, const at::Tensor& c) const {
  const auto o = output(x, t, c);
  const auto& schedule = state_->schedule;
  auto per_sample = [&](const at::Tensor& v) { return v.view({-1, 1, 1, 1}); };
  switch (state_->card.prediction) {
    case Prediction::Score:
      return o;
    case Prediction::Epsilon:
      return -o / per_sample(schedule.sigma(t));  // s = −ε/σ
    case Prediction::V: {
      auto alpha = per_sample(schedule.alpha(t)), sigma = per_sample(schedule.sigma(t));
      return -(alpha * o + sigma * x) / sigma;  // v = αε − σx₀  =>  s = −(α v + σ x)/σ
    }
    case Prediction::Sample: {
      auto alpha = per_sample(schedule.alpha(t)), sigma = per_sample(schedule.sigma(t));
      return -(x - alpha * o) / sigma.square();  // x = αx₀ + σε  =>  s = −(x − α x̂₀)/σ²
    }
  }
  throw std::logic_error("unhandled prediction type");
}

const ModelCard& ScoreModel::card() const { return state_->card; }
const Schedule& ScoreModel::schedule() const { return state_->schedule; }
const std::string& ScoreModel::name() const { return state_->name; }
c10::Device ScoreModel::device() const { return state_->options.device; }
c10::ScalarType ScoreModel::dtype() const { return state_->options.dtype; }
Precision ScoreModel::precision() const { return state_->options.precision; }

std::vector<int64_t> ScoreModel::batch_shape(int64_t batch) const {
  return with_batch(batch, state_->card.shape);
}

std::vector<std::pair<std::string, at::Tensor>> ScoreModel::named_parameters() const {
  std::vector<std::pair<std::string, at::Tensor>> out;
  for (const auto& p : state_->module.named_parameters(/*recurse=*/true))
    if (p.value.is_floating_point()) out.emplace_back(p.name, p.value);
  if (state_->lora)
    for (auto& adapter : state_->lora->named_parameters()) out.push_back(std::move(adapter));
  return out;
}

std::vector<at::Tensor> ScoreModel::trainable_parameters() const {
  std::vector<at::Tensor> out;
  for (const auto& [name, p] : named_parameters())
    if (p.requires_grad()) out.push_back(p);
  return out;
}

ScoreModel ScoreModel::clone() const {
  auto state = std::make_shared<State>(*state_);
  {
    torch::NoGradGuard no_grad;  // copies stay leaves
    state->module = state_->module.deepcopy();
  }
  const auto original = state_->module.parameters();
  auto copy = state->module.parameters().begin();
  for (const auto& p : original) (*copy++).requires_grad_(p.requires_grad());
  if (state_->lora) state->lora = std::make_shared<LoraAdapters>(state_->lora->clone());
  return ScoreModel(std::move(state));
}

void ScoreModel::add_lora(const LoraOptions& options, uint64_t seed) {
  auto& s = *state_;
  check(!s.lora, s.name, ": the model has adapters already");
  s.lora = std::make_shared<LoraAdapters>(s.module, options, seed, s.name);
  for (auto p : s.module.parameters()) p.requires_grad_(false);
  // Every adapted weight must reach the output: a graph that inlined its weights as constants
  // (torch.jit.freeze) would ignore the slots, and its adapters would silently learn nothing.
  std::vector<at::Tensor> b;  // the B of each adapter (A's gradient is 0 while B = 0)
  for (const auto& [name, p] : s.lora->named_parameters())
    if (ends_with(name, ".lora_B")) b.push_back(p);
  const auto grads = probe_gradients(b);
  const auto targets = s.lora->targets();
  for (size_t i = 0; i < grads.size(); ++i)
    check(grads[i].defined(), s.name, ": lora: the weight '", targets[i],
          "' does not reach forward's output (a frozen graph with its weights inlined, or an ",
          "unused parameter): export the model without torch.jit.freeze, or leave it out of ",
          "lora.targets");
}

const LoraAdapters* ScoreModel::lora() const { return state_->lora.get(); }

ScoreModel ScoreModel::merged() const {
  auto copy = clone();
  if (copy.state_->lora) {
    copy.state_->lora->merge_into(copy.state_->module);
    copy.state_->lora.reset();
  }
  return copy;
}

ScoreModel ScoreModel::frozen_copy() const {
  auto copy = merged();
  for (auto p : copy.state_->module.parameters()) p.requires_grad_(false);
  return copy;
}

torch::jit::Module& ScoreModel::module() const { return state_->module; }

std::vector<std::string> saved_model_files(const std::string& model_path) {
  return {model_path, card_path_for(model_path), companion_path(model_path, "_decoder.pt").string(),
          companion_path(model_path, "_null_condition.pt").string()};
}

void ScoreModel::save(const std::string& model_path) const { save(model_path, state_->card); }

void ScoreModel::save(const std::string& model_path, const ModelCard& card) const {
  if (state_->lora) return merged().save(model_path, card);
  // The files beside it and the card first, the model last: a model file never lacks them.
  // The decoder and the null condition travel with the model: its folder is self-contained.
  check_writable_target(model_path);
  ModelCard saved = card;
  if (state_->decoder) {
    const auto decoder_path = companion_path(model_path, "_decoder.pt");
    write_stream_atomically(decoder_path.string(), [&](const ByteSink& sink) {
      torch::jit::ExportModule(*state_->decoder, sink);
    });
    saved.decoder->file = decoder_path.filename().string();
  }
  if (state_->null_tensor.defined()) {  // torch.save's format: torch.load reads it in Python
    const auto null_path = companion_path(model_path, "_null_condition.pt");
    const auto bytes = torch::pickle_save(state_->null_tensor[0].to(torch::kCPU));
    write_bytes_atomically(null_path.string(), std::string(bytes.begin(), bytes.end()));
    saved.condition->null_file = null_path.filename().string();
  }
  save_model_card(saved, card_path_for(model_path));
  write_stream_atomically(
      model_path, [&](const ByteSink& sink) { torch::jit::ExportModule(state_->module, sink); });
}

}  // namespace idtune
