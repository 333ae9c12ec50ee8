#pragma once
// The built-in rewards and TorchScript reward files: the names of reward.h's grammar. Each sees
// images [B, C, H, W] in the card's data range and returns [B]; built-ins map pixels to [0, 1]
// first, u = (x − lo)/(hi − lo) (the table in reward.h and docs/configuration.md).

#include "idtune/core/name_table.h"
#include "idtune/diffusion/model_card.h"
#include "idtune/diffusion/reward_fn.h"

#include <c10/core/Device.h>
#include <c10/core/ScalarType.h>

#include <optional>
#include <string>

namespace idtune {

/// The built-in reward names (TorchScript files are recognised by their `.pt` ending).
enum class BuiltinReward { Brightness, Red, ChannelMean, Classifier, ClassifierCond };
const NameTable<BuiltinReward>& builtin_reward_names();
/// How a built-in is written in a spec, e.g. "channel-mean:<c>".
const char* builtin_reward_usage(BuiltinReward kind);

/// What a reward needs to be built; `where` starts its messages (e.g. `reward spec "…": `).
struct RewardContext {
  const ModelCard& card;
  c10::Device device;
  c10::ScalarType dtype;
  std::string where;
};

/// A reward function with its normalised spec name ("channel-mean:0", "classifier:f.pt:7").
struct NamedReward {
  std::string name;
  RewardFn fn;
};

/// The built-in `kind` with the text after its colon, if any (`channel-mean:<c>` takes a
/// channel, `classifier:<file.pt>:<class>` a file and a class). Throws idtune::Error for a
/// missing or unexpected argument, an index out of range, or a file that fails its probe.
NamedReward builtin_reward(BuiltinReward kind, const std::optional<std::string>& argument,
                           const RewardContext& context);

/// A TorchScript module x [B, C, H, W] -> [B], loaded on the context's device and dtype with
/// its parameters frozen, and probed on a seeded batch of 2 random images of the card's shape.
NamedReward torchscript_reward(const std::string& path, const RewardContext& context);

}  // namespace idtune
