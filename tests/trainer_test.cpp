// The trainer on spec §7's 1-D problem, the queue's bookkeeping, the double queue, and
// bit-identical resume.

#include "idtune/training/trainer.h"
#include "analytic_problems.h"
#include "idtune/diffusion/toy_models.h"
#include "idtune/training/adjoint_queue.h"
#include "test_helpers.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <functional>

namespace idtune {
namespace {

constexpr double kTarget = 2.0, kTMax = 1.0, kTMin = 1e-2;
constexpr int64_t kSteps = 8;
// Adam with lr 0.02 on a batch of 64 leaves θ fluctuating by a few 1e-2 around its optimum.
constexpr double kMeanTolerance = 0.1;
// The same float64 arithmetic at another batch size: BLAS may block (and so round) a batch of
// 6 differently from one of 3, on some CPUs. A wrong time or noise would differ by O(1).
constexpr double kBatchSizeRounding = 1e-12;

at::Tensor squared_distance_reward(const at::Tensor& x) {
  return -(x - kTarget).pow(2).flatten(1).sum(1);
}

TrainerOptions one_d_options(int64_t slots, bool warm_start, GradientEstimator gradient) {
  TrainerOptions o;
  o.sampler = {SamplerKind::SdeEuler, kSteps, kTMin};
  o.queue_slots = slots;
  o.warm_start = warm_start;
  o.gradient = gradient;
  o.batch = 64;
  o.optimiser.lr = 0.02;
  o.optimiser.tune = {"^theta$"};
  o.seed = 3;
  return o;
}

/// The exact mean of the Euler chain's Y_K for the model's current θ.
double sampler_mean(const Trainer& trainer) {
  const double theta = trainer.model().module().attr("theta").toTensor().item<double>();
  return testing::chain_moments(testing::ou_euler_chain(theta, 1.0, kTMax, kTMin, kSteps, true))
      .mean;
}

struct QueueCase {
  int64_t slots;
  bool warm_start;
  GradientEstimator gradient;
};

/// How CTest and failure messages show a case.
void PrintTo(const QueueCase& c, std::ostream* os) {
  *os << "M " << c.slots << (c.warm_start ? ", warm start" : ", no warm start") << ", "
      << name_of(c.gradient, gradient_estimator_names());
}

class ImplicitDiffusionReachesTarget : public ::testing::TestWithParam<QueueCase> {};

TEST_P(ImplicitDiffusionReachesTarget, OnTheOneDimensionalProblem) {
  const auto c = GetParam();
  Trainer trainer(one_d_options(c.slots, c.warm_start, c.gradient),
                  make_ou_gaussian_model({0.0, 1.0, kTMax}), squared_distance_reward);
  EXPECT_GT(std::abs(sampler_mean(trainer) - kTarget), 1.5);  // starts far away
  int64_t updates = 0;
  for (int i = 0; i < 400; ++i) updates += trainer.step().updated;
  // Without warm start the first M − 1 iterations (and M − 1 more for the adjoint queue)
  // only fill the queues.
  const int64_t fill = (c.warm_start ? 0 : c.slots - 1) +
                       (c.gradient == GradientEstimator::DoubleQueue ? c.slots - 1 : 0);
  EXPECT_EQ(updates, 400 - fill);
  EXPECT_NEAR(sampler_mean(trainer), kTarget, kMeanTolerance);
}

std::vector<QueueCase> queue_cases() {
  std::vector<QueueCase> cases;
  for (int64_t slots : {int64_t{1}, int64_t{4}, kSteps})
    for (bool warm : {true, false})
      for (auto g : {GradientEstimator::Adjoint, GradientEstimator::DoubleQueue})
        cases.push_back({slots, warm, g});
  return cases;
}

std::string queue_case_name(const ::testing::TestParamInfo<QueueCase>& info) {
  return "M" + std::to_string(info.param.slots) + (info.param.warm_start ? "_warm" : "_cold") +
         (info.param.gradient == GradientEstimator::DoubleQueue ? "_double" : "_adjoint");
}

INSTANTIATE_TEST_SUITE_P(Queues, ImplicitDiffusionReachesTarget, ::testing::ValuesIn(queue_cases()),
                         queue_case_name);

TEST(Baselines, DraftAndDraftKMoveTowardsTheTarget) {
  for (auto method : {Method::Draft, Method::DraftK}) {
    auto o = one_d_options(1, true, GradientEstimator::Adjoint);
    o.method = method;
    Trainer trainer(o, make_ou_gaussian_model({0.0, 1.0, kTMax}), squared_distance_reward);
    for (int i = 0; i < 400; ++i) trainer.step();
    // DRaFT is exact here; DRaFT-1 sees θ only through the last step, a biased direction
    // that still points the right way.
    if (method == Method::Draft) {
      EXPECT_NEAR(sampler_mean(trainer), kTarget, kMeanTolerance);
    } else {
      EXPECT_GT(sampler_mean(trainer), 1.0);
    }
  }
}

// ---- bookkeeping ----

TEST(SampleQueueBookkeeping, EveryCompletedSlotIsTheSampledPathOfItsStream) {
  auto model = make_tiny_unet({});
  Sampler sampler({SamplerKind::SdeEuler, kSteps, kTMin}, model);
  Noise noise(5);
  for (int64_t slots : {int64_t{1}, int64_t{2}, int64_t{4}, kSteps}) {
    for (bool warm : {true, false}) {
      SampleQueue queue(sampler, noise, {slots, 3});
      if (warm)
        queue.warm_start(model, 0);
      else
        queue.push_fresh(model);
      int completed = 0;
      for (int it = 0; it < 2 * slots + 2; ++it) {
        queue.advance(model, 0);
        if (auto slot = queue.pop_completed()) {
          ++completed;
          ASSERT_EQ(slot->steps_done(), kSteps);
          // θ is frozen: the batched, staggered queue must reproduce the plain sampler's path
          // of the same stream exactly (right times and noise for every sample).
          auto expected = sample_path(sampler, model, initial_state(model, 3, noise, slot->stream),
                                      noise, slot->stream);
          for (int64_t k = 0; k <= kSteps; ++k) {
            const double error =
                testing::relative_error({slot->path.states[k]}, {expected.states[k]});
            ASSERT_LE(error, kBatchSizeRounding) << "M = " << slots << " step " << k;
          }
        }
        queue.push_fresh(model);
        EXPECT_LE(static_cast<int64_t>(queue.slots().size()), slots);
      }
      EXPECT_EQ(completed, warm ? 2 * slots + 2 : slots + 3) << "M = " << slots;
    }
  }
}

TEST(SampleQueueBookkeeping, EachStepWasTakenWithTheThetaTheAlgorithmSays) {
  const int64_t slots = 4, per_stage = kSteps / slots;
  Trainer trainer(one_d_options(slots, true, GradientEstimator::Adjoint),
                  make_ou_gaussian_model({}), squared_distance_reward);
  for (int64_t it = 0; it < 10; ++it) {
    const auto report = trainer.step();
    ASSERT_EQ(static_cast<int64_t>(report.theta_versions.size()), kSteps);
    // Algorithm 3: the slot completing at iteration i did its stage s (K/M steps) at
    // iteration i − (M − 1) + s with θ_{that iteration}; stages before 0 are the warm start
    // with θ₀.
    for (int64_t k = 0; k < kSteps; ++k) {
      const int64_t stage = k / per_stage;
      EXPECT_EQ(report.theta_versions[k], std::max<int64_t>(0, it - (slots - 1) + stage))
          << "iteration " << it << " step " << k;
    }
  }
}

TEST(DoubleQueue, GradientEqualsFullAdjointWhenThetaIsFrozen) {
  auto model = make_tiny_unet({});
  TinyUNetOptions other;
  other.seed = 9;
  auto reference = make_tiny_unet(other).frozen_copy();
  Sampler sampler({SamplerKind::SdeEuler, kSteps, kTMin}, model);
  AdjointSolver solver(sampler, {1.0, 0.3});
  Noise noise(8);
  const auto params = model.trainable_parameters();
  auto reward = [](const at::Tensor& x) { return torch::tanh(x).flatten(1).mean(1); };
  for (int64_t slots : {int64_t{2}, kSteps}) {
    AdjointQueue queue(solver, sampler, kSteps / slots);
    std::vector<AdjointGradient> expected;
    for (uint64_t stream = 0; stream < 3; ++stream) {
      QueueSlot slot{
          stream,
          sample_path(sampler, model, initial_state(model, 2, noise, stream), noise, stream),
          {}};
      expected.push_back(solver.gradient({model, params, &reference}, slot.path, reward));
      queue.push(std::move(slot), reward);
    }
    for (size_t finished = 0; finished < expected.size();) {
      queue.walk_back({model, params, &reference});
      if (auto g = queue.pop_finished()) {
        EXPECT_LT(testing::relative_error(g->grad, expected[finished].grad), 1e-12);
        EXPECT_LT(testing::relative_error({g->kl}, {expected[finished].kl}), 1e-12);
        ++finished;
      }
    }
  }
}

// ---- resume ----

/// Runs 8 iterations uninterrupted, and 5 + checkpoint + a fresh trainer resuming for 3: the
/// reports and θ (and its EMA) must be bit-identical. Returns the resumed run's checkpoint.
std::string expect_resume_is_bit_identical(const TrainerOptions& o,
                                           const std::function<ScoreModel()>& fresh_model,
                                           const testing::TempDir& dir) {
  auto reward = [](const at::Tensor& x) { return x.flatten(1).mean(1); };
  Trainer uninterrupted(o, fresh_model(), reward);
  std::vector<IterationReport> expected;
  for (int i = 0; i < 8; ++i) expected.push_back(uninterrupted.step());

  const std::string checkpoint = dir.file("ckpt.pt");
  {
    Trainer first_half(o, fresh_model(), reward);
    for (int i = 0; i < 5; ++i) first_half.step();
    first_half.save_checkpoint(checkpoint);
  }
  Trainer resumed(o, fresh_model(), reward);
  resumed.load_checkpoint(checkpoint);
  for (int i = 5; i < 8; ++i) {
    const auto r = resumed.step();
    EXPECT_EQ(r.iteration, expected[i].iteration);
    EXPECT_EQ(r.reward_mean, expected[i].reward_mean);
    EXPECT_EQ(r.kl, expected[i].kl);
    EXPECT_EQ(r.grad_norm, expected[i].grad_norm);
  }
  auto a = uninterrupted.model().trainable_parameters(), b = resumed.model().trainable_parameters();
  EXPECT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) EXPECT_TRUE(torch::equal(a[i], b[i])) << "parameter " << i;
  auto ea = uninterrupted.export_model().trainable_parameters();
  auto eb = resumed.export_model().trainable_parameters();
  for (size_t i = 0; i < ea.size(); ++i) EXPECT_TRUE(torch::equal(ea[i], eb[i])) << "EMA " << i;
  return checkpoint;
}

TrainerOptions resume_options() {
  TrainerOptions o;
  o.sampler = {SamplerKind::SdeEuler, 4, kTMin};
  o.queue_slots = 2;
  o.gradient = GradientEstimator::DoubleQueue;
  o.batch = 2;
  o.objective.beta = 0.1;
  o.optimiser.lr = 1e-2;
  o.optimiser.ema_decay = 0.9;
  return o;
}

TEST(Checkpoint, ResumedRunIsBitIdenticalToAnUninterruptedOne) {
  testing::TempDir dir;
  expect_resume_is_bit_identical(
      resume_options(), [] { return make_tiny_unet({}); }, dir);
}

TEST(Checkpoint, ResumeWithLoraAdaptersIsBitIdenticalAndNeedsThem) {
  testing::TempDir dir;
  auto o = resume_options();
  o.lora.rank = 3;
  o.lora.alpha = 6;
  o.lora.targets = {"^(in|down|up|out|time)_w$"};
  const auto checkpoint = expect_resume_is_bit_identical(
      o, [] { return make_tiny_unet({}); }, dir);
  // θ is the adapters (5 weights × A, B); a run without them does not resume this checkpoint.
  Trainer with(o, make_tiny_unet({}), [](const at::Tensor& x) { return x.flatten(1).mean(1); });
  EXPECT_EQ(with.model().trainable_parameters().size(), 10u);
  o.lora = {};
  Trainer without(o, make_tiny_unet({}), [](const at::Tensor& x) { return x.flatten(1).mean(1); });
  testing::expect_error([&] { without.load_checkpoint(checkpoint); }, {"saved lora"});
}

/// A checkpoint of a run with these options and this model, after one step.
TrainerOptions checkpoint_options() {
  TrainerOptions o;
  o.sampler = {SamplerKind::SdeEuler, 4, kTMin};
  o.queue_slots = 2;
  o.batch = 2;
  o.objective.beta = 0.1;
  o.optimiser.lr = 1e-2;
  return o;
}

/// One field of the signature changed between the saving and the resuming run.
struct Mismatch {
  std::string field;
  std::function<void(TrainerOptions&, TinyUNetOptions&)> change;
};

TEST(Checkpoint, RefusesEveryFieldOfTheSignatureThatDiffers) {
  testing::TempDir dir;
  auto reward = [](const at::Tensor& x) { return x.flatten(1).mean(1); };
  {
    Trainer saving(checkpoint_options(), make_tiny_unet({}), reward);
    saving.step();
    saving.save_checkpoint(dir.file("ckpt.pt"));
  }
  const std::vector<Mismatch> mismatches = {
      {"sampler.steps", [](auto& o, auto&) { o.sampler.steps = 8; }},
      {"algorithm.queue_slots", [](auto& o, auto&) { o.queue_slots = 4; }},
      {"batch", [](auto& o, auto&) { o.batch = 3; }},
      {"sampler.kind", [](auto& o, auto&) { o.sampler.kind = SamplerKind::Ddpm; }},
      {"sampler.table", [](auto& o, auto&) { o.sampler.t_min = 2e-2; }},
      {"algorithm.method", [](auto& o, auto&) { o.method = Method::Nested; }},
      {"algorithm.gradient", [](auto& o, auto&) { o.gradient = GradientEstimator::DoubleQueue; }},
      {"algorithm.warm_start", [](auto& o, auto&) { o.warm_start = false; }},
      {"algorithm.backprop_steps", [](auto& o, auto&) { o.backprop_steps = 2; }},
      {"dtype", [](auto&, auto& m) { m.model.dtype = c10::kFloat; }},
      {"objective.lambda", [](auto& o, auto&) { o.objective.lambda = 2.0; }},
      {"objective.beta", [](auto& o, auto&) { o.objective.beta = 0.2; }},
      {"seed", [](auto& o, auto&) { o.seed = 7; }},
      {"optimiser.ema", [](auto& o, auto&) { o.optimiser.ema_decay = 0.9; }},
      {"tuned_parameters", [](auto& o, auto&) { o.optimiser.tune = {"^up_"}; }},
      {"tuned_parameters", [](auto&, auto& m) { m.width = 4; }},
  };
  for (const auto& mismatch : mismatches) {
    auto options = checkpoint_options();
    TinyUNetOptions model;
    mismatch.change(options, model);
    Trainer resuming(options, make_tiny_unet(model), reward);
    const auto before = resuming.model().trainable_parameters()[0].clone();
    testing::expect_error(
        [&] { resuming.load_checkpoint(dir.file("ckpt.pt")); },
        {"ckpt.pt", "saved " + mismatch.field + " = ", ", this run " + mismatch.field + " = "});
    EXPECT_EQ(resuming.iteration(), 0) << mismatch.field << ": refused, but counters changed";
    EXPECT_TRUE(torch::equal(before, resuming.model().trainable_parameters()[0]))
        << mismatch.field << ": refused, but θ changed";
  }
  // The same settings resume.
  Trainer same(checkpoint_options(), make_tiny_unet({}), reward);
  same.load_checkpoint(dir.file("ckpt.pt"));
  EXPECT_EQ(same.iteration(), 1);
}

TEST(Checkpoint, QueueRestoreRefusesSlotsThatDoNotFit) {
  auto model = make_tiny_unet({});
  Sampler sampler({SamplerKind::SdeEuler, 4, kTMin}, model);
  Noise noise(1);
  SampleQueue source(sampler, noise, {2, 3});
  source.warm_start(model, 0);
  SampleQueue wider(sampler, noise, {2, 4});
  testing::expect_error([&] { wider.restore(source.slots(), source.next_stream()); },
                        {"queue restore", "batch = 4"});
  SampleQueue single(sampler, noise, {1, 3});
  testing::expect_error([&] { single.restore(source.slots(), source.next_stream()); },
                        {"queue restore", "2 saved slots", "this queue has 1"});
  SampleQueue same(sampler, noise, {2, 3});
  EXPECT_NO_THROW(same.restore(source.slots(), source.next_stream()));
}

}  // namespace
}  // namespace idtune
