#include "idtune/training/adjoint_queue.h"

#include <torch/torch.h>

namespace idtune {

AdjointQueue::AdjointQueue(const AdjointSolver& solver, const Sampler& sampler,
                           int64_t steps_per_advance)
    : solver_(solver), sampler_(sampler), steps_per_advance_(steps_per_advance) {}

void AdjointQueue::push(QueueSlot completed, const RewardFn& reward) {
  AdjointSlot slot{std::move(completed), sampler_.num_steps() - 1, {}};
  slot.state = solver_.start(reward, slot.sample.path.final_state());
  slots_.push_back(std::move(slot));
}

void AdjointQueue::walk_back(const TunedModel& tuned) {
  for (auto& slot : slots_)
    for (int64_t j = 0; j < steps_per_advance_ && slot.next_step >= 0; ++j, --slot.next_step)
      solver_.step_back(tuned, slot.sample.path.states[slot.next_step], slot.next_step,
                        slot.state);
}

std::optional<AdjointGradient> AdjointQueue::pop_finished() {
  if (slots_.empty() || slots_.front().next_step >= 0) return std::nullopt;
  auto state = std::move(slots_.front().state);
  slots_.pop_front();
  return AdjointSolver::finish(std::move(state));
}

}  // namespace idtune
