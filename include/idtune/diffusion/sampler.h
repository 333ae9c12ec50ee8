#pragma once
// Samplers as one step of a Gaussian chain (spec §2):
//     Y_{k+1} = m_k(Y_k; θ) + σ_k ξ_k,   m_k(y; θ) = a_k y + b_k s_θ(y, τ_k).
// Every sampler idtune offers is this form with its own table (τ_k, a_k, b_k, σ_k); the
// sampling loop, the queue, the Girsanov KL and the adjoint are written once against it.

#include "idtune/diffusion/score_model.h"

#include "idtune/core/name_table.h"

#include <ATen/core/Tensor.h>

#include <nlohmann/json_fwd.hpp>

#include <string>
#include <utility>
#include <vector>

namespace idtune {

class JsonReader;

enum class SamplerKind { SdeEuler, OdeEuler, Ddpm, Ddim };
const NameTable<SamplerKind>& sampler_names();

/// DDPM's per-step variance: the posterior b̃_i = b_i(1−ᾱ_{i−1})/(1−ᾱ_i), or b_i.
enum class DdpmVariance { Posterior, Beta };
const NameTable<DdpmVariance>& ddpm_variance_names();

/// How τ_0 = t_max > … > τ_K = t_min are spread (continuous schedules): evenly, or
/// quadratically (τ_k = t_min + (t_max − t_min)(1 − k/K)²: small steps near the data, where
/// the score changes fastest).
enum class TimeSpacing { Uniform, Quadratic };
const NameTable<TimeSpacing>& time_spacing_names();

struct SamplerOptions {
  SamplerKind kind = SamplerKind::SdeEuler;
  /// K, the number of chain steps from τ_0 = t_max down to τ_K.
  int64_t steps = 100;
  /// Last time τ_K of a continuous schedule (discrete schedules end at index 0).
  double t_min = 1e-3;
  DdpmVariance ddpm_variance = DdpmVariance::Posterior;
  TimeSpacing spacing = TimeSpacing::Uniform;
  /// w of classifier-free guidance, s = (1 + w) s(x, t, c) − w s(x, t, ∅), in every step
  /// (0: off). Needs a conditional model whose card has a null condition.
  double guidance_scale = 0.0;
};

/// Reads a sampler object (unknown keys rejected).
SamplerOptions parse_sampler_options(JsonReader& reader);
nlohmann::json to_json(const SamplerOptions& options);

/// The coefficients of chain step k (from τ_k to τ_{k+1}).
struct ChainStep {
  double tau;    // τ_k: time fed to the score model
  double a;      // coefficient of y in m_k
  double b;      // coefficient of s_θ(y, τ_k) in m_k
  double sigma;  // σ_k
};

class Sampler {
 public:
  /// Builds the table for `model`'s schedule, device and dtype. Throws if the kind does not
  /// fit the schedule (Euler needs a continuous β(t)) or a value is out of range.
  Sampler(const SamplerOptions& options, const ScoreModel& model);

  const SamplerOptions& options() const { return options_; }
  int64_t num_steps() const { return static_cast<int64_t>(steps_.size()); }
  /// The table row of chain step k: (τ_k, a_k, b_k, σ_k).
  const ChainStep& coefficients(int64_t k) const { return steps_.at(k); }
  /// True when every σ_k > 0 (the path KL is finite).
  bool stochastic() const;
  /// True when some σ_k > 0: the chain needs noise.
  bool needs_noise() const;

  /// Per-sample step indices: a [batch] int64 tensor filled with k.
  at::Tensor indices(int64_t batch, int64_t k) const;
  /// τ_k for each sample; `k` is a [B] int64 tensor (samples may be at different steps).
  at::Tensor times(const at::Tensor& k) const;
  /// σ_k for each sample, shaped [B, 1, 1, 1].
  at::Tensor sigma(const at::Tensor& k) const;
  /// m_k(y; θ) = a_k y + b_k s_θ(y, τ_k[, c]) for each sample, with the options' guidance:
  /// the step stays affine in the network's outputs, so the queue, the adjoint and the KL
  /// are the same with conditions and guidance. `c`: the samples' conditions, or undefined.
  at::Tensor mean(const ScoreModel& model, const at::Tensor& y, const at::Tensor& k,
                  const at::Tensor& c = {}) const;
  /// Y_{k+1} = m_k(Y_k; θ) + σ_k ξ_k; ξ may be undefined for a deterministic sampler.
  at::Tensor advance(const ScoreModel& model, const at::Tensor& y, const at::Tensor& k,
                     const at::Tensor& xi, const at::Tensor& c = {}) const;
  /// Deterministic samplers: Y_k ≈ (Y_{k+1} − b_k s_θ(Y_{k+1}, τ_{k+1})) / a_k, the chain
  /// run backwards with the score at the later point (paper's Algorithm 4).
  at::Tensor reconstruct_previous(const ScoreModel& model, const at::Tensor& y_next,
                                  const at::Tensor& k) const;

 private:
  /// table[k] per sample, shaped [B, 1, 1, 1] to scale images.
  at::Tensor per_sample(const at::Tensor& table, const at::Tensor& k) const;
  SamplerOptions options_;
  std::vector<ChainStep> steps_;
  at::Tensor tau_, a_, b_, sigma_;  // the table on the model's device, in its dtype
  at::Tensor tau_end_;              // τ_{k+1}, for reconstruct_previous
};

}  // namespace idtune
