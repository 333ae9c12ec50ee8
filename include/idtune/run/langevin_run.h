#pragma once
// `idtune langevin` as a library call: the potential, reward, reference and trainer are built
// and validated before the run directory is touched; then the loop writes one metrics line per
// outer step, progress lines, and at the end θ and the particles.
//
// Run directory:
//   config.json      the resolved configuration
//   metrics.jsonl    one line per outer step: step, sampling_steps, updated, reward_mean,
//                    log_likelihood_ref, grad_norm, lr, theta, weights (mixtures),
//                    target_distance (mixture reference), wall_time_s
//   theta.json       the final θ (and mixture weights): feed it back with --set theta0=[...]
//   particles.csv    the final particles, one per line

#include "idtune/core/fair_share.h"
#include "idtune/langevin/config.h"
#include "idtune/langevin/trainer.h"

#include <memory>
#include <string>

namespace idtune {

class LangevinRun {
 public:
  explicit LangevinRun(LangevinConfig config);
  ~LangevinRun();

  /// Runs all steps. Returns false if interrupted (SIGINT/SIGTERM): θ and the particles so far
  /// are written all the same.
  bool run();

  const LangevinTrainer& trainer() const { return *trainer_; }
  std::string path(const std::string& name) const;
  /// "method on potential, N particles, γ = g, K steps, run directory 'd'" (progress lines,
  /// --check).
  std::string summary() const;

 private:
  void log_step(const LangevinReport& report, double wall_time);
  void write_results() const;

  LangevinConfig config_;
  std::shared_ptr<const GaussianMixture> mixture_;  // when the potential is one
  std::unique_ptr<LangevinTrainer> trainer_;
  at::Tensor target_;  // canonical θ* when the reference is a comparable mixture
  FairShare fair_share_ = FairShare::from_environment();  // threads, between steps
};

/// The potential, θ₀, rewards and reference a config describes (files loaded and checked).
LangevinProblem build_langevin_problem(const LangevinConfig& config);

}  // namespace idtune
