// Trainer checkpoints: everything a run needs to continue bit-identically (θ, its EMA, Adam's
// moments, both queues with their paths and noise streams, the counters), written atomically.
// A data-parallel run's checkpoint holds its queues whole, as one process would: each rank
// gathers its shares on save and takes its own on load.

#include "idtune/core/atomic_file.h"
#include "idtune/core/error.h"
#include "idtune/core/torchscript.h"
#include "idtune/distributed/process_group.h"
#include "idtune/training/trainer.h"

#include <torch/serialize.h>
#include <torch/torch.h>
#include <nlohmann/json.hpp>

#include <cstdio>
#include <functional>

namespace idtune {

namespace {

using torch::serialize::InputArchive;
using torch::serialize::OutputArchive;

void write_int(OutputArchive& archive, const std::string& key, int64_t value) {
  archive.write(key, c10::IValue(value));
}

int64_t read_int(InputArchive& archive, const std::string& key) {
  c10::IValue value;
  archive.read(key, value);
  return value.toInt();
}

void write_tensors(OutputArchive& archive, const std::string& key,
                   const std::vector<at::Tensor>& tensors) {
  write_int(archive, key + "/count", static_cast<int64_t>(tensors.size()));
  for (size_t i = 0; i < tensors.size(); ++i)
    archive.write(key + "/" + std::to_string(i), tensors[i].detach());
}

std::vector<at::Tensor> read_tensors(InputArchive& archive, const std::string& key) {
  std::vector<at::Tensor> tensors(read_int(archive, key + "/count"));
  for (size_t i = 0; i < tensors.size(); ++i)
    archive.read(key + "/" + std::to_string(i), tensors[i]);
  return tensors;
}

/// The whole batch of a per-sample tensor from this rank's share (`dim`: its batch dimension).
using Gather = std::function<at::Tensor(const at::Tensor&, int64_t dim)>;

void write_slot(OutputArchive& archive, const std::string& key, const QueueSlot& slot,
                const Gather& whole) {
  write_int(archive, key + "/stream", static_cast<int64_t>(slot.stream));
  // Y_0 … Y_j, the recorded part of the path's buffer.
  archive.write(key + "/states", whole(slot.path.storage.narrow(0, 0, slot.steps_done() + 1), 1));
  archive.write(key + "/versions", torch::tensor(slot.theta_versions, torch::kLong));
  if (slot.path.condition.defined())
    archive.write(key + "/condition", whole(slot.path.condition, 0));
}

QueueSlot read_slot(InputArchive& archive, const std::string& key, int64_t steps,
                    const Shard& shard) {
  QueueSlot slot;
  slot.stream = static_cast<uint64_t>(read_int(archive, key + "/stream"));
  at::Tensor states;
  archive.read(key + "/states", states);
  states = shard.slice(states, 1);
  slot.path = SamplePath::allocate(steps, states[0]);
  for (int64_t j = 1; j < states.size(0); ++j) slot.path.record(states[j]);
  at::Tensor condition;
  if (archive.try_read(key + "/condition", condition)) slot.path.condition = shard.slice(condition);
  at::Tensor versions;
  archive.read(key + "/versions", versions);
  slot.theta_versions.assign(versions.data_ptr<int64_t>(),
                             versions.data_ptr<int64_t>() + versions.numel());
  return slot;
}

/// The double queue's partial gradients are each rank's own (means over its share): saved as
/// [W, …] with W > 1 ranks, taken back by the rank's row.
void write_adjoint_slot(OutputArchive& archive, const std::string& key, const AdjointSlot& slot,
                        const Gather& whole, int world_size) {
  write_slot(archive, key + "/sample", slot.sample, whole);
  write_int(archive, key + "/next_step", slot.next_step);
  archive.write(key + "/a", whole(slot.state.a, 0));
  auto grad = slot.state.gradient.grad;
  if (world_size > 1)
    for (auto& g : grad) g = whole(g.unsqueeze(0), 0);
  write_tensors(archive, key + "/grad", grad);
  archive.write(key + "/reward", whole(slot.state.gradient.reward, 0));
  archive.write(key + "/kl", whole(slot.state.gradient.kl, 0));
}

AdjointSlot read_adjoint_slot(InputArchive& archive, const std::string& key, int64_t steps,
                              const Shard& shard) {
  AdjointSlot slot;
  slot.sample = read_slot(archive, key + "/sample", steps, shard);
  slot.next_step = read_int(archive, key + "/next_step");
  archive.read(key + "/a", slot.state.a);
  slot.state.a = shard.slice(slot.state.a);
  slot.state.condition = slot.sample.path.condition;  // the batch's conditions walk back with it
  slot.state.gradient.grad = read_tensors(archive, key + "/grad");
  if (shard.world_size > 1)
    for (auto& g : slot.state.gradient.grad) g = g[shard.rank].clone();
  archive.read(key + "/reward", slot.state.gradient.reward);
  archive.read(key + "/kl", slot.state.gradient.kl);
  slot.state.gradient.reward = shard.slice(slot.state.gradient.reward);
  slot.state.gradient.kl = shard.slice(slot.state.gradient.kl);
  return slot;
}

/// The condition set as the checkpoint records it: the labels, or N, shape and sums.
nlohmann::json conditions_signature(const std::optional<ConditionSet>& conditions) {
  if (!conditions) return nullptr;
  const auto& all = conditions->all();
  if (conditions->is_classes())
    return std::vector<int64_t>(all.data_ptr<int64_t>(), all.data_ptr<int64_t>() + all.numel());
  const auto f64 = all.to(torch::kFloat64);
  return {{"tensors", all.sizes().vec()},
          {"sum", f64.sum().item<double>()},
          {"sum_of_squares", f64.square().sum().item<double>()}};
}

/// A value for a message, cut to a readable length.
std::string brief(const nlohmann::json& value) {
  std::string text = value.dump();
  return text.size() > 120 ? text.substr(0, 117) + "..." : text;
}

/// Throws "saved X, this run Y" for the first field of `current` that `saved` does not share.
void check_signature(const nlohmann::json& saved, const nlohmann::json& current,
                     const std::string& path) {
  for (const auto& [key, value] : current.items()) {
    const bool same = saved.contains(key) && saved[key] == value;
    check(same, "checkpoint '", path, "' was written by a different run: saved ", key, " = ",
          saved.contains(key) ? brief(saved[key]) : "(none)", ", this run ", key, " = ",
          brief(value), " (resume with the run's own settings, or start a new run)");
  }
}

}  // namespace

nlohmann::json Trainer::signature() const {
  const auto& o = options_;
  std::vector<double> tau, a, b, sigma;
  for (int64_t k = 0; k < sampler_.num_steps(); ++k) {
    const auto& c = sampler_.coefficients(k);
    tau.push_back(c.tau), a.push_back(c.a), b.push_back(c.b), sigma.push_back(c.sigma);
  }
  nlohmann::json parameters = nlohmann::json::array();
  for (const auto& [name, p] : model_.named_parameters())
    if (p.requires_grad()) parameters.push_back({name, p.sizes().vec()});
  return {{"sampler.steps", sampler_.num_steps()},
          {"algorithm.queue_slots", o.queue_slots},
          {"batch", o.batch},
          {"sampler.kind", name_of(o.sampler.kind, sampler_names())},
          {"sampler.table", {{"tau", tau}, {"a", a}, {"b", b}, {"sigma", sigma}}},
          {"sampler.guidance_scale", o.sampler.guidance_scale},
          {"conditions", conditions_signature(o.conditions)},
          {"algorithm.method", name_of(o.method, method_names())},
          {"algorithm.gradient", name_of(o.gradient, gradient_estimator_names())},
          {"algorithm.warm_start", o.warm_start},
          {"algorithm.backprop_steps", o.backprop_steps},
          {"dtype", c10::toString(model_.dtype())},
          {"precision", name_of(model_.precision(), precision_names())},
          {"lora", o.lora.rank > 0 ? nlohmann::json{{"rank", o.lora.rank},
                                                    {"alpha", o.lora.alpha},
                                                    {"targets", o.lora.targets}}
                                   : nlohmann::json()},
          {"objective.lambda", o.objective.lambda},
          {"objective.beta", o.objective.beta},
          {"seed", o.seed},
          {"optimiser.ema", o.optimiser.ema_decay > 0},
          {"tuned_parameters", parameters}};
}

void Trainer::save_checkpoint(const std::string& path) const {
  const Gather whole = [this](const at::Tensor& share, int64_t dim) {
    return group_ ? group_->all_gather(share, dim) : share;
  };
  OutputArchive archive;
  archive.write("signature", c10::IValue(signature().dump()));
  write_int(archive, "iteration", iteration_);
  write_int(archive, "updates", updates_);
  write_int(archive, "skipped_updates", skipped_updates_);
  write_int(archive, "skipped_in_a_row", skipped_in_a_row_);
  write_int(archive, "next_draft_stream", static_cast<int64_t>(next_draft_stream_));
  write_int(archive, "world_size", shard_.world_size);
  write_tensors(archive, "theta", params_);
  write_tensors(archive, "ema", ema_);
  OutputArchive optimiser;
  optimiser_->save(optimiser);
  archive.write("optimiser", optimiser);
  write_int(archive, "queue/next_stream", static_cast<int64_t>(queue_.next_stream()));
  write_int(archive, "queue/count", static_cast<int64_t>(queue_.slots().size()));
  for (size_t m = 0; m < queue_.slots().size(); ++m)
    write_slot(archive, "queue/" + std::to_string(m), queue_.slots()[m], whole);
  write_int(archive, "adjoint_queue/count", static_cast<int64_t>(adjoint_queue_.slots().size()));
  for (size_t m = 0; m < adjoint_queue_.slots().size(); ++m)
    write_adjoint_slot(archive, "adjoint_queue/" + std::to_string(m), adjoint_queue_.slots()[m],
                       whole, shard_.world_size);
  if (shard_.rank != 0) return;  // rank 0 writes the gathered checkpoint
  // A crash or a full disk mid-write leaves the previous checkpoint intact.
  write_stream_atomically(path, [&](const ByteSink& sink) { archive.save_to(sink); });
}

void Trainer::load_checkpoint(const std::string& path) {
  check(is_existing_file(path), "checkpoint '", path, "' does not exist");
  InputArchive archive;
  try {
    archive.load_from(path, model_.device());
  } catch (const std::exception& e) {
    throw Error("cannot read checkpoint '" + path + "' (" + error_summary(e) +
                "): expected a checkpoint.pt written by idtune tune");
  }
  c10::IValue saved;
  check(archive.try_read("signature", saved) && saved.isString(), "checkpoint '", path,
        "' has no run signature (written by an idtune before 0.1.0): start a new run");
  auto saved_signature = nlohmann::json::parse(saved.toStringRef());
  // Keys added since 0.1.0, with the only value a checkpoint without them can have had.
  saved_signature.emplace("precision", "fp32");
  saved_signature.emplace("lora", nullptr);
  check_signature(saved_signature, signature(), path);
  c10::IValue saved_world;  // absent before data-parallel runs: one process
  const int64_t world = archive.try_read("world_size", saved_world) ? saved_world.toInt() : 1;
  check(world == shard_.world_size || read_int(archive, "adjoint_queue/count") == 0, "checkpoint '",
        path, "' was written by ", world, " ranks and holds the double queue's ",
        "partial gradients, one per rank: resume it with ", world, " ranks (this run has ",
        shard_.world_size, "); only algorithm.gradient = adjoint runs change their world size");
  iteration_ = read_int(archive, "iteration");
  updates_ = read_int(archive, "updates");
  c10::IValue skipped;  // absent from checkpoints before the skip counters: none skipped
  skipped_updates_ = archive.try_read("skipped_updates", skipped) ? skipped.toInt() : 0;
  skipped_in_a_row_ = archive.try_read("skipped_in_a_row", skipped) ? skipped.toInt() : 0;
  next_draft_stream_ = static_cast<uint64_t>(read_int(archive, "next_draft_stream"));
  const auto theta = read_tensors(archive, "theta");
  check(theta.size() == params_.size(), "checkpoint '", path, "' holds ", theta.size(),
        " tuned tensors, this run tunes ", params_.size(), " (different model or 'tune' patterns)");
  {
    torch::NoGradGuard no_grad;
    for (size_t i = 0; i < params_.size(); ++i) params_[i].copy_(theta[i]);
  }
  ema_ = read_tensors(archive, "ema");
  InputArchive optimiser;
  archive.read("optimiser", optimiser);
  optimiser_->load(optimiser);
  std::deque<QueueSlot> slots;
  for (int64_t m = 0, n = read_int(archive, "queue/count"); m < n; ++m)
    slots.push_back(read_slot(archive, "queue/" + std::to_string(m), sampler_.num_steps(), shard_));
  queue_.restore(std::move(slots), static_cast<uint64_t>(read_int(archive, "queue/next_stream")));
  std::deque<AdjointSlot> adjoint_slots;
  for (int64_t m = 0, n = read_int(archive, "adjoint_queue/count"); m < n; ++m)
    adjoint_slots.push_back(read_adjoint_slot(archive, "adjoint_queue/" + std::to_string(m),
                                              sampler_.num_steps(), shard_));
  adjoint_queue_.restore(std::move(adjoint_slots));
  queue_filled_ = true;
}

}  // namespace idtune
