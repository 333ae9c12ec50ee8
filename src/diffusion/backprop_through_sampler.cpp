#include "idtune/diffusion/backprop_through_sampler.h"

#include "idtune/core/error.h"
#include "idtune/diffusion/girsanov_kl.h"
#include "idtune/diffusion/sampling.h"

#include <torch/torch.h>

namespace idtune {

UnrolledObjective unrolled_objective(const Sampler& sampler, const TunedModel& tuned,
                                     const at::Tensor& y0, const BatchNoise& noise,
                                     const RewardFn& reward, const UnrolledOptions& options,
                                     const at::Tensor& c) {
  const auto [lambda, beta] = options.objective;
  const int64_t backprop_steps = options.backprop_steps;
  const bool with_kl = beta > 0;
  check(!with_kl || tuned.reference != nullptr, "beta > 0 needs a reference model");
  check(!with_kl || sampler.stochastic(), "beta > 0 needs a stochastic sampler");
  const ScoreModel& model = tuned.model;
  const int64_t K = sampler.num_steps(), batch = y0.size(0);
  const int64_t first_graph_step =
      backprop_steps < 0 ? 0 : std::max<int64_t>(0, K - backprop_steps);
  at::Tensor y = y0, kl = torch::zeros({batch}, y0.options());
  for (int64_t k = 0; k < K; ++k) {
    torch::AutoGradMode grad_mode(k >= first_graph_step);
    if (k == first_graph_step) y = y.detach();  // stop-gradient before the last steps
    const auto index = sampler.indices(batch, k);
    const auto mean = sampler.mean(model, y, index, c);
    if (with_kl)
      kl = kl + girsanov_increment(mean, sampler.mean(*tuned.reference, y, index, c),
                                   sampler.sigma(index));
    y = sampler.needs_noise() ? mean + sampler.sigma(index) * step_noise(model, noise, k, batch)
                              : mean;
  }
  const auto r = reward(y, c);
  check(r.dim() == 1 && r.size(0) == batch, "reward returned shape ", r.sizes(), ", expected [",
        batch, "]");
  return {lambda * r - beta * kl, r.detach(), kl.detach(), y.detach()};
}

}  // namespace idtune
