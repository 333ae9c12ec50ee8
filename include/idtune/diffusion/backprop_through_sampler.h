#pragma once
// The baseline gradient: autograd through the unrolled sampler (DRaFT), optionally only
// through the last k steps (DRaFT-k, earlier steps under stop-gradient). Memory grows with
// the number of differentiated steps; the adjoint (adjoint.h) gives the same gradient as
// the full version with memory flat in K.

#include "idtune/core/noise.h"
#include "idtune/core/objective.h"
#include "idtune/diffusion/adjoint.h"
#include "idtune/diffusion/reward_fn.h"
#include "idtune/diffusion/sampler.h"

#include <ATen/core/Tensor.h>

namespace idtune {

struct UnrolledObjective {
  /// J = λ R(Y_K) − β Σ_k c_k per sample, carrying the autograd graph.
  at::Tensor objective;
  at::Tensor reward;       // R(Y_K) per sample, detached
  at::Tensor kl;           // Σ_k c_k per sample, detached
  at::Tensor final_state;  // Y_K, detached
};

struct UnrolledOptions {
  Objective objective;
  /// Record the graph of the last `backprop_steps` steps only (all when < 0 or ≥ K).
  int64_t backprop_steps = -1;
};

/// Samples from `y0` with the batch's noise, recording the graph through θ's model. The
/// reference of `tuned` may be null when β = 0; its `params` are not used.
UnrolledObjective unrolled_objective(const Sampler& sampler, const TunedModel& tuned,
                                     const at::Tensor& y0, const BatchNoise& noise,
                                     const RewardFn& reward, const UnrolledOptions& options = {},
                                     const at::Tensor& c = {});

}  // namespace idtune
