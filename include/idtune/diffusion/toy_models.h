#pragma once
// Small score models built in memory as real TorchScript modules (they save, load and
// tune like any exported model): the demo's model, the tests' models, the benchmarks'.

#include "idtune/diffusion/model_card.h"
#include "idtune/diffusion/score_model.h"

namespace idtune {

/// The 1-D problem of the paper's §4.3 (spec §7) on images of shape [1, 1, 1], `ou` schedule:
///     s(x, t) = −κ (x − θ e^{−t});  with κ = 1 this is the exact score of p_data = N(θ, 1).
/// Parameters `theta` and `kappa`.
/// Class-conditional when `class_thetas` is set: s(x, t, c) = −κ (x − θ_c e^{−t}), one θ_c
/// per label 0 … n−1 and the null label n (its θ the last entry: n + 1 values).
struct OuGaussianOptions {
  double theta = 0.0;
  double kappa = 1.0;
  double t_max = 1.0;
  ScoreModelOptions model{c10::kCPU, c10::kDouble};
  std::vector<double> class_thetas{};
};
ScoreModel make_ou_gaussian_model(const OuGaussianOptions& options);

/// A two-level U-Net (conv, GroupNorm, SiLU, average-pool down, nearest upsample + conv up,
/// skip connection, sinusoidal time embedding), randomly initialised from `seed`.
struct TinyUNetOptions {
  int64_t channels = 1;
  int64_t size = 8;   // H = W, even
  int64_t width = 8;  // feature channels of the first level, even
  ScheduleOptions schedule;
  Prediction prediction = Prediction::Score;
  uint64_t seed = 0;
  ScoreModelOptions model{c10::kCPU, c10::kDouble};
  /// > 0: class-conditional, forward(x, t, c) with a label embedding added to the time
  /// embedding; labels 0 … classes − 1 and the null label `classes`.
  int64_t classes = 0;
};
ScoreModel make_tiny_unet(const TinyUNetOptions& options);

}  // namespace idtune
