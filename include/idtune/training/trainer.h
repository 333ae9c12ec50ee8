#pragma once
// The Implicit Diffusion trainer (spec §1, §5): sampling and optimisation in one loop.
// One call of step() is one outer iteration of the paper's Algorithm 3 (warm start) or 7
// (no warm start), with the completed slot's gradient from the full adjoint or the double
// queue (Algorithm 5). The baselines run on the same engine: the nested loop (M = 1) and
// backpropagation through the sampler (DRaFT, DRaFT-k).

#include "idtune/core/error.h"
#include "idtune/core/name_table.h"
#include "idtune/core/noise.h"
#include "idtune/core/objective.h"
#include "idtune/core/shard.h"
#include "idtune/diffusion/adjoint.h"
#include "idtune/diffusion/conditions.h"
#include "idtune/diffusion/reward_fn.h"
#include "idtune/diffusion/sampler.h"
#include "idtune/diffusion/score_model.h"
#include "idtune/training/adjoint_queue.h"
#include "idtune/training/sample_queue.h"

#include <nlohmann/json_fwd.hpp>

#include <array>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace torch::optim {
class Adam;
}

namespace idtune {

class ProcessGroup;

enum class Method { Implicit, Nested, Draft, DraftK };
const NameTable<Method>& method_names();

/// How the completed slot's gradient is computed (Implicit and Nested).
enum class GradientEstimator { Adjoint, DoubleQueue };
const NameTable<GradientEstimator>& gradient_estimator_names();

struct OptimiserOptions {
  /// Adam's learning rate, (β₁, β₂), ε and decoupled-from-nothing L2 weight decay.
  double lr = 1e-4;
  std::array<double, 2> betas{0.9, 0.999};
  double eps = 1e-8;
  double weight_decay = 0.0;
  /// Clip the gradient's global L2 norm to this (0: off).
  double clip_grad_norm = 0.0;
  /// EMA of θ with this decay, used for export and grids (0: off).
  double ema_decay = 0.0;
  /// Regular expressions: tune only parameters whose name matches one (empty: all).
  std::vector<std::string> tune;
  /// A non-finite gradient (fp16 overflow, a model that blows up) skips its update; this many
  /// in a row stop the run with θ as it was before them.
  int64_t max_skipped_in_a_row = 5;
};

/// Throws InvalidOption ("optimiser.<key>") for a value outside its range.
void validate(const OptimiserOptions& options);

struct TrainerOptions {
  SamplerOptions sampler;
  Method method = Method::Implicit;
  /// M, the queue's slots (Implicit); must divide the sampler's K.
  int64_t queue_slots = 4;
  /// Algorithm 3 (fill the queue with θ₀ first) or Algorithm 7 (fill it on the way).
  bool warm_start = true;
  GradientEstimator gradient = GradientEstimator::Adjoint;
  /// DraftK: differentiate through the last k sampling steps only.
  int64_t backprop_steps = 1;
  /// B, samples per batch (per slot), over all ranks of a data-parallel run.
  int64_t batch = 16;
  /// F = −λ E[R] + β KL(π_θ ‖ π_ref).
  Objective objective;
  OptimiserOptions optimiser;
  /// Seed of every noise draw: Y_0 and ξ of each batch are replayable from it.
  uint64_t seed = 0;
  /// A conditional model's conditions: each batch draws its own from the set (replayable
  /// from the seed); required for a conditional model, refused for an unconditional one.
  std::optional<ConditionSet> conditions{};
  /// Low-rank adapters (rank > 0): θ is their A and B, drawn from the seed (lora.h).
  LoraOptions lora;
  /// Data-parallel: the ranks compare θ's checksum every this many updates (0: only at the
  /// start); a mismatch stops the run.
  int64_t theta_check_every = 10;
};

/// What one outer iteration did.
struct IterationReport {
  int64_t iteration = 0;
  /// False while the queue fills (no warm start) or the adjoint queue fills (double queue),
  /// and when the update was skipped.
  bool updated = false;
  /// The gradient was not finite: no update (θ, Adam and the EMA unchanged).
  bool skipped = false;
  /// Updates skipped so far in the run.
  int64_t skipped_updates = 0;
  double reward_mean = 0, reward_std = 0, kl = 0, loss = 0, grad_norm = 0, lr = 0;
  /// Per-sample sampling steps this iteration (model evaluations of one image), all ranks.
  int64_t sample_steps = 0;
  /// Data-parallel: seconds in the gradient's all-reduce and the reward's gathers, waiting
  /// for the slowest rank included.
  double reduce_seconds = 0;
  /// The θ version that produced each step of the path whose gradient was applied (Implicit
  /// and Nested with the full adjoint; empty otherwise).
  std::vector<int64_t> theta_versions;
};

/// Thrown by Trainer::step() when optimiser.max_skipped_in_a_row gradients in a row were not
/// finite; θ is the last good one (no update was applied since).
class NonFiniteGradients : public Error {
 public:
  using Error::Error;
};

class Trainer {
 public:
  /// `model` is θ and is tuned in place; the reference θ_ref is a frozen copy taken now.
  /// With a process group (data-parallel, docs/scaling.md), this rank samples its B/W of every
  /// slot, the gradient is averaged over the ranks before clipping and Adam, and the reports
  /// describe the whole batch: W ranks follow the single process's run (to rounding). Every
  /// rank must call every method below that changes state, in the same order.
  Trainer(TrainerOptions options, ScoreModel model, RewardFn reward, ProcessGroup* group = nullptr);
  ~Trainer();

  /// One outer iteration: advance the queue, take the completed slot, compute its gradient,
  /// take an optimiser step, let a fresh slot in.
  IterationReport step();

  const TrainerOptions& options() const { return options_; }
  int64_t iteration() const { return iteration_; }
  /// Number of optimiser updates so far (the θ version).
  int64_t updates() const { return updates_; }
  const ScoreModel& model() const { return model_; }
  const ScoreModel& reference() const { return reference_; }
  const Sampler& sampler() const { return sampler_; }
  const SampleQueue& queue() const { return queue_; }
  /// θ with its EMA weights when EMA is on (a copy), else θ itself.
  ScoreModel export_model() const;

  /// Everything needed to continue bit-identically: θ, EMA, Adam, both queues, counters, and
  /// the run's signature (see signature()). Data-parallel: every rank calls it, the queues are
  /// gathered whole (as one process would hold them) and rank 0 writes.
  void save_checkpoint(const std::string& path) const;
  /// Restores a checkpoint (each rank its share of the queues); throws idtune::Error "saved X,
  /// this run Y" for every field of the signature that differs, before anything is changed.
  /// Another world size re-shards the queues (exact to rounding), unless the double queue's
  /// per-rank partial gradients are in flight.
  void load_checkpoint(const std::string& path);
  /// What a checkpoint must share with the run that resumes it: K, M, B, the sampler's kind
  /// and table, method, gradient estimator, warm start, backprop steps, dtype, λ, β, seed,
  /// EMA on/off, and θ's tuned parameter names and shapes.
  nlohmann::json signature() const;

 private:
  void fill_queue();
  /// The gradient of the queue's completed slot (Implicit, Nested), once one is ready.
  std::optional<AdjointGradient> completed_slot_gradient(IterationReport& report);
  /// What the gradients differentiate: θ, its tuned parameters, the reference when β > 0.
  TunedModel tuned() const;
  AdjointGradient backprop_gradient();
  /// Clips and applies one Adam step; skips it when the gradient is not finite. Returns the
  /// gradient's norm.
  double apply(std::vector<at::Tensor> ascent, IterationReport& report);
  void update_ema();
  /// Data-parallel: the gradient averaged over the ranks and the reward and KL of the whole
  /// batch, so that what follows (clipping, Adam, the report) is the single process's.
  void combine_ranks(AdjointGradient& gradient, IterationReport& report) const;
  void check_theta_identical(const std::string& when) const;

  TrainerOptions options_;
  ProcessGroup* group_;
  Shard shard_;
  ScoreModel model_;
  ScoreModel reference_;
  RewardFn reward_;
  Sampler sampler_;
  Noise noise_;
  AdjointSolver solver_;
  SampleQueue queue_;
  AdjointQueue adjoint_queue_;
  std::vector<at::Tensor> params_;
  std::vector<at::Tensor> ema_;
  std::unique_ptr<torch::optim::Adam> optimiser_;
  bool queue_filled_ = false;  // the warm start (or first slot) happens at the first step()
  int64_t iteration_ = 0;
  int64_t updates_ = 0;
  int64_t skipped_updates_ = 0;
  int64_t skipped_in_a_row_ = 0;
  uint64_t next_draft_stream_ = 0;
};

/// Marks as trainable only the parameters whose name matches one of `patterns` (all when
/// empty); throws listing the parameter names if a pattern matches none.
void select_trainable(const ScoreModel& model, const std::vector<std::string>& patterns);

}  // namespace idtune
