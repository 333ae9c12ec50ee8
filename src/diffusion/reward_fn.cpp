#include "idtune/diffusion/reward_fn.h"

#include "idtune/core/error.h"

#include <torch/torch.h>

namespace idtune {

TerminalReward evaluate_terminal_reward(const RewardFn& reward, const at::Tensor& y, double lambda,
                                        const at::Tensor& c) {
  torch::AutoGradMode enable_grad(true);
  auto input = y.detach().requires_grad_(lambda != 0);
  auto value = reward(input, c);
  check(value.dim() == 1 && value.size(0) == y.size(0), "reward returned shape ", value.sizes(),
        ", expected [", y.size(0), "] (one value per image)");
  check(torch::isfinite(value).all().item<bool>(), "reward returned NaN or Inf");
  if (lambda == 0) return {value.detach(), torch::zeros_like(y)};
  check(value.requires_grad(), "reward does not depend differentiably on the images");
  auto grad = torch::autograd::grad({value.sum()}, {input}, {}, false, false, true)[0];
  check(grad.defined(), "reward does not depend differentiably on the images");
  return {value.detach(), lambda * grad};
}

}  // namespace idtune
