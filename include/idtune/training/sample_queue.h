#pragma once
// The queue of partially denoised batches (spec §5; paper's Algorithms 3, 6, 7). M slots,
// M dividing K; slot m has completed m·K/M steps. One advance moves every slot K/M steps with
// the current θ, all slots in ONE batched model call per step (M·B samples, each at its own
// step k and time τ_k). The slot that completes K steps leaves; a fresh N(0, I) slot enters.

#include "idtune/core/noise.h"
#include "idtune/core/shard.h"
#include "idtune/diffusion/conditions.h"
#include "idtune/diffusion/sampler.h"
#include "idtune/diffusion/sampling.h"
#include "idtune/diffusion/score_model.h"

#include <deque>
#include <optional>
#include <vector>

namespace idtune {

/// One batch in the queue: its path so far and where its noise comes from.
struct QueueSlot {
  /// Noise stream of this batch: its Y_0 and every ξ_k are replayable from (seed, stream).
  uint64_t stream = 0;
  /// Y_0 … Y_j (the adjoint needs them all).
  SamplePath path;
  /// θ version (number of optimiser updates so far) that produced each step 0 … j−1.
  std::vector<int64_t> theta_versions;
  int64_t steps_done() const { return static_cast<int64_t>(path.states.size()) - 1; }
};

struct SampleQueueOptions {
  /// M: number of slots; must divide K. 1 is the nested loop, K the fully single loop.
  int64_t slots = 1;
  /// B: samples per slot, over all ranks.
  int64_t batch = 16;
  /// A conditional model's conditions: each fresh slot draws B from the set, replayably
  /// from (seed, stream); the slot's path carries them.
  std::optional<ConditionSet> conditions{};
  /// Data-parallel: this rank's B/W samples of every slot (noise drawn for B, then sliced).
  Shard shard{};
};

class SampleQueue {
 public:
  /// Throws if M does not divide K or B < 1. `sampler` and `noise` must outlive the queue.
  SampleQueue(const Sampler& sampler, const Noise& noise, SampleQueueOptions options);

  /// Algorithm 3's warm start: fills the queue with θ so that its slots are at steps
  /// 0, K/M, …, (M−1)K/M. Only on an empty queue.
  void warm_start(const ScoreModel& model, int64_t theta_version);
  /// A fresh batch Y_0 ∼ N(0, I) enters at step 0 (on its own new noise stream).
  void push_fresh(const ScoreModel& model);
  /// Every slot advances K/M steps with θ: one batched model call per step.
  void advance(const ScoreModel& model, int64_t theta_version);
  /// The slot that has completed all K steps, removed from the queue (oldest first).
  std::optional<QueueSlot> pop_completed();

  int64_t steps_per_advance() const { return steps_per_advance_; }
  const std::deque<QueueSlot>& slots() const { return slots_; }
  /// Queue state for checkpoints: the slots and the next unused noise stream.
  uint64_t next_stream() const { return next_stream_; }
  /// This rank's samples per slot, B/W.
  int64_t local_batch() const { return local_batch_; }
  /// Checkpoint restore (this rank's share of each slot); throws if the slots do not fit this
  /// queue (count ≤ M, batch B/W,
  /// K + 1 states, staggered stages at multiples of K/M, oldest first).
  void restore(std::deque<QueueSlot> slots, uint64_t next_stream);

 private:
  void advance_one_step(const ScoreModel& model, int64_t theta_version);
  const Sampler& sampler_;
  const Noise& noise_;
  SampleQueueOptions options_;
  int64_t steps_per_advance_;
  int64_t local_batch_;
  std::deque<QueueSlot> slots_;  // oldest (most advanced) first
  uint64_t next_stream_ = 0;
};

}  // namespace idtune
