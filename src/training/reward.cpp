#include "idtune/training/reward.h"

#include "idtune/core/error.h"

#include <ATen/CPUGeneratorImpl.h>
#include <torch/script.h>
#include <torch/torch.h>

#include <array>
#include <charconv>
#include <cmath>
#include <filesystem>
#include <optional>
#include <utility>
#include <vector>

namespace idtune {

const NameTable<BuiltinReward>& builtin_reward_names() {
  static const NameTable<BuiltinReward> table = {{"brightness", BuiltinReward::Brightness},
                                                 {"red", BuiltinReward::Red},
                                                 {"channel-mean", BuiltinReward::ChannelMean},
                                                 {"classifier", BuiltinReward::Classifier}};
  return table;
}

namespace {

/// One term w·R_i of the sum; `name` is its normalised spec without the weight.
struct Term {
  double weight;
  std::string name;
  RewardFn fn;
};

constexpr int64_t kProbeBatch = 2;
constexpr uint64_t kProbeSeed = 0;

using DataRange = std::array<double, 2>;

/// What a term's parser needs, and `where`, the prefix of its messages: reward spec "…": term "…":
struct TermContext {
  const ModelCard& card;
  c10::Device device;
  c10::ScalarType dtype;
  std::string where;
};

std::string first_line(const std::string& text) { return text.substr(0, text.find('\n')); }

std::string shape_string(c10::IntArrayRef sizes) {
  std::string out = "[";
  for (size_t i = 0; i < sizes.size(); ++i) out += (i ? ", " : "") + std::to_string(sizes[i]);
  return out + "]";
}

std::string trim(const std::string& text) {
  const auto begin = text.find_first_not_of(" \t\n\r");
  if (begin == std::string::npos) return "";
  return text.substr(begin, text.find_last_not_of(" \t\n\r") - begin + 1);
}

/// The pieces of `text` between `separator`s, trimmed (empty pieces kept).
std::vector<std::string> split(const std::string& text, char separator) {
  std::vector<std::string> pieces;
  size_t begin = 0;
  for (size_t end; (end = text.find(separator, begin)) != std::string::npos; begin = end + 1)
    pieces.push_back(trim(text.substr(begin, end - begin)));
  pieces.push_back(trim(text.substr(begin)));
  return pieces;
}

bool ends_with(const std::string& text, const std::string& suffix) {
  return text.size() >= suffix.size() &&
         text.compare(text.size() - suffix.size(), suffix.size(), suffix) == 0;
}

/// The shortest decimal that parses back to `value`.
std::string format_weight(double value) {
  std::array<char, 32> buffer{};
  const auto result = std::to_chars(buffer.data(), buffer.data() + buffer.size(), value);
  return std::string(buffer.data(), result.ptr);
}

double parse_weight(const std::string& text, const std::string& where) {
  double weight = NAN;
  const auto result = std::from_chars(text.data(), text.data() + text.size(), weight);
  check(
      result.ec == std::errc() && result.ptr == text.data() + text.size() && std::isfinite(weight),
      where, "weight \"", text, "\" is not a finite number (expected [weight \"*\"] name, ",
      "e.g. 0.5*brightness)");
  return weight;
}

int64_t parse_index(const std::string& text, const std::string& what, const std::string& where) {
  int64_t index = -1;
  const auto result = std::from_chars(text.data(), text.data() + text.size(), index);
  check(result.ec == std::errc() && result.ptr == text.data() + text.size() && index >= 0, where,
        what, " \"", text, "\" is not a non-negative integer");
  return index;
}

/// How each built-in is written, for messages.
const char* usage(BuiltinReward kind) {
  switch (kind) {
    case BuiltinReward::Brightness:
      return "brightness";
    case BuiltinReward::Red:
      return "red";
    case BuiltinReward::ChannelMean:
      return "channel-mean:<c>";
    case BuiltinReward::Classifier:
      return "classifier:<file.pt>:<class>";
  }
  throw std::logic_error("unhandled built-in reward");
}

std::string valid_names() {
  std::string written;
  for (const auto& entry : builtin_reward_names())
    written += (written.empty() ? "" : ", ") + std::string(usage(entry.second));
  return list_names(builtin_reward_names()) + " (written " + written +
         "), or a TorchScript file <path>.pt";
}

/// Pixels mapped to [0, 1] by the card's data range: u = (x − lo) / (hi − lo).
at::Tensor to_unit(const at::Tensor& x, const DataRange& range) {
  return (x - range[0]) / (range[1] - range[0]);
}

Term brightness_term(const TermContext& c) {
  return {1.0, "brightness", [range = c.card.data_range](const at::Tensor& x) {
            return to_unit(x, range).mean({1, 2, 3});
          }};
}

Term red_term(const TermContext& c) {
  check(c.card.shape[0] == 3, c.where, "\"red\" needs RGB images (3 channels); the model card has ",
        "C = ", c.card.shape[0]);
  return {1.0, "red", [range = c.card.data_range](const at::Tensor& x) {
            const auto u = to_unit(x, range);
            return u.select(1, 0).mean({1, 2}) - u.narrow(1, 1, 2).mean({1, 2, 3});
          }};
}

Term channel_mean_term(const std::string& argument, const TermContext& c) {
  const int64_t C = c.card.shape[0];
  const int64_t channel = parse_index(argument, "channel", c.where);
  check(channel < C, c.where, "channel ", channel, " is out of range: the model card has C = ", C,
        " (valid channels 0..", C - 1, ")");
  return {1.0, "channel-mean:" + std::to_string(channel),
          [range = c.card.data_range, channel](const at::Tensor& x) {
            return to_unit(x, range).select(1, channel).mean({1, 2});
          }};
}

/// forward(x) of a reward module, as a Tensor; `where` starts its messages.
at::Tensor call_module(torch::jit::Module& module, const at::Tensor& x, const std::string& where) {
  c10::IValue out;
  try {
    out = module.forward({x});
  } catch (const std::exception& e) {  // c10::Error, or the interpreter's std::runtime_error
    throw Error(where + "forward(x) failed on images " + shape_string(x.sizes()) + " (" +
                first_line(e.what()) + ")");
  }
  check(out.isTensor(), where, "forward(x) must return a Tensor, returned ", out.tagKind());
  return out.toTensor();
}

/// Loads a TorchScript reward on the context's device and dtype, its parameters frozen.
torch::jit::Module load_module(const std::string& path, const TermContext& c) {
  check(std::filesystem::is_regular_file(path), c.where, "file '", path,
        "' does not exist (expected a TorchScript file written by torch.jit.save)");
  torch::jit::Module module;
  try {
    module = torch::jit::load(path, c.device);
  } catch (const std::exception& e) {
    throw Error(c.where + "cannot load '" + path + "' as TorchScript (" + first_line(e.what()) +
                "): expected a file written by torch.jit.save of a scripted or traced module");
  }
  module.eval();
  module.to(c.device, c.dtype);
  for (auto p : module.parameters()) p.requires_grad_(false);
  return module;
}

/// forward(x) on a seeded random batch of kProbeBatch images of the card's shape and range.
at::Tensor probe(torch::jit::Module& module, const TermContext& c) {
  torch::NoGradGuard no_grad;
  std::vector<int64_t> shape{kProbeBatch};
  shape.insert(shape.end(), c.card.shape.begin(), c.card.shape.end());
  auto generator = at::make_generator<at::CPUGeneratorImpl>(kProbeSeed);
  const auto [lo, hi] = c.card.data_range;
  const auto u = torch::rand(shape, generator, torch::dtype(torch::kFloat64));
  return call_module(module, (lo + (hi - lo) * u).to(c.device, c.dtype), c.where);
}

Term module_term(const std::string& path, const TermContext& c) {
  auto module = load_module(path, c);
  const auto out = probe(module, c);
  check(out.dim() == 1 && out.size(0) == kProbeBatch, c.where, "'", path, "' returned shape ",
        shape_string(out.sizes()), " on a probe batch of ", kProbeBatch, " images, expected [",
        kProbeBatch, "] (one reward per image)");
  return {1.0, path, [module, where = c.where](const at::Tensor& x) mutable {
            return call_module(module, x, where);
          }};
}

/// classifier:<file.pt>:<class>: log p(class | x) = log_softmax(logits)[class].
Term classifier_term(const std::string& argument, const TermContext& c) {
  const auto colon = argument.rfind(':');
  check(colon != std::string::npos, c.where, "expected ", usage(BuiltinReward::Classifier));
  const std::string path = trim(argument.substr(0, colon));
  const int64_t k = parse_index(trim(argument.substr(colon + 1)), "class", c.where);
  auto module = load_module(path, c);
  const auto logits = probe(module, c);
  check(logits.dim() == 2 && logits.size(0) == kProbeBatch, c.where, "classifier '", path,
        "' returned shape ", shape_string(logits.sizes()), " on a probe batch of ", kProbeBatch,
        " images, expected logits [", kProbeBatch, ", num_classes]");
  check(k < logits.size(1), c.where, "class ", k, " is out of range: classifier '", path, "' has ",
        logits.size(1), " classes (valid 0..", logits.size(1) - 1, ")");
  return {1.0, "classifier:" + path + ":" + std::to_string(k),
          [module, where = c.where, k](const at::Tensor& x) mutable {
            const auto logits = call_module(module, x, where);
            check(logits.dim() == 2 && logits.size(1) > k, where, "returned logits of shape ",
                  shape_string(logits.sizes()), ", expected [B, num_classes > ", k, "]");
            return torch::log_softmax(logits, 1).select(1, k);
          }};
}

Term builtin_term(BuiltinReward kind, const std::optional<std::string>& argument,
                  const TermContext& c) {
  const bool takes_argument =
      kind == BuiltinReward::ChannelMean || kind == BuiltinReward::Classifier;
  check(argument.has_value() == takes_argument, c.where, "expected ", usage(kind),
        takes_argument ? "" : " (it takes no argument)");
  switch (kind) {
    case BuiltinReward::Brightness:
      return brightness_term(c);
    case BuiltinReward::Red:
      return red_term(c);
    case BuiltinReward::ChannelMean:
      return channel_mean_term(trim(*argument), c);
    case BuiltinReward::Classifier:
      return classifier_term(*argument, c);
  }
  throw std::logic_error("unhandled built-in reward");
}

/// name := builtin[:argument] | <file.pt>
Term named_term(const std::string& name, const TermContext& c) {
  const auto colon = name.find(':');
  const std::string head = trim(name.substr(0, colon));
  std::optional<std::string> argument;
  if (colon != std::string::npos) argument = name.substr(colon + 1);
  for (const auto& [builtin, kind] : builtin_reward_names())
    if (head == builtin) return builtin_term(kind, argument, c);
  check(ends_with(name, ".pt"), c.where, "unknown reward \"", name,
        "\"; valid names: ", valid_names());
  return module_term(name, c);
}

/// term := [weight "*"] name
Term parse_term(const std::string& text, const TermContext& c) {
  const auto star = text.find('*');
  const double weight =
      star == std::string::npos ? 1.0 : parse_weight(trim(text.substr(0, star)), c.where);
  const std::string name = star == std::string::npos ? text : trim(text.substr(star + 1));
  check(!name.empty(), c.where, "no reward name after the weight; valid names: ", valid_names());
  Term term = named_term(name, c);
  term.weight = weight;
  return term;
}

}  // namespace

struct Reward::State {
  std::string name;
  std::vector<Term> terms;
};

Reward::Reward(std::shared_ptr<const State> state) : state_(std::move(state)) {}

Reward Reward::parse(const std::string& spec, const ModelCard& card, c10::Device device,
                     c10::ScalarType dtype) {
  const std::string where = "reward spec \"" + spec + "\": ";
  check(!trim(spec).empty(), "reward spec is empty: expected a weighted sum of terms such as ",
        "\"brightness\" or \"0.5*brightness + 2*red\"; valid names: ", valid_names());
  check(card.shape.size() == 3, where, "the model card's shape must be [C, H, W], got ",
        shape_string(card.shape));
  check(dtype == c10::kFloat || dtype == c10::kDouble, where, "dtype must be float32 or float64");
  auto state = std::make_shared<State>();
  const auto texts = split(spec, '+');
  for (size_t i = 0; i < texts.size(); ++i) {
    check(!texts[i].empty(), where, "term ", i + 1, " of ", texts.size(),
          " is empty (expected term (\"+\" term)*, e.g. 0.5*brightness + 2*red)");
    const std::string term_where =
        texts.size() == 1 ? where : where + "term \"" + texts[i] + "\": ";
    auto term = parse_term(texts[i], {card, device, dtype, term_where});
    state->name +=
        (i ? " + " : "") + (term.weight == 1.0 ? "" : format_weight(term.weight) + "*") + term.name;
    state->terms.push_back(std::move(term));
  }
  return Reward(std::move(state));
}

at::Tensor Reward::operator()(const at::Tensor& images) const {
  const auto& s = *state_;
  const std::string who = "reward \"" + s.name + "\": ";
  check(images.dim() == 4, who, "expected images [B, C, H, W], got ", shape_string(images.sizes()));
  const int64_t B = images.size(0);
  const bool needs_grad = images.requires_grad() && at::GradMode::is_enabled();
  std::vector<at::Tensor> values;
  at::Tensor total;
  for (const auto& term : s.terms) {
    auto value = term.fn(images);
    check(value.dim() == 1 && value.size(0) == B, who, "term \"", term.name, "\" returned shape ",
          shape_string(value.sizes()), ", expected [", B, "] (one reward per image)");
    check(!needs_grad || value.requires_grad(), who, "term \"", term.name,
          "\" does not depend differentiably on the images (no gradient: a detach(), a constant, ",
          "or integer arithmetic?)");
    total = total.defined() ? total + term.weight * value : term.weight * value;
    values.push_back(std::move(value));
  }
  // One device-to-host sync for the whole sum; the terms are looked at only to name a culprit.
  if (torch::isfinite(total).all().item<bool>()) return total;
  for (size_t i = 0; i < values.size(); ++i)
    check(torch::isfinite(values[i]).all().item<bool>(), who, "term \"", s.terms[i].name,
          "\" returned NaN or Inf");
  throw Error(who + "the weighted sum overflowed to Inf or NaN");
}

const std::string& Reward::name() const { return state_->name; }

RewardFn Reward::function() const {
  return [reward = *this](const at::Tensor& images) { return reward(images); };
}

}  // namespace idtune
