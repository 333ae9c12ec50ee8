#pragma once
// The θ-direction Γ of Algorithm 2 (spec §6), from the current particles X (empirical means
// and covariances over the n particles), for F(π) = −λ E_π[R] + β KL(p_ref ‖ π):
//
//   Γ_rew = Cov[R(X), ∇θV(X, θ)]                  ∇θ E_π[R] = −Cov_π[R, ∇θV]
//   Γ_ref = E_ref[∇θV] − E_X[∇θV]                ∇θ KL(p_ref ‖ π_θ) = E_ref[∇θV] − E_π[∇θV]
//   Γ     = λ Γ_rew + β Γ_ref,                    θ ← θ − η Γ   (descent on F)
//
// Descending Γ_rew increases the reward; descending Γ_ref decreases the KL. (The public JAX
// code adds Γ_ref, which ascends the KL.)

#include "idtune/core/objective.h"
#include "idtune/langevin/potential.h"

#include <ATen/core/Tensor.h>

namespace idtune {

/// Γ_rew = (1/n) Σₙ (Rₙ − R̄) ∇θV(Xₙ, θ), [p]; R [n] is only evaluated, never differentiated.
at::Tensor reward_gradient(const Potential& potential, const at::Tensor& x, const at::Tensor& theta,
                           const at::Tensor& rewards);

/// Γ_ref = mean over reference samples of ∇θV − mean over particles of ∇θV, [p].
at::Tensor reference_gradient(const Potential& potential, const at::Tensor& x,
                              const at::Tensor& theta, const at::Tensor& reference);

/// λ Γ_rew + β Γ_ref in one vector-Jacobian product per point set (the particles' weights
/// λ(Rₙ − R̄)/n − β/n are combined first). `rewards` may be undefined when λ = 0 and
/// `reference` when β = 0.
at::Tensor descent_direction(const Potential& potential, const at::Tensor& x,
                             const at::Tensor& theta, const at::Tensor& rewards,
                             const at::Tensor& reference, const Objective& weights);

}  // namespace idtune
