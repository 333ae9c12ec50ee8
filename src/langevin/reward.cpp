#include "idtune/langevin/reward.h"

#include "idtune/core/error.h"
#include "idtune/core/torchscript.h"

#include <torch/script.h>
#include <torch/torch.h>

#include <memory>

namespace idtune {

const NameTable<RewardGate>& reward_gate_names() {
  static const NameTable<RewardGate> table = {{"indicator", RewardGate::Indicator},
                                              {"sigmoid", RewardGate::Sigmoid}};
  return table;
}

PointReward gated_gaussian_reward(const GatedGaussianRewardOptions& o) {
  check(!o.center.empty(), "gated-gaussian reward: center must not be empty");
  check(o.tau > 0 && o.alpha > 0 && o.sigmoid_scale > 0,
        "gated-gaussian reward: tau, alpha and sigmoid_scale must be > 0");
  return [o](const at::Tensor& x) {
    check(x.dim() == 2 && x.size(1) == int64_t(o.center.size()),
          "gated-gaussian reward: x must be [n, ", o.center.size(), "] (the size of center), got ",
          x.sizes());
    const auto c = torch::tensor(o.center, x.options());
    const auto bump = torch::exp(-(x - c).square().sum(1) / o.tau) / o.alpha;
    const auto x1 = x.select(1, 0);
    const auto gate = o.gate == RewardGate::Indicator ? x1.ge(0).to(x.scalar_type())
                                                      : torch::sigmoid(x1 / o.sigmoid_scale);
    return gate * bump;
  };
}

PointReward torchscript_point_reward(const std::string& file, int64_t dim, c10::Device device,
                                     c10::ScalarType dtype) {
  auto module = std::make_shared<torch::jit::Module>(load_torchscript(file, device, "reward"));
  module->to(dtype);
  PointReward reward = [module, who = "reward '" + file + "'"](const at::Tensor& x) {
    return call_torchscript(*module, "forward", {x}, who);
  };
  const auto probe = reward(torch::zeros({3, dim}, torch::dtype(dtype).device(device)));
  check(probe.dim() == 1 && probe.size(0) == 3, "reward '", file, "': forward(x [3, ", dim,
        "]) returned shape ", probe.sizes(),
        ", expected [3] (the contract: forward(x [n, d]) -> [n])");
  return reward;
}

}  // namespace idtune
