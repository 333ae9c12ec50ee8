#include "idtune/diffusion/score_model.h"

#include "idtune/core/error.h"
#include "idtune/core/text.h"
#include "idtune/core/torchscript.h"

#include <torch/script.h>
#include <torch/torch.h>

#include <cstdio>
#include <filesystem>

namespace idtune {

struct ScoreModel::State {
  torch::jit::Module module;
  ModelCard card;
  Schedule schedule;
  ScoreModelOptions options;
  std::string name;
};

ScoreModel::ScoreModel(std::shared_ptr<State> state) : state_(std::move(state)) {}

ScoreModel::ScoreModel(torch::jit::Module module, ModelCard card, const ScoreModelOptions& options,
                       std::string name)
    : state_(std::make_shared<State>(
          State{std::move(module), card, Schedule(card.schedule), options, std::move(name)})) {
  check(options.dtype == c10::kFloat || options.dtype == c10::kDouble, state_->name,
        ": dtype must be float32 or float64");
  state_->module.eval();
  state_->module.to(options.device, options.dtype);
  for (auto p : state_->module.parameters())
    if (p.is_floating_point()) p.requires_grad_(true);
  validate();
}

ScoreModel ScoreModel::load(const std::string& model_path, const ScoreModelOptions& options) {
  auto module = load_torchscript(model_path, options.device, "model");
  const std::string card_path = card_path_for(model_path);
  check(std::filesystem::is_regular_file(card_path), "model card '", card_path,
        "' does not exist: every model needs a JSON card beside it "
        "(see scripts/export_model.py or docs/model-card.md)");
  ModelCard card = load_model_card(card_path);
  return ScoreModel(std::move(module), std::move(card), options, model_path);
}

void ScoreModel::validate() const {
  auto& s = *state_;
  auto method = s.module.find_method("forward");
  check(method.has_value(), s.name, ": the module has no forward method");
  const auto& args = method->function().getSchema().arguments();
  check(args.size() == 3, s.name, ": forward must take (x, t), found ",
        method->function().getSchema());
  torch::NoGradGuard no_grad;
  auto x = torch::zeros(batch_shape(2), torch::dtype(s.options.dtype).device(s.options.device));
  auto t = torch::full({2}, 0.5 * s.schedule.t_max(), x.options());
  const auto out = output(x, t);
  check(out.sizes() == x.sizes(), s.name, ": forward(x, t) returned shape ",
        shape_string(out.sizes()), ", expected ", shape_string(x.sizes()),
        " (the card's shape with a batch of 2)");
}

at::Tensor ScoreModel::output(const at::Tensor& x, const at::Tensor& t) const {
  auto& s = *state_;
  at::Tensor time = t;
  if (s.card.time_input == TimeInput::Discrete)
    time = t.round().to(s.card.time_dtype == TimeDtype::Long ? torch::kLong : x.scalar_type());
  return call_torchscript(s.module, "forward", {x, time}, s.name);
}

at::Tensor ScoreModel::score(const at::Tensor& x, const at::Tensor& t) const {
  const auto o = output(x, t);
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
  }
  throw std::logic_error("unhandled prediction type");
}

const ModelCard& ScoreModel::card() const { return state_->card; }
const Schedule& ScoreModel::schedule() const { return state_->schedule; }
const std::string& ScoreModel::name() const { return state_->name; }
c10::Device ScoreModel::device() const { return state_->options.device; }
c10::ScalarType ScoreModel::dtype() const { return state_->options.dtype; }

std::vector<int64_t> ScoreModel::batch_shape(int64_t batch) const {
  std::vector<int64_t> shape{batch};
  shape.insert(shape.end(), state_->card.shape.begin(), state_->card.shape.end());
  return shape;
}

std::vector<std::pair<std::string, at::Tensor>> ScoreModel::named_parameters() const {
  std::vector<std::pair<std::string, at::Tensor>> out;
  for (const auto& p : state_->module.named_parameters(/*recurse=*/true))
    if (p.value.is_floating_point()) out.emplace_back(p.name, p.value);
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
  return ScoreModel(std::move(state));
}

ScoreModel ScoreModel::frozen_copy() const {
  auto copy = clone();
  for (auto p : copy.state_->module.parameters()) p.requires_grad_(false);
  return copy;
}

torch::jit::Module& ScoreModel::module() const { return state_->module; }

void ScoreModel::save(const std::string& model_path) const { save(model_path, state_->card); }

void ScoreModel::save(const std::string& model_path, const ModelCard& card) const {
  const std::string tmp = model_path + ".tmp";
  state_->module.save(tmp);
  check(std::rename(tmp.c_str(), model_path.c_str()) == 0, "cannot rename '", tmp, "' to '",
        model_path, "'");
  save_model_card(card, card_path_for(model_path));
}

}  // namespace idtune
