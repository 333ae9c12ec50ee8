#pragma once
// The sampling loop, written once against the Gaussian-chain form of every sampler.

#include "idtune/core/noise.h"
#include "idtune/diffusion/sampler.h"
#include "idtune/diffusion/score_model.h"

#include <ATen/core/Tensor.h>

#include <vector>

namespace idtune {

/// The states Y_0 … Y_K of one batch: all the adjoint needs (spec §4). They live in one
/// [K+1, B, …] buffer allocated up front (K+1 separate tensors fragment the heap).
struct SamplePath {
  at::Tensor storage;              // [K+1, B, C, H, W]
  std::vector<at::Tensor> states;  // views storage[0 … j] of the states recorded so far
  at::Tensor condition{};          // the samples' conditions (undefined: unconditional)
  const at::Tensor& final_state() const { return states.back(); }

  /// A path for `steps` chain steps starting at (a copy of) y0.
  static SamplePath allocate(int64_t steps, const at::Tensor& y0);
  /// Copies the next state into the buffer.
  void record(const at::Tensor& state);
};

/// Throws, naming the model and the first chain step whose state holds NaN or Inf, unless the
/// path's final state is finite (one check; the steps are searched only on failure).
void check_finite_path(const SamplePath& path, const Sampler& sampler, const ScoreModel& model);

/// Y_0 ∼ N(0, I) for batch `stream` (replayable from the noise seed).
at::Tensor initial_state(const ScoreModel& model, int64_t batch, const Noise& noise,
                         uint64_t stream);

/// ξ_k of batch `stream` at chain step k.
at::Tensor step_noise(const ScoreModel& model, const Noise& noise, uint64_t stream, int64_t k,
                      int64_t batch);

/// ξ_k of this rank's `local_batch` samples of `noise`'s batch: its shard's rows of the whole
/// batch's draw (all of it in a single process).
at::Tensor step_noise(const ScoreModel& model, const BatchNoise& noise, int64_t k,
                      int64_t local_batch);

/// Runs all K steps without gradient from `y0` (with conditions `c`, if any), keeping every
/// state; a path that blows up is refused by check_finite_path.
SamplePath sample_path(const Sampler& sampler, const ScoreModel& model, const at::Tensor& y0,
                       const Noise& noise, uint64_t stream, const at::Tensor& c = {});

/// The end of θ's chain and its path KL to a reference (spec §3).
struct SampleWithKl {
  at::Tensor final_state;  // Y_K
  at::Tensor kl;           // Σ_k c_k per sample: the Girsanov estimate of KL(P_θ ‖ P_ref)
};

/// Runs all K steps of θ's chain from `y0` without gradient, adding up per sample the Girsanov
/// increments c_k = ‖m_θ − m_ref‖² / 2σ_k² with the reference's mean on θ's path. Needs a
/// stochastic sampler (the KL is infinite where σ_k = 0).
SampleWithKl sample_with_path_kl(const Sampler& sampler, const ScoreModel& model,
                                 const ScoreModel& reference, const at::Tensor& y0,
                                 const BatchNoise& noise, const at::Tensor& c = {});

}  // namespace idtune
