#pragma once
// Noise schedules (spec §2). Everything follows from ᾱ(t), the signal fraction:
//   α(t) = √ᾱ(t),  σ(t) = √(1 − ᾱ(t)),  β(t) = −d log ᾱ(t)/dt,  X_t = α X_0 + σ ε.
// Continuous schedules take t ∈ [0, t_max]; `ddpm-discrete` takes the training step
// index i ∈ {0, …, N−1} as its time (ᾱ_i = Π_{j≤i}(1 − b_j)) and has no β(t).

#include "idtune/core/name_table.h"

#include <ATen/core/Tensor.h>

#include <nlohmann/json_fwd.hpp>

#include <string>
#include <utility>
#include <vector>

namespace idtune {

class JsonReader;

enum class ScheduleKind { Ou, VpLinear, Cosine, DdpmDiscrete };
const NameTable<ScheduleKind>& schedule_names();

/// The discrete beta schedules by diffusers' names (DDPMScheduler's `beta_schedule`):
///   linear             b_i = linspace(beta_start, beta_end, N)
///   scaled_linear      b_i = linspace(√beta_start, √beta_end, N)²   (Stable Diffusion)
///   squaredcos_cap_v2  b_i = min(1 − ᾱ(i+1/N)/ᾱ(i/N), 0.999), ᾱ(t) = cos²((t + 0.008)/1.008 · π/2)
///   sigmoid            b_i = sigmoid(linspace(−6, 6, N)) (beta_end − beta_start) + beta_start
enum class BetaSchedule { Linear, ScaledLinear, SquaredcosCapV2, Sigmoid };
const NameTable<BetaSchedule>& beta_schedule_names();

struct ScheduleOptions {
  ScheduleKind kind = ScheduleKind::Ou;
  /// Horizon T_h of a continuous schedule (`ou`: any > 0; `vp-linear`, `cosine`: ≤ 1).
  double t_max = 1.0;
  /// `vp-linear`: β(t) = β_min + (β_max − β_min) t.
  double beta_min = 0.1;
  double beta_max = 20.0;
  /// `cosine`: the offset s of Nichol & Dhariwal.
  double cosine_s = 0.008;
  /// `ddpm-discrete`: explicit b_j, or explicit ᾱ_j (e.g. a checkpoint's `alphas_cumprod`), or
  /// a named beta schedule over (beta_start, beta_end, num_train_steps).
  std::vector<double> betas;
  std::vector<double> alphas_cumprod;
  BetaSchedule beta_schedule = BetaSchedule::Linear;
  double beta_start = 1e-4;
  double beta_end = 0.02;
  int64_t num_train_steps = 1000;
};

/// Reads a schedule object (unknown keys rejected) and validates it.
ScheduleOptions parse_schedule(JsonReader& reader);
nlohmann::json to_json(const ScheduleOptions& options);

class Schedule {
 public:
  /// Validates `options`; throws idtune::Error naming the bad value.
  explicit Schedule(ScheduleOptions options);

  bool is_discrete() const { return options_.kind == ScheduleKind::DdpmDiscrete; }
  const ScheduleOptions& options() const { return options_; }
  /// Largest time: t_max, or N−1 for `ddpm-discrete`.
  double t_max() const;

  /// ᾱ(t), elementwise on any tensor of times (discrete: indices, rounded).
  at::Tensor alpha_bar(const at::Tensor& t) const;
  at::Tensor alpha(const at::Tensor& t) const;
  at::Tensor sigma(const at::Tensor& t) const;
  /// β(t) = −d log ᾱ/dt (continuous schedules only).
  at::Tensor beta(const at::Tensor& t) const;

  double alpha_bar(double t) const;
  double beta(double t) const;

 private:
  ScheduleOptions options_;
  at::Tensor discrete_alpha_bar_;  // ᾱ_i, float64, ddpm-discrete only
};

}  // namespace idtune
