#pragma once
// The baseline gradient: autograd through the unrolled sampler (DRaFT), optionally only
// through the last k steps (DRaFT-k, earlier steps under stop-gradient). Memory grows with
// the number of differentiated steps; the adjoint (adjoint.h) gives the same gradient as
// the full version with memory flat in K.

#include "idtune/core/noise.h"
#include "idtune/diffusion/reward_fn.h"
#include "idtune/diffusion/sampler.h"
#include "idtune/diffusion/score_model.h"

#include <ATen/core/Tensor.h>

namespace idtune {

struct UnrolledObjective {
  /// J = λ R(Y_K) − β Σ_k c_k per sample, carrying the autograd graph.
  at::Tensor objective;
  at::Tensor reward;       // R(Y_K) per sample, detached
  at::Tensor kl;           // Σ_k c_k per sample, detached
  at::Tensor final_state;  // Y_K, detached
};

/// Samples from `y0` with the noise of batch `stream`, recording the graph of the last
/// `backprop_steps` steps (all when < 0 or ≥ K). `reference` may be null when β = 0.
UnrolledObjective unrolled_objective(const Sampler& sampler, const ScoreModel& model,
                                     const ScoreModel* reference, const at::Tensor& y0,
                                     const Noise& noise, uint64_t stream, const RewardFn& reward,
                                     double lambda, double beta, int64_t backprop_steps = -1);

}  // namespace idtune
