#pragma once
// Algorithm 2 (Implicit Diffusion, infinite horizon) and its baselines on one engine. One
// call of step() is one outer step:
//
//   implicit   one Langevin step with θ_k, then θ ← θ − η_k Γ(X)           (Alg. 2)
//   nested     T Langevin steps with θ_k fixed, then the same θ update      (Alg. 1 with a
//              warm-started inner chain; T = 1 is exactly implicit)
//   unrolled   T − 1 Langevin steps, then one step X(θ) differentiated by autograd:
//              θ ← θ − η_k ∇θ(−λ mean R(X(θ))) (+ β Γ_ref); R must be differentiable a.e.
//   guidance   Langevin on V(·, θ₀) − w R_guide (a differentiable reward); θ stays θ₀
//   langevin   Langevin with θ fixed (θ₀; or the θ another run found)
//
// Cost accounting: sampling steps (∇ₓV evaluations on the particles) are counted; each update
// also costs one θ-gradient (a vector-Jacobian product), for every method alike.

#include "idtune/core/name_table.h"
#include "idtune/langevin/chain.h"
#include "idtune/langevin/gradient.h"
#include "idtune/langevin/potential.h"
#include "idtune/langevin/reference.h"
#include "idtune/langevin/reward.h"

#include <array>
#include <memory>

namespace torch::optim {
class Optimizer;
}

namespace idtune {

enum class LangevinMethod { Implicit, Nested, Unrolled, Guidance, Fixed };
const NameTable<LangevinMethod>& langevin_method_names();

enum class ThetaOptimiser { Sgd, Adam };
const NameTable<ThetaOptimiser>& theta_optimiser_names();

/// η_k = η (constant) or η / √(k + 1) (inverse-sqrt), k the update index from 0.
enum class StepRule { Constant, InverseSqrt };
const NameTable<StepRule>& step_rule_names();

struct LangevinTrainerOptions {
  LangevinMethod method = LangevinMethod::Implicit;
  /// T: Langevin steps per outer step (nested, unrolled); implicit, guidance, langevin: 1.
  int64_t inner_steps = 1;
  /// n particles, X_0 ∼ N(0, I).
  int64_t particles = 1000;
  /// γ, the Langevin step size.
  double gamma = 0.2;
  Objective objective;
  ThetaOptimiser optimiser = ThetaOptimiser::Sgd;
  /// η.
  double lr = 0.1;
  StepRule step_rule = StepRule::Constant;
  /// Adam's (β₁, β₂) and ε.
  std::array<double, 2> betas{0.9, 0.999};
  double eps = 1e-8;
  /// w of V − w R_guide (guidance).
  double guidance_weight = 1.0;
  /// Every noise draw (X_0, ξ, reference batches) is replayable from it.
  uint64_t seed = 0;
};

/// What the trainer needs besides its options. `reward` is evaluated for metrics and for
/// Γ_rew (may be empty when λ = 0); `reference` is needed when β > 0; `guide` for guidance.
struct LangevinProblem {
  std::shared_ptr<const Potential> potential;
  at::Tensor theta0;
  PointReward reward;
  std::shared_ptr<const ReferenceSamples> reference;
  PointReward guide;
  /// θ of the pretrained π*(θ₀) that log_likelihood_ref is measured under (undefined: θ₀;
  /// differs when a run samples with a θ that another run found).
  at::Tensor theta_pretrained;
};

/// What one outer step did; metrics are of the particles after the step.
struct LangevinReport {
  int64_t step = 0;
  /// Cumulative sampling steps (∇ₓV evaluations), the x-axis of "gradient evaluations".
  int64_t sampling_steps = 0;
  bool updated = false;
  /// Mean of R over the particles (NaN without a reward).
  double reward_mean = 0;
  /// Mean log-likelihood of the particles under the pretrained π*(θ₀) (up to log Z unless
  /// the potential is normalised).
  double log_likelihood_ref = 0;
  double grad_norm = 0, lr = 0;
};

class LangevinTrainer {
 public:
  /// Validates options against the problem (e.g. β > 0 needs a reference).
  LangevinTrainer(LangevinTrainerOptions options, LangevinProblem problem);
  ~LangevinTrainer();

  LangevinReport step();

  const at::Tensor& theta() const { return theta_; }
  const at::Tensor& theta0() const { return problem_.theta0; }
  const at::Tensor& particles() const { return chain_.particles(); }
  const Potential& potential() const { return *problem_.potential; }
  const LangevinTrainerOptions& options() const { return options_; }
  int64_t iteration() const { return iteration_; }

 private:
  void sample(const at::Tensor& theta);
  /// Γ for implicit and nested; the autograd gradient for unrolled.
  at::Tensor implicit_direction();
  at::Tensor unrolled_direction();
  /// θ ← optimiser step with direction Γ at rate η_k; records η_k and |Γ| in `report`.
  void update(const at::Tensor& direction, LangevinReport& report);
  at::Tensor rewards(const at::Tensor& x) const;

  LangevinTrainerOptions options_;
  LangevinProblem problem_;
  LangevinChain chain_;
  at::Tensor theta_;
  std::unique_ptr<torch::optim::Optimizer> optimiser_;
  int64_t iteration_ = 0;
  int64_t updates_ = 0;
};

}  // namespace idtune
