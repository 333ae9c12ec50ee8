#pragma once
// The signature every reward has in the engine: images [B, C, H, W] in the model's data
// range -> rewards [B], differentiable in the images.

#include <ATen/core/Tensor.h>

#include <functional>

namespace idtune {

using RewardFn = std::function<at::Tensor(const at::Tensor&)>;

/// R(y) and the cotangent λ ∇_y Σ_b R(y_b); checks the shape and finiteness of R.
struct TerminalReward {
  at::Tensor reward;     // [B], detached
  at::Tensor cotangent;  // a_K, shaped like y
};
TerminalReward evaluate_terminal_reward(const RewardFn& reward, const at::Tensor& y, double lambda);

}  // namespace idtune
