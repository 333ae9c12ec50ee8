#pragma once
// Gradients through sampling by the exact discrete adjoint (spec §4). Per sample,
//     J(θ; ξ) = λ R(Y_K) − β Σ_k c_k(Y_k; θ),
//     a_K = λ ∇_y R(Y_K);  for k = K−1 … 0:
//       L_k(y, θ) = ⟨a_{k+1}, m_k(y; θ)⟩ − β c_k(y; θ)   (a_{k+1} held constant)
//       a_k = ∇_y L_k(Y_k, θ),   G += ∇_θ L_k(Y_k, θ).
// One vector-Jacobian product per step through θ's model (input and parameters), plus one
// through the frozen reference (input only) when β > 0. Memory: the stored states only.

#include "idtune/core/objective.h"
#include "idtune/diffusion/reward_fn.h"
#include "idtune/diffusion/sampler.h"
#include "idtune/diffusion/sampling.h"
#include "idtune/diffusion/score_model.h"

#include <ATen/core/Tensor.h>

#include <vector>

namespace idtune {

/// What the adjoint differentiates: θ's model, the parameters of it being tuned, and the
/// frozen reference the path KL compares with (may be null when β = 0). Held by reference.
struct TunedModel {
  const ScoreModel& model;
  const std::vector<at::Tensor>& params;
  const ScoreModel* reference = nullptr;
};

/// One step back: a_k, Σ_b ∇_θ L_k, and c_k per sample (zeros when β = 0).
struct AdjointStep {
  at::Tensor a;
  std::vector<at::Tensor> grad;
  at::Tensor kl;
};

/// The gradient of one batch.
struct AdjointGradient {
  /// ∇_θ of the batch mean of J (the ascent direction; the loss −E[J] descends −grad).
  std::vector<at::Tensor> grad;
  at::Tensor reward;  // R(Y_K) per sample
  at::Tensor kl;      // Σ_k c_k per sample: the Girsanov estimate of KL(P_θ ‖ P_ref)
};

/// The adjoint's running state for one batch walking back: a_{k+1} and the sums so far.
struct AdjointState {
  at::Tensor a;
  /// The batch's conditions (undefined: unconditional).
  at::Tensor condition;
  /// While walking: grad holds Σ_b ∇_θ J_b so far; finish() turns it into the batch mean.
  AdjointGradient gradient;
};

class AdjointSolver {
 public:
  /// Throws InvalidOption for an invalid objective (see objective.h) or β > 0 with a
  /// deterministic sampler. `sampler` must outlive the solver (it is held by reference).
  AdjointSolver(const Sampler& sampler, Objective objective);

  const Objective& objective() const { return objective_; }

  /// One step back of the adjoint at states y whose samples are at steps k ([B] int64).
  /// Gradients are summed over the batch.
  AdjointStep step(const TunedModel& tuned, const at::Tensor& y, const at::Tensor& a_next,
                   const at::Tensor& k, const at::Tensor& c = {}) const;

  /// The adjoint at Y_K: a_K = λ ∇_y R(Y_K), R(Y_K) recorded, nothing accumulated yet; the
  /// batch's conditions `c` ride along for the steps back.
  AdjointState start(const RewardFn& reward, const at::Tensor& y_final,
                     const at::Tensor& c = {}) const;
  /// One step back from the state at step k + 1 to step k (y = Y_k), accumulating ∇_θ and c_k.
  void step_back(const TunedModel& tuned, const at::Tensor& y, int64_t k,
                 AdjointState& state) const;
  /// The batch-mean gradient of a state that has walked back to step 0.
  static AdjointGradient finish(AdjointState state);

  /// The exact gradient over a stored path Y_0 … Y_K.
  AdjointGradient gradient(const TunedModel& tuned, const SamplePath& path,
                           const RewardFn& reward) const;

  /// Paper's Algorithm 4 for deterministic samplers (β = 0): states are reconstructed
  /// backwards from Y_K with the current θ instead of stored; memory O(1) in K, approximate.
  AdjointGradient gradient_reverse_ode(const TunedModel& tuned, const at::Tensor& y_final,
                                       const RewardFn& reward) const;

 private:
  const Sampler& sampler_;
  Objective objective_;
};

}  // namespace idtune
