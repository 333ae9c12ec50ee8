#pragma once
// Rewards on points for the Langevin family: R maps particles x [n, d] to [n]. Implicit
// Diffusion only evaluates R (an indicator is fine); unrolling and guidance differentiate it.

#include "idtune/core/name_table.h"

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>
#include <c10/core/ScalarType.h>

#include <functional>
#include <string>
#include <vector>

namespace idtune {

/// x [n, d] → R(x) [n].
using PointReward = std::function<at::Tensor(const at::Tensor&)>;

/// 1(x₁ ≥ 0) (not differentiable at 0) or its smoothing sigmoid(x₁ / s).
enum class RewardGate { Indicator, Sigmoid };
const NameTable<RewardGate>& reward_gate_names();

/// R(x) = gate(x₁) exp(−‖x − c‖²/τ) / α; the defaults are the hexagon experiment's reward
/// (paper §5.1, App. C.1.1, public code's reward_hard); the guidance baseline's smoothed
/// reward is gate = sigmoid, s = 0.5, α = 0.7 (reward_smooth).
struct GatedGaussianRewardOptions {
  std::vector<double> center{4.0, 3.8};
  double tau = 20.0;
  double alpha = 2.5;
  RewardGate gate = RewardGate::Indicator;
  /// s of sigmoid(x₁ / s).
  double sigmoid_scale = 0.5;
};

PointReward gated_gaussian_reward(const GatedGaussianRewardOptions& options);

/// A TorchScript module with forward(x [n, d]) -> [n], loaded onto `device`/`dtype` and
/// checked with a probe call; errors name the file.
PointReward torchscript_point_reward(const std::string& file, int64_t dim, c10::Device device,
                                     c10::ScalarType dtype);

}  // namespace idtune
