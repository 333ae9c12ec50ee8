#pragma once
// The double queue (paper's Algorithm 5): completed sample paths enter a second queue whose
// adjoints walk back K/M steps per outer iteration; the one that reaches step 0 yields its
// gradient. Each walking step is one AdjointSolver::step with the θ of that iteration.
//
// LibTorch has no per-sample parameter gradients for an arbitrary TorchScript module, so the
// slots' vector-Jacobian products are one call per slot (the same arithmetic as one batched
// call; a batched call would sum the θ-gradients of different slots together).

#include "idtune/diffusion/adjoint.h"
#include "idtune/training/sample_queue.h"

#include <deque>
#include <optional>
#include <vector>

namespace idtune {

/// A path whose adjoint is being walked back.
struct AdjointSlot {
  QueueSlot sample;
  /// The next step to process, from K−1 down to 0 (−1 when finished).
  int64_t next_step = 0;
  AdjointState state;
};

class AdjointQueue {
 public:
  /// `solver` must outlive the queue; `steps_per_advance` is K/M.
  AdjointQueue(const AdjointSolver& solver, const Sampler& sampler, int64_t steps_per_advance);

  /// A completed path enters: a_K = λ∇R(Y_K).
  void push(QueueSlot completed, const RewardFn& reward);
  /// Every slot walks back K/M steps with the current θ.
  void walk_back(const TunedModel& tuned);
  /// The gradient of the slot that reached step 0 (∇_θ of its batch mean of J), if any.
  std::optional<AdjointGradient> pop_finished();

  const std::deque<AdjointSlot>& slots() const { return slots_; }
  /// Checkpoint restore; throws if a slot does not fit this sampler (K, batches).
  void restore(std::deque<AdjointSlot> slots);

 private:
  const AdjointSolver& solver_;
  const Sampler& sampler_;
  int64_t steps_per_advance_;
  std::deque<AdjointSlot> slots_;  // oldest first
};

}  // namespace idtune
