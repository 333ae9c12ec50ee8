#include "idtune/training/adjoint_queue.h"

#include "idtune/core/error.h"

#include <torch/torch.h>

namespace idtune {

AdjointQueue::AdjointQueue(const AdjointSolver& solver, const Sampler& sampler,
                           int64_t steps_per_advance)
    : solver_(solver), sampler_(sampler), steps_per_advance_(steps_per_advance) {}

void AdjointQueue::push(QueueSlot completed, const RewardFn& reward) {
  AdjointSlot slot{std::move(completed), sampler_.num_steps() - 1, {}};
  slot.state = solver_.start(reward, slot.sample.path.final_state(), slot.sample.path.condition);
  slots_.push_back(std::move(slot));
}

void AdjointQueue::walk_back(const TunedModel& tuned) {
  for (auto& slot : slots_)
    for (int64_t j = 0; j < steps_per_advance_ && slot.next_step >= 0; ++j, --slot.next_step)
      solver_.step_back(tuned, slot.sample.path.states[slot.next_step], slot.next_step, slot.state);
}

void AdjointQueue::restore(std::deque<AdjointSlot> slots) {
  const int64_t K = sampler_.num_steps();
  for (const auto& slot : slots) {
    check(slot.sample.steps_done() == K, "adjoint queue restore: a saved path has ",
          slot.sample.steps_done(), " steps, this sampler K = ", K);
    check(slot.next_step >= -1 && slot.next_step < K, "adjoint queue restore: next step ",
          slot.next_step, " is outside [-1, K)");
    check(slot.state.a.defined() && slot.state.a.size(0) == slot.sample.path.storage.size(1),
          "adjoint queue restore: the adjoint state's batch does not match its path's");
  }
  slots_ = std::move(slots);
}

std::optional<AdjointGradient> AdjointQueue::pop_finished() {
  if (slots_.empty() || slots_.front().next_step >= 0) return std::nullopt;
  auto state = std::move(slots_.front().state);
  slots_.pop_front();
  return AdjointSolver::finish(std::move(state));
}

}  // namespace idtune
