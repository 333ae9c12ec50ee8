#include "idtune/training/reward.h"

#include "idtune/core/error.h"
#include "idtune/core/text.h"
#include "idtune/training/builtin_rewards.h"

#include <torch/torch.h>

#include <array>
#include <charconv>
#include <cmath>
#include <optional>
#include <utility>
#include <vector>

namespace idtune {

namespace {

/// One term w·R_i of the sum; its reward's name is its normalised spec without the weight.
struct Term {
  double weight;
  NamedReward reward;
};

/// The pieces of `text` between `separator`s, trimmed (empty pieces kept).
std::vector<std::string> split(const std::string& text, char separator) {
  std::vector<std::string> pieces;
  size_t begin = 0;
  for (size_t end; (end = text.find(separator, begin)) != std::string::npos; begin = end + 1)
    pieces.push_back(trim(text.substr(begin, end - begin)));
  pieces.push_back(trim(text.substr(begin)));
  return pieces;
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
      where, "weight \"", clipped(text),
      "\" is not a finite number (expected [weight \"*\"] name, ", "e.g. 0.5*brightness)");
  return weight;
}

std::string valid_names() {
  std::string written;
  for (const auto& entry : builtin_reward_names())
    written += (written.empty() ? "" : ", ") + std::string(builtin_reward_usage(entry.second));
  return list_names(builtin_reward_names()) + " (written " + written +
         "), or a TorchScript file <path>.pt";
}

/// name := builtin[:argument] | <file.pt>
NamedReward named_reward(const std::string& name, const RewardContext& c) {
  const auto colon = name.find(':');
  const std::string head = trim(name.substr(0, colon));
  std::optional<std::string> argument;
  if (colon != std::string::npos) argument = name.substr(colon + 1);
  for (const auto& [builtin, kind] : builtin_reward_names())
    if (head == builtin) return builtin_reward(kind, argument, c);
  check(ends_with(name, ".pt"), c.where, "unknown reward \"", clipped(name),
        "\"; valid names: ", valid_names());
  return torchscript_reward(name, c);
}

/// term := [weight "*"] name
Term parse_term(const std::string& text, const RewardContext& c) {
  const auto star = text.find('*');
  const double weight =
      star == std::string::npos ? 1.0 : parse_weight(trim(text.substr(0, star)), c.where);
  const std::string name = star == std::string::npos ? text : trim(text.substr(star + 1));
  check(!name.empty(), c.where, "no reward name after the weight; valid names: ", valid_names());
  return {weight, named_reward(name, c)};
}

}  // namespace

struct Reward::State {
  std::string name;
  std::vector<Term> terms;
};

Reward::Reward(std::shared_ptr<const State> state) : state_(std::move(state)) {}

Reward Reward::parse(const std::string& spec, const ModelCard& card, c10::Device device,
                     c10::ScalarType dtype) {
  const std::string where = "reward spec \"" + clipped(spec) + "\": ";
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
        texts.size() == 1 ? where : where + "term \"" + clipped(texts[i]) + "\": ";
    auto term = parse_term(texts[i], {card, device, dtype, term_where});
    state->name += (i ? " + " : "") + (term.weight == 1.0 ? "" : format_weight(term.weight) + "*") +
                   term.reward.name;
    state->terms.push_back(std::move(term));
  }
  return Reward(std::move(state));
}

at::Tensor Reward::operator()(const at::Tensor& images, const at::Tensor& c) const {
  const auto& s = *state_;
  const std::string who = "reward \"" + s.name + "\": ";
  check(images.dim() == 4, who, "expected images [B, C, H, W], got ", shape_string(images.sizes()));
  const int64_t B = images.size(0);
  const bool needs_grad = images.requires_grad() && at::GradMode::is_enabled();
  std::vector<at::Tensor> values;
  at::Tensor total;
  for (const auto& term : s.terms) {
    auto value = term.reward.fn(images, c);
    check(value.dim() == 1 && value.size(0) == B, who, "term \"", term.reward.name,
          "\" returned shape ", shape_string(value.sizes()), ", expected [", B,
          "] (one reward per image)");
    check(!needs_grad || value.requires_grad(), who, "term \"", term.reward.name,
          "\" does not depend differentiably on the images (no gradient: a detach(), a constant, ",
          "or integer arithmetic?)");
    total = total.defined() ? total + term.weight * value : term.weight * value;
    values.push_back(std::move(value));
  }
  // One device-to-host sync for the whole sum; the terms are looked at only to name a culprit.
  if (torch::isfinite(total).all().item<bool>()) return total;
  for (size_t i = 0; i < values.size(); ++i)
    check(torch::isfinite(values[i]).all().item<bool>(), who, "term \"", s.terms[i].reward.name,
          "\" returned NaN or Inf");
  throw Error(who + "the weighted sum overflowed to Inf or NaN");
}

const std::string& Reward::name() const { return state_->name; }

RewardFn Reward::function() const {
  return
      [reward = *this](const at::Tensor& images, const at::Tensor& c) { return reward(images, c); };
}

}  // namespace idtune
