#pragma once
// The configuration of `idtune langevin`: one JSON file mapped to plain structs, read
// strictly like tune_config.h (unknown keys are errors naming their JSON path; `--set
// a.b=value` overrides any key before validation). docs/configuration.md lists every key.

#include "idtune/langevin/gaussian_mixture.h"
#include "idtune/langevin/reward.h"
#include "idtune/langevin/trainer.h"

#include <nlohmann/json.hpp>

#include <string>
#include <vector>

namespace idtune {

using Matrix = std::vector<std::vector<double>>;

enum class PotentialKind { GaussianMixture, TorchScript };
const NameTable<PotentialKind>& potential_kind_names();
enum class PointRewardKind { None, GatedGaussian, TorchScript };
const NameTable<PointRewardKind>& point_reward_kind_names();
enum class ReferenceKind { None, GaussianMixture, File };
const NameTable<ReferenceKind>& reference_kind_names();

/// A Gaussian mixture as written in a config: logits, and μ, Σ (Σ empty: identity).
struct MixtureSpec {
  std::vector<double> logits;
  Matrix means;
  std::vector<Matrix> covariances;
};

struct PotentialConfig {
  PotentialKind kind = PotentialKind::GaussianMixture;
  /// gaussian-mixture: the parameterisation, and θ₀'s mixture (means, covariances fixed for
  /// `logits`, initial for `full`).
  MixtureParameters parameters = MixtureParameters::Logits;
  MixtureSpec mixture;
  /// torchscript: forward(x [n, dim], θ [p]) -> V [n]; θ₀ from the top-level `theta0`.
  std::string file;
  int64_t dim = 2;
};

struct PointRewardConfig {
  PointRewardKind kind = PointRewardKind::None;
  GatedGaussianRewardOptions gated;
  /// torchscript: forward(x [n, d]) -> [n].
  std::string file;
};

/// The guidance baseline's default R_guide: the public code's reward_smooth (sigmoid gate with
/// s = 0.5, α = 0.7).
PointRewardConfig smoothed_hexagon_reward();

struct ReferenceConfig {
  ReferenceKind kind = ReferenceKind::None;
  /// gaussian-mixture: p_ref = this mixture (exact samples); with the potential's number of
  /// components and dimension it is also the target θ* of `target_distance`.
  MixtureSpec mixture;
  /// file: samples (.csv or .pt).
  std::string file;
  /// Reference samples per step (file: 0 = all of them).
  int64_t batch = 1000;
};

struct LangevinOutputOptions {
  /// Directory of the run: config.json, metrics.jsonl, theta.json, particles.csv.
  std::string run_dir = "runs/langevin";
  /// Outer steps between progress lines (0: never); metrics.jsonl gets every step.
  int64_t log_every = 500;
  /// Write the final particles to particles.csv.
  bool save_particles = true;
};

struct LangevinConfig {
  /// cpu, cuda or cuda:N; float32 or float64.
  std::string device = "cpu";
  std::string dtype = "float64";
  /// Outer steps (see langevin_trainer.h for what one step of each method costs).
  int64_t steps = 5000;
  /// θ₀ as a raw vector (required for torchscript; for a mixture it replaces the one packed
  /// from potential.logits/means/covariances, e.g. to sample with a θ that a run found, while
  /// log_likelihood_ref stays measured under the packed one).
  std::vector<double> theta0;
  PotentialConfig potential;
  PointRewardConfig reward;
  ReferenceConfig reference;
  LangevinTrainerOptions trainer;
  /// guidance: the differentiable reward R_guide of V − w R_guide (default: the smoothed
  /// hexagon reward, sigmoid gate, α = 0.7).
  PointRewardConfig guide = smoothed_hexagon_reward();
  LangevinOutputOptions output;
  /// The file it was read from, for messages (not part of the configuration).
  std::string source;
};

/// Reads the JSON into the structs (unknown keys, types and names refused with the JSON path;
/// `source` names the file). Rules the trainer owns are checked once, by LangevinTrainer, and
/// LangevinRun adds the file and JSON path to their messages.
LangevinConfig parse_langevin_config(const nlohmann::json& json, const std::string& source);
nlohmann::json to_json(const LangevinConfig& config);

}  // namespace idtune
