#include "idtune/langevin/gradient.h"

#include "idtune/core/error.h"

#include <torch/torch.h>

namespace idtune {

namespace {

/// The per-particle weights of Γ_rew: (Rₙ − R̄)/n.
at::Tensor covariance_weights(const at::Tensor& rewards, int64_t n) {
  check(rewards.dim() == 1 && rewards.size(0) == n, "rewards must be [", n,
        "] (one per particle), got ", rewards.sizes());
  return (rewards - rewards.mean()) / double(n);
}

}  // namespace

at::Tensor reward_gradient(const Potential& potential, const at::Tensor& x, const at::Tensor& theta,
                           const at::Tensor& rewards) {
  return descent_direction(potential, x, theta, rewards, {}, {1.0, 0.0});
}

at::Tensor reference_gradient(const Potential& potential, const at::Tensor& x,
                              const at::Tensor& theta, const at::Tensor& reference) {
  return descent_direction(potential, x, theta, {}, reference, {0.0, 1.0});
}

at::Tensor descent_direction(const Potential& potential, const at::Tensor& x,
                             const at::Tensor& theta, const at::Tensor& rewards,
                             const at::Tensor& reference, const Objective& weights) {
  const int64_t n = x.size(0);
  auto particle_weights = torch::zeros({n}, x.options());
  if (weights.lambda != 0) {
    check(rewards.defined(), "descent direction: λ = ", weights.lambda, " but no rewards");
    particle_weights += weights.lambda * covariance_weights(rewards.to(x.options()), n);
  }
  auto gamma = torch::zeros({potential.parameter_count()}, theta.options());
  if (weights.beta != 0) {
    check(reference.defined() && reference.size(0) >= 1, "descent direction: β = ", weights.beta,
          " but no reference samples");
    particle_weights -= weights.beta / double(n);  // − β E_X[∇θV]
    const auto ref_weights =
        torch::full({reference.size(0)}, weights.beta / double(reference.size(0)), x.options());
    gamma += potential.weighted_grad_theta(reference, theta, ref_weights);  // + β E_ref[∇θV]
  }
  if (weights.lambda != 0 || weights.beta != 0)
    gamma += potential.weighted_grad_theta(x, theta, particle_weights);
  return gamma;
}

}  // namespace idtune
