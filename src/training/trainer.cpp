#include "idtune/training/trainer.h"

#include "idtune/core/error.h"
#include "idtune/core/name_patterns.h"
#include "idtune/diffusion/backprop_through_sampler.h"
#include "idtune/distributed/process_group.h"

#include <torch/torch.h>

#include <chrono>
#include <cmath>
#include <memory>

namespace idtune {

const NameTable<Method>& method_names() {
  static const NameTable<Method> table = {{"implicit", Method::Implicit},
                                          {"nested", Method::Nested},
                                          {"draft", Method::Draft},
                                          {"draft-k", Method::DraftK}};
  return table;
}

const NameTable<GradientEstimator>& gradient_estimator_names() {
  static const NameTable<GradientEstimator> table = {
      {"adjoint", GradientEstimator::Adjoint}, {"double-queue", GradientEstimator::DoubleQueue}};
  return table;
}

void select_trainable(const ScoreModel& model, const std::vector<std::string>& patterns) {
  NamePatterns tune(patterns, "optimiser.tune");
  std::vector<std::string> names;
  for (auto& [name, p] : model.named_parameters()) {
    names.push_back(name);
    p.requires_grad_(tune.empty() || tune.matches(name));
  }
  tune.check_all_used("parameter", model.name(), names);
}

void validate(const OptimiserOptions& o) {
  const auto finite_in = [](double v, double lo, double hi) {
    return std::isfinite(v) && v >= lo && v <= hi;
  };
  check_option(finite_in(o.lr, 0, 10) && o.lr > 0, "optimiser.lr", o.lr, "must be in (0, 10]");
  for (double b : o.betas)
    check_option(finite_in(b, 0, 1) && b < 1, "optimiser.betas", b, "must each be in [0, 1)");
  check_option(finite_in(o.eps, 0, 1) && o.eps > 0, "optimiser.eps", o.eps, "must be in (0, 1]");
  check_option(finite_in(o.weight_decay, 0, 1), "optimiser.weight_decay", o.weight_decay,
               "must be in [0, 1]");
  check_option(finite_in(o.clip_grad_norm, 0, 1e9), "optimiser.clip_grad_norm", o.clip_grad_norm,
               "must be in [0, 1e9] (0: off)");
  check_option(finite_in(o.ema_decay, 0, 1) && o.ema_decay < 1, "optimiser.ema_decay", o.ema_decay,
               "must be in [0, 1) (0: off)");
  check_option(o.max_skipped_in_a_row >= 1 && o.max_skipped_in_a_row <= 1000000,
               "optimiser.max_skipped_in_a_row", o.max_skipped_in_a_row, "must be in [1, 1e6]");
}

namespace {

bool is_backprop(Method m) { return m == Method::Draft || m == Method::DraftK; }

SampleQueueOptions queue_options(const TrainerOptions& o, const Shard& shard) {
  return {o.method == Method::Implicit ? o.queue_slots : 1, o.batch, o.conditions, shard};
}

Shard shard_of(const ProcessGroup* group) {
  return group ? Shard{group->rank(), group->world_size()} : Shard{};
}

}  // namespace

Trainer::Trainer(TrainerOptions options, ScoreModel model, RewardFn reward, ProcessGroup* group)
    : options_(std::move(options)),
      group_(group),
      shard_(shard_of(group)),
      model_(std::move(model)),
      reference_(model_.frozen_copy()),
      reward_(std::move(reward)),
      sampler_(options_.sampler, model_),
      noise_(options_.seed),
      solver_(sampler_, options_.objective),
      queue_(sampler_, noise_, queue_options(options_, shard_)),
      adjoint_queue_(solver_, sampler_, queue_.steps_per_advance()) {
  const auto& o = options_.optimiser;
  validate(o);
  check_option(options_.backprop_steps >= 1, "algorithm.backprop_steps", options_.backprop_steps,
               "must be >= 1");
  if (options_.lora.rank > 0) {
    check_option(o.tune.empty(), "optimiser.tune", o.tune.size(),
                 "must be empty with lora: lora.targets selects the adapted weights");
    model_.add_lora(options_.lora, options_.seed);
  } else {
    select_trainable(model_, o.tune);
  }
  model_.check_differentiable();  // before any sampling: a model without derivatives fails here
  // Conditions: a conditional model needs a set; every label in range, every tensor's shape.
  if (options_.conditions)
    model_.check_conditions(options_.conditions->all().to(model_.device()),
                            options_.conditions->all().size(0));
  else
    check(!model_.card().condition, model_.name(), ": the model is conditional: give the ",
          "conditions its batches draw from (conditions.classes or conditions.file)");
  params_ = model_.trainable_parameters();
  optimiser_ = std::make_unique<torch::optim::Adam>(params_, torch::optim::AdamOptions(o.lr)
                                                                 .betas({o.betas[0], o.betas[1]})
                                                                 .eps(o.eps)
                                                                 .weight_decay(o.weight_decay));
  if (o.ema_decay > 0)
    for (const auto& p : params_) ema_.push_back(p.detach().clone());
  check_option(options_.theta_check_every >= 0, "distributed.check_every",
               options_.theta_check_every, "must be >= 0 (0: only at the start)");
  if (group_) {  // the same run on every rank: configuration (with the seed) and θ₀
    const uint64_t hash = std::hash<std::string>{}(signature().dump());
    // Two 32-bit halves: exact in the float64 checksum.
    group_->check_identical(
        {torch::tensor({static_cast<double>(hash & 0xffffffffu), static_cast<double>(hash >> 32)},
                       torch::kFloat64)},
        "the run's configurations (batch, seed, sampler, objective, model "
        "and tuned parameters)");
    check_theta_identical("at the start (the model files)");
  }
}

void Trainer::check_theta_identical(const std::string& when) const {
  group_->check_identical(params_, "θ " + when);
}

void Trainer::fill_queue() {
  queue_filled_ = true;
  if (is_backprop(options_.method)) return;
  if (options_.warm_start)
    queue_.warm_start(model_, /*theta_version=*/0);  // Algorithm 3
  else
    queue_.push_fresh(model_);  // Algorithm 7: the queue fills during the first M iterations
}

Trainer::~Trainer() = default;

IterationReport Trainer::step() {
  if (!queue_filled_) fill_queue();  // lazily: a checkpoint may bring its own queue
  std::optional<AdjointGradient> gradient;
  IterationReport report;
  report.iteration = iteration_++;
  report.skipped_updates = skipped_updates_;
  if (is_backprop(options_.method)) {
    gradient = backprop_gradient();
    report.sample_steps = sampler_.num_steps() * options_.batch;
  } else {
    report.sample_steps =
        queue_.steps_per_advance() * options_.batch * static_cast<int64_t>(queue_.slots().size());
    // 1. Sampling: every slot advances K/M steps with θ_k, one batched model call per step.
    queue_.advance(model_, updates_);
    // 2. Optimisation: the completed slot yields the gradient...
    gradient = completed_slot_gradient(report);
    // 3. ...and a fresh N(0, I) batch enters at stage 0.
    queue_.push_fresh(model_);
  }
  if (!gradient) return report;
  combine_ranks(*gradient, report);
  // θ_{k+1} = Adam(θ_k, ∇ℓ) with ℓ = −E[J] = −λE[R] + β KL.
  report.grad_norm = apply(std::move(gradient->grad), report);
  report.reward_mean = gradient->reward.mean().item<double>();
  report.reward_std = gradient->reward.std().item<double>();
  report.kl = gradient->kl.mean().item<double>();
  report.loss =
      -options_.objective.lambda * report.reward_mean + options_.objective.beta * report.kl;
  report.lr = options_.optimiser.lr;
  const int64_t n = options_.theta_check_every;
  if (group_ && report.updated && n > 0 && updates_ % n == 0)
    check_theta_identical("after update " + std::to_string(updates_));
  return report;
}

void Trainer::combine_ranks(AdjointGradient& gradient, IterationReport& report) const {
  if (!group_) return;
  const auto start = std::chrono::steady_clock::now();
  group_->all_reduce_mean(gradient.grad);  // equal shares: the mean of means is the mean
  gradient.reward = group_->all_gather(gradient.reward);
  gradient.kl = group_->all_gather(gradient.kl);
  report.reduce_seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

TunedModel Trainer::tuned() const {
  return {model_, params_, options_.objective.beta > 0 ? &reference_ : nullptr};
}

std::optional<AdjointGradient> Trainer::completed_slot_gradient(IterationReport& report) {
  auto completed = queue_.pop_completed();
  if (completed) check_finite_path(completed->path, sampler_, model_);
  if (options_.gradient == GradientEstimator::Adjoint) {  // full adjoint now
    if (!completed) return std::nullopt;
    report.theta_versions = completed->theta_versions;
    return solver_.gradient(tuned(), completed->path, reward_);
  }
  // Algorithm 5: the adjoints walk back K/M steps per iteration with the current θ.
  if (completed) adjoint_queue_.push(std::move(*completed), reward_);
  adjoint_queue_.walk_back(tuned());
  return adjoint_queue_.pop_finished();
}

AdjointGradient Trainer::backprop_gradient() {
  const uint64_t stream = next_draft_stream_++;
  const auto y0 = shard_.slice(initial_state(model_, options_.batch, noise_, stream));
  const auto c =
      options_.conditions
          ? shard_.slice(options_.conditions->draw(noise_, stream, options_.batch, y0.options()))
          : at::Tensor();
  const int64_t steps = options_.method == Method::Draft ? -1 : options_.backprop_steps;
  auto unrolled = unrolled_objective(sampler_, tuned(), y0, {noise_, stream, shard_}, reward_,
                                     {options_.objective, steps}, c);
  auto grads = torch::autograd::grad({unrolled.objective.mean()}, params_, {}, false, false,
                                     /*allow_unused=*/true);
  for (size_t i = 0; i < grads.size(); ++i)
    if (!grads[i].defined()) grads[i] = torch::zeros_like(params_[i]);
  return {grads, unrolled.reward, unrolled.kl};
}

double Trainer::apply(std::vector<at::Tensor> ascent, IterationReport& report) {
  torch::NoGradGuard no_grad;
  for (size_t i = 0; i < params_.size(); ++i) params_[i].mutable_grad() = -ascent[i];
  const double clip = options_.optimiser.clip_grad_norm;
  const double norm = torch::nn::utils::clip_grad_norm_(params_, clip > 0 ? clip : INFINITY);
  if (!std::isfinite(norm)) {  // θ, Adam's moments and the EMA stay as they are
    report.skipped_updates = ++skipped_updates_;
    report.skipped = true;
    const int64_t limit = options_.optimiser.max_skipped_in_a_row;
    if (++skipped_in_a_row_ >= limit)
      throw NonFiniteGradients(
          model_.name() + ": the gradient was not finite " + std::to_string(limit) +
          " times in a row (iterations " + std::to_string(iteration_ - limit) + " to " +
          std::to_string(iteration_ - 1) + "); θ is the last good one, of update " +
          std::to_string(updates_) +
          ". Lower optimiser.lr, set optimiser.clip_grad_norm, or use precision bf16 or fp32 "
          "instead of fp16");
    return norm;
  }
  skipped_in_a_row_ = 0;
  report.updated = true;
  optimiser_->step();
  ++updates_;
  update_ema();
  return norm;
}

void Trainer::update_ema() {
  const double decay = options_.optimiser.ema_decay;
  if (decay == 0) return;
  for (size_t i = 0; i < params_.size(); ++i)
    ema_[i].mul_(decay).add_(params_[i].detach(), 1 - decay);
}

ScoreModel Trainer::export_model() const {
  if (options_.optimiser.ema_decay == 0) return model_;
  auto copy = model_.clone();
  torch::NoGradGuard no_grad;
  auto target = copy.trainable_parameters();
  for (size_t i = 0; i < target.size(); ++i) target[i].copy_(ema_[i]);
  return copy;
}

}  // namespace idtune
