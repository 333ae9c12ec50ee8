#include "idtune/training/sample_queue.h"

#include "idtune/core/error.h"

#include <torch/torch.h>

namespace idtune {

SampleQueue::SampleQueue(const Sampler& sampler, const Noise& noise, SampleQueueOptions options)
    : sampler_(sampler), noise_(noise), options_(options) {
  const int64_t K = sampler.num_steps();
  check_option(options.slots >= 1 && options.slots <= K && K % options.slots == 0,
               "algorithm.queue_slots", options.slots,
               "must divide the number of sampling steps sampler.steps = ", K,
               " (1 = nested loop, K = fully single loop)");
  check_option(options.batch >= 1, "batch", options.batch, "must be >= 1");
  steps_per_advance_ = K / options.slots;
  local_batch_ = options.shard.local_batch(options.batch);
}

void SampleQueue::push_fresh(const ScoreModel& model) {
  QueueSlot slot;
  slot.stream = next_stream_++;
  const auto& shard = options_.shard;
  slot.path = SamplePath::allocate(
      sampler_.num_steps(), shard.slice(initial_state(model, options_.batch, noise_, slot.stream)));
  if (options_.conditions)
    slot.path.condition = shard.slice(options_.conditions->draw(
        noise_, slot.stream, options_.batch, torch::dtype(model.dtype()).device(model.device())));
  slots_.push_back(std::move(slot));
}

void SampleQueue::warm_start(const ScoreModel& model, int64_t theta_version) {
  check(slots_.empty(), "warm start needs an empty queue");
  for (int64_t m = 0; m + 1 < options_.slots; ++m) {
    push_fresh(model);
    advance(model, theta_version);
  }
  push_fresh(model);
}

void SampleQueue::advance(const ScoreModel& model, int64_t theta_version) {
  for (int64_t j = 0; j < steps_per_advance_; ++j) advance_one_step(model, theta_version);
}

void SampleQueue::advance_one_step(const ScoreModel& model, int64_t theta_version) {
  if (slots_.empty()) return;
  torch::NoGradGuard no_grad;
  std::vector<at::Tensor> y, k, xi, c;
  for (const auto& slot : slots_) {
    const int64_t step = slot.steps_done();
    y.push_back(slot.path.final_state());
    if (slot.path.condition.defined()) c.push_back(slot.path.condition);
    k.push_back(sampler_.indices(local_batch_, step));
    if (sampler_.needs_noise())
      xi.push_back(step_noise(model, {noise_, slot.stream, options_.shard}, step, local_batch_));
  }
  // The whole queue in one model call: M·B samples, each at its own step.
  const auto next = sampler_.advance(model, torch::cat(y), torch::cat(k),
                                     xi.empty() ? at::Tensor() : torch::cat(xi),
                                     c.empty() ? at::Tensor() : torch::cat(c));
  const auto per_slot = next.split(local_batch_);
  for (size_t m = 0; m < slots_.size(); ++m) {
    slots_[m].path.record(per_slot[m]);
    slots_[m].theta_versions.push_back(theta_version);
  }
}

std::optional<QueueSlot> SampleQueue::pop_completed() {
  if (slots_.empty() || slots_.front().steps_done() < sampler_.num_steps()) return std::nullopt;
  QueueSlot done = std::move(slots_.front());
  slots_.pop_front();
  return done;
}

void SampleQueue::restore(std::deque<QueueSlot> slots, uint64_t next_stream) {
  const int64_t K = sampler_.num_steps();
  check(static_cast<int64_t>(slots.size()) <= options_.slots, "queue restore: ", slots.size(),
        " saved slots, this queue has ", options_.slots);
  int64_t previous_steps = K + 1;
  for (const auto& slot : slots) {
    const auto& storage = slot.path.storage;
    check(storage.dim() >= 2 && storage.size(0) == K + 1 && storage.size(1) == local_batch_,
          "queue restore: a saved slot holds ", storage.sizes(),
          ", this queue needs [K + 1 = ", K + 1, ", batch",
          options_.shard.world_size > 1 ? " / world size" : "", " = ", local_batch_, ", ...]");
    const int64_t done = slot.steps_done();
    check(done >= 0 && done < K && done % steps_per_advance_ == 0 && done < previous_steps,
          "queue restore: a saved slot has done ", done, " steps; this queue's slots stand at ",
          "multiples of K/M = ", steps_per_advance_, " below K = ", K, ", oldest first");
    check(slot.stream < next_stream, "queue restore: slot stream ", slot.stream,
          " is not below the next stream ", next_stream);
    previous_steps = done;
  }
  slots_ = std::move(slots);
  next_stream_ = next_stream;
}

}  // namespace idtune
