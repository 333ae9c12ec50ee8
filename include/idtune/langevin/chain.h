#pragma once
// The unadjusted Langevin algorithm on n particles (spec §6):
//   X_{k+1} = X_k − γ ∇ₓV(X_k, θ_k) + √(2γ) ξ_k,   ξ_k ∼ N(0, I)
// It targets π*(θ) ∝ exp(−V(·, θ)) up to an O(γ) bias. The chain owns the particles and the
// replayable noise (stream 0 of Noise(seed); X_0 = its initial draw, ξ_k its step k), so a run
// and its baselines with the same seed see the same ξ at the same sampling step.

#include "idtune/core/noise.h"

#include <ATen/core/Tensor.h>

namespace idtune {

/// One Langevin step from a given ∇ₓV (so guidance can pass ∇ₓ(V − R)).
at::Tensor langevin_step(const at::Tensor& x, const at::Tensor& grad_x_v, double gamma,
                         const at::Tensor& xi);

class LangevinChain {
 public:
  /// n particles X_0 ∼ N(0, I) in R^d.
  LangevinChain(int64_t particles, int64_t dim, double gamma, uint64_t seed,
                const c10::TensorOptions& options);

  /// ξ for the next step (replayable: a function of the seed and steps()).
  at::Tensor next_noise() const;
  /// X ← X − γ g + √(2γ) ξ with ξ = next_noise(); counts one sampling step.
  void advance(const at::Tensor& grad_x_v);
  /// Replaces the particles (unrolling computes the step itself); counts one sampling step.
  void set_particles(at::Tensor x);

  const at::Tensor& particles() const { return x_; }
  double gamma() const { return gamma_; }
  /// Sampling steps taken: evaluations of ∇ₓV on the particles.
  int64_t steps() const { return steps_; }

 private:
  at::Tensor x_;
  double gamma_;
  Noise noise_;
  int64_t steps_ = 0;
};

}  // namespace idtune
