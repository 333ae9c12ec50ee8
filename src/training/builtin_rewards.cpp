#include "idtune/training/builtin_rewards.h"

#include "idtune/core/error.h"
#include "idtune/core/text.h"
#include "idtune/core/torchscript.h"

#include <ATen/CPUGeneratorImpl.h>
#include <torch/script.h>
#include <torch/torch.h>

#include <charconv>
#include <memory>
#include <utility>

namespace idtune {

const NameTable<BuiltinReward>& builtin_reward_names() {
  static const NameTable<BuiltinReward> table = {
      {"brightness", BuiltinReward::Brightness},
      {"red", BuiltinReward::Red},
      {"channel-mean", BuiltinReward::ChannelMean},
      {"classifier", BuiltinReward::Classifier},
      {"classifier-cond", BuiltinReward::ClassifierCond}};
  return table;
}

const char* builtin_reward_usage(BuiltinReward kind) {
  switch (kind) {
    case BuiltinReward::Brightness:
      return "brightness";
    case BuiltinReward::Red:
      return "red";
    case BuiltinReward::ChannelMean:
      return "channel-mean:<c>";
    case BuiltinReward::Classifier:
      return "classifier:<file.pt>:<class>";
    case BuiltinReward::ClassifierCond:
      return "classifier-cond:<file.pt>";
  }
  throw std::logic_error("unhandled built-in reward");
}

namespace {

constexpr int64_t kProbeBatch = 2;
constexpr uint64_t kProbeSeed = 0;

using DataRange = std::array<double, 2>;

int64_t parse_index(const std::string& text, const std::string& what, const std::string& where) {
  int64_t index = -1;
  const auto result = std::from_chars(text.data(), text.data() + text.size(), index);
  check(result.ec == std::errc() && result.ptr == text.data() + text.size() && index >= 0, where,
        what, " \"", text, "\" is not a non-negative integer");
  return index;
}

/// Pixels mapped to [0, 1] by the card's data range: u = (x − lo) / (hi − lo).
at::Tensor to_unit(const at::Tensor& x, const DataRange& range) {
  return (x - range[0]) / (range[1] - range[0]);
}

NamedReward brightness(const RewardContext& c) {
  return {"brightness", [range = c.card.data_range](const at::Tensor& x) {
            return to_unit(x, range).mean({1, 2, 3});
          }};
}

NamedReward red(const RewardContext& c) {
  check(c.card.shape[0] == 3, c.where, "\"red\" needs RGB images (3 channels); the model card has ",
        "C = ", c.card.shape[0]);
  return {"red", [range = c.card.data_range](const at::Tensor& x) {
            const auto u = to_unit(x, range);
            return u.select(1, 0).mean({1, 2}) - u.narrow(1, 1, 2).mean({1, 2, 3});
          }};
}

NamedReward channel_mean(const std::string& argument, const RewardContext& c) {
  const int64_t C = c.card.shape[0];
  const int64_t channel = parse_index(argument, "channel", c.where);
  check(channel < C, c.where, "channel ", channel, " is out of range: the model card has C = ", C,
        " (valid channels 0..", C - 1, ")");
  return {"channel-mean:" + std::to_string(channel),
          [range = c.card.data_range, channel](const at::Tensor& x) {
            return to_unit(x, range).select(1, channel).mean({1, 2});
          }};
}

/// A TorchScript reward module on the context's device and dtype, its parameters frozen.
std::shared_ptr<const torch::jit::Module> load_module(const std::string& path,
                                                      const RewardContext& c) {
  auto module = std::make_shared<torch::jit::Module>(load_torchscript(path, c.device, "reward"));
  module->to(c.device, c.dtype);
  for (auto p : module->parameters()) p.requires_grad_(false);
  return module;
}

/// forward(x) on a seeded random batch of kProbeBatch images of the card's shape and range.
at::Tensor probe(const torch::jit::Module& module, const RewardContext& c, const std::string& who) {
  torch::NoGradGuard no_grad;
  std::vector<int64_t> shape{kProbeBatch};
  shape.insert(shape.end(), c.card.shape.begin(), c.card.shape.end());
  auto generator = at::make_generator<at::CPUGeneratorImpl>(kProbeSeed);
  const auto [lo, hi] = c.card.data_range;
  const auto u = torch::rand(shape, generator, torch::dtype(torch::kFloat64));
  return call_torchscript(module, "forward", {(lo + (hi - lo) * u).to(c.device, c.dtype)}, who);
}

/// A classifier module, loaded and probed: forward(x) must give logits [B, num_classes].
/// Returns the module and its number of classes.
std::pair<std::shared_ptr<const torch::jit::Module>, int64_t> load_classifier(
    const std::string& path, const RewardContext& c, const std::string& who) {
  auto module = load_module(path, c);
  const auto logits = probe(*module, c, who);
  check(logits.dim() == 2 && logits.size(0) == kProbeBatch, who, " returned shape ",
        shape_string(logits.sizes()), " on a probe batch of ", kProbeBatch,
        " images, expected logits [", kProbeBatch, ", num_classes]");
  return {module, logits.size(1)};
}

/// classifier:<file.pt>:<class>: log p(class | x) = log_softmax(logits)[class].
NamedReward classifier(const std::string& argument, const RewardContext& c) {
  const auto colon = argument.rfind(':');
  check(colon != std::string::npos, c.where, "expected ",
        builtin_reward_usage(BuiltinReward::Classifier));
  const std::string path = trim(argument.substr(0, colon));
  const int64_t k = parse_index(trim(argument.substr(colon + 1)), "class", c.where);
  const std::string who = c.where + "classifier '" + path + "'";
  const auto loaded = load_classifier(path, c, who);  // a lambda cannot capture a binding (C++17)
  const auto& module = loaded.first;
  const int64_t classes = loaded.second;
  check(k < classes, c.where, "class ", k, " is out of range: classifier '", path, "' has ",
        classes, " classes (valid 0..", classes - 1, ")");
  return {"classifier:" + path + ":" + std::to_string(k), [module, who, k](const at::Tensor& x) {
            const auto logits = call_torchscript(*module, "forward", {x}, who);
            check(logits.dim() == 2 && logits.size(1) > k, who, " returned logits of shape ",
                  shape_string(logits.sizes()), ", expected [B, num_classes > ", k, "]");
            return torch::log_softmax(logits, 1).select(1, k);
          }};
}

/// classifier-cond:<file.pt>: log p(c | x) = log_softmax(logits)[c], c each sample's label.
NamedReward conditional_classifier(const std::string& argument, const RewardContext& c) {
  const std::string path = trim(argument);
  const std::string who = c.where + "classifier '" + path + "'";
  const auto module = load_classifier(path, c, who).first;
  return {"classifier-cond:" + path, [module, who](const at::Tensor& x, const at::Tensor& labels) {
            check(labels.defined() && labels.scalar_type() == torch::kLong && labels.dim() == 1,
                  who, ": classifier-cond needs each sample's class label: a class-conditional ",
                  "model tuned with conditions.classes");
            const auto logits = call_torchscript(*module, "forward", {x}, who);
            check(logits.dim() == 2 && logits.size(0) == labels.size(0), who,
                  " returned logits of shape ", shape_string(logits.sizes()), ", expected [",
                  labels.size(0), ", num_classes]");
            return torch::log_softmax(logits, 1).gather(1, labels.view({-1, 1})).squeeze(1);
          }};
}

}  // namespace

NamedReward builtin_reward(BuiltinReward kind, const std::optional<std::string>& argument,
                           const RewardContext& c) {
  const bool takes_argument = kind == BuiltinReward::ChannelMean ||
                              kind == BuiltinReward::Classifier ||
                              kind == BuiltinReward::ClassifierCond;
  check(argument.has_value() == takes_argument, c.where, "expected ", builtin_reward_usage(kind),
        takes_argument ? "" : " (it takes no argument)");
  switch (kind) {
    case BuiltinReward::Brightness:
      return brightness(c);
    case BuiltinReward::Red:
      return red(c);
    case BuiltinReward::ChannelMean:
      return channel_mean(trim(*argument), c);
    case BuiltinReward::Classifier:
      return classifier(*argument, c);
    case BuiltinReward::ClassifierCond:
      return conditional_classifier(*argument, c);
  }
  throw std::logic_error("unhandled built-in reward");
}

NamedReward torchscript_reward(const std::string& path, const RewardContext& c) {
  const std::string who = c.where + "'" + path + "'";
  auto module = load_module(path, c);
  const auto out = probe(*module, c, who);
  check(out.dim() == 1 && out.size(0) == kProbeBatch, who, " returned shape ",
        shape_string(out.sizes()), " on a probe batch of ", kProbeBatch, " images, expected [",
        kProbeBatch, "] (one reward per image)");
  return {path, [module, who](const at::Tensor& x) {
            return call_torchscript(*module, "forward", {x}, who);
          }};
}

}  // namespace idtune
