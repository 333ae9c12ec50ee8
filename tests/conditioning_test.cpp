// Conditional models and classifier-free guidance (issue 13): the guided step stays affine in
// the network's outputs, so the adjoint, the KL (girsanov_kl_test), the queue and checkpoints
// are the same code with conditions. Conditions are drawn replayably and travel with their
// batch; every misuse is refused with a message naming the model and what was expected.

#include "idtune/core/json_reader.h"
#include "idtune/diffusion/adjoint.h"
#include "idtune/diffusion/backprop_through_sampler.h"
#include "idtune/diffusion/conditions.h"
#include "idtune/diffusion/sampling.h"
#include "idtune/diffusion/toy_models.h"
#include "idtune/training/trainer.h"
#include "test_helpers.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

namespace idtune {
namespace {

using testing::expect_error;

// The adjoint sums K vector-Jacobian products in another order than autograd.
constexpr double kAdjointTolerance = 1e-10;
constexpr int64_t kClasses = 3;

ScoreModel conditional_unet(int64_t classes = kClasses) {
  TinyUNetOptions o;
  o.size = 4;
  o.classes = classes;
  return make_tiny_unet(o);
}

RewardFn brightness() {
  return [](const at::Tensor& x) { return x.mean({1, 2, 3}); };
}

/// A reward that reads each sample's label: brightness for label 0, twice that for 1, …
RewardFn label_weighted_brightness() {
  return [](const at::Tensor& x, const at::Tensor& c) {
    return x.mean({1, 2, 3}) * (1 + c.to(x.scalar_type()));
  };
}

struct GuidanceCase {
  SamplerKind sampler;
  double w;
};

class ConditionalAdjoint : public ::testing::TestWithParam<GuidanceCase> {};

TEST_P(ConditionalAdjoint, MatchesAutogradThroughTheGuidedSampler) {
  const auto [kind, w] = GetParam();
  const auto model = conditional_unet();
  const auto reference = conditional_unet().frozen_copy();  // same init: KL from θ's moves
  // Move θ away from the reference so that the KL term is not zero.
  {
    torch::NoGradGuard no_grad;
    for (auto& p : model.trainable_parameters()) p.add_(0.05 * torch::randn_like(p));
  }
  const auto params = model.trainable_parameters();
  SamplerOptions options{kind, 6, 1e-2};
  options.guidance_scale = w;
  const Sampler sampler(options, model);
  const Noise noise(3);
  const auto y0 = initial_state(model, 4, noise, 0);
  const auto labels = ConditionSet::classes({0, 1, 2}).draw(noise, 0, 4, y0.options());
  const auto path = sample_path(sampler, model, y0, noise, 0, labels);
  const auto reward = label_weighted_brightness();  // the terminal cotangent reads the labels
  const auto adjoint =
      AdjointSolver(sampler, {1.3, 0.4}).gradient({model, params, &reference}, path, reward);
  const auto unrolled = unrolled_objective(sampler, {model, params, &reference}, y0, {noise, 0},
                                           reward, {{1.3, 0.4}}, labels);
  const auto autograd = torch::autograd::grad({unrolled.objective.mean()}, params);
  EXPECT_LT(testing::relative_error(adjoint.grad, autograd), kAdjointTolerance);
  EXPECT_LT(testing::relative_error({adjoint.kl}, {unrolled.kl}), kAdjointTolerance);
  EXPECT_GT(adjoint.kl.min().item<double>(), 0.0);
  // The conditions matter: other labels give another gradient.
  const auto other = sample_path(sampler, model, y0, noise, 0, (labels + 1) % kClasses);
  const auto moved =
      AdjointSolver(sampler, {1.3, 0.4}).gradient({model, params, &reference}, other, reward);
  EXPECT_GT(testing::relative_error(moved.grad, autograd), 1e-3);
}

INSTANTIATE_TEST_SUITE_P(Guidance, ConditionalAdjoint,
                         ::testing::Values(GuidanceCase{SamplerKind::SdeEuler, 0.0},
                                           GuidanceCase{SamplerKind::SdeEuler, 3.0},
                                           GuidanceCase{SamplerKind::Ddpm, 3.0}),
                         [](const auto& info) {
                           return std::string(info.param.sampler == SamplerKind::Ddpm ? "ddpm"
                                                                                      : "sde") +
                                  "_w" + std::to_string(int(info.param.w));
                         });

TEST(ConditionSets, DrawsAreAFunctionOfSeedAndStream) {
  const auto set = ConditionSet::classes({0, 1, 2, 5});
  const Noise noise(11);
  const auto options = torch::dtype(torch::kFloat64);
  EXPECT_TRUE(torch::equal(set.draw(noise, 4, 64, options), set.draw(noise, 4, 64, options)));
  EXPECT_FALSE(torch::equal(set.draw(noise, 4, 64, options), set.draw(noise, 5, 64, options)));
  const auto drawn = set.draw(noise, 4, 4000, options);
  for (int64_t label : {0, 1, 2, 5})  // each label about a quarter of the time
    EXPECT_NEAR(drawn.eq(label).to(torch::kFloat64).mean().item<double>(), 0.25, 0.03) << label;
  const auto tensors = ConditionSet::tensors(torch::randn({3, 2, 5}, torch::kFloat64));
  EXPECT_EQ(tensors.draw(noise, 0, 7, options).sizes(), c10::IntArrayRef({7, 2, 5}));
}

TEST(ConditionalTrainer, QueueSlotsCarryTheirStreamsConditionsAndResumeBitIdentically) {
  testing::TempDir dir;
  TrainerOptions o;
  o.sampler = {SamplerKind::SdeEuler, 4, 1e-2};
  o.sampler.guidance_scale = 1.5;
  o.queue_slots = 2;
  o.gradient = GradientEstimator::DoubleQueue;
  o.batch = 3;
  o.objective.beta = 0.1;
  o.optimiser.lr = 1e-2;
  o.conditions = ConditionSet::classes({0, 1, 2});
  Trainer uninterrupted(o, conditional_unet(), brightness());
  std::vector<IterationReport> expected;
  for (int i = 0; i < 7; ++i) expected.push_back(uninterrupted.step());
  const Noise noise(o.seed);
  for (const auto& slot : uninterrupted.queue().slots())
    EXPECT_TRUE(torch::equal(
        slot.path.condition,
        o.conditions->draw(noise, slot.stream, o.batch, torch::dtype(torch::kFloat64))))
        << "stream " << slot.stream;
  {
    Trainer first(o, conditional_unet(), brightness());
    for (int i = 0; i < 4; ++i) first.step();
    first.save_checkpoint(dir.file("ckpt.pt"));
  }
  Trainer resumed(o, conditional_unet(), brightness());
  resumed.load_checkpoint(dir.file("ckpt.pt"));
  for (int i = 4; i < 7; ++i) {
    const auto r = resumed.step();
    EXPECT_EQ(r.reward_mean, expected[i].reward_mean) << i;
    EXPECT_EQ(r.kl, expected[i].kl) << i;
    EXPECT_EQ(r.grad_norm, expected[i].grad_norm) << i;
  }
  const auto a = uninterrupted.model().trainable_parameters();
  const auto b = resumed.model().trainable_parameters();
  for (size_t i = 0; i < a.size(); ++i) EXPECT_TRUE(torch::equal(a[i], b[i])) << i;
  // Another condition set is another run.
  auto other = o;
  other.conditions = ConditionSet::classes({0, 1});
  Trainer mismatched(other, conditional_unet(), brightness());
  expect_error([&] { mismatched.load_checkpoint(dir.file("ckpt.pt")); },
               {"saved conditions = [0,1,2]", "this run conditions = [0,1]"});
}

// ---- refusals ----

TrainerOptions short_options() {
  TrainerOptions o;
  o.sampler = {SamplerKind::SdeEuler, 4, 1e-2};
  o.batch = 2;
  return o;
}

TEST(ConditionRefusals, ConditionsOfTheWrongShapeOrDtypeOrOutOfRange) {
  const auto model = conditional_unet();
  expect_error([&] { model.check_conditions(torch::zeros({2}, torch::kFloat64), 2); },
               {"tiny-unet", "class conditions must be int64 labels [2]", "Double"});
  expect_error([&] { model.check_conditions(torch::zeros({3}, torch::kLong), 2); },
               {"int64 labels [2]", "[3]"});
  auto o = short_options();
  o.conditions = ConditionSet::classes({0, 7});
  expect_error([&] { Trainer(o, model, brightness()); },
               {"class label 7 is out of range", "3 classes (0..2)"});
}

TEST(ConditionRefusals, GuidanceNeedsANullCondition) {
  auto model = conditional_unet();
  ModelCard card = model.card();
  card.condition->null_class = -1;  // trained without label dropout: no ∅
  const ScoreModel no_null(model.module(), card, {c10::kCPU, c10::kDouble});
  SamplerOptions options{SamplerKind::SdeEuler, 4, 1e-2};
  options.guidance_scale = 2.0;
  expect_error([&] { Sampler(options, no_null); },
               {"sampler.guidance_scale = 2", "null condition", "condition.null_class"});
  expect_error([&] { Sampler(options, make_tiny_unet({})); },
               {"sampler.guidance_scale = 2", "has no condition"});
}

TEST(ConditionRefusals, ConditionsAndModelsMustAgree) {
  auto o = short_options();
  o.conditions = ConditionSet::classes({0, 1});
  expect_error([&] { Trainer(o, make_tiny_unet({}), brightness()); },
               {"conditions were given, but the model is not conditional"});
  expect_error([&] { Trainer(short_options(), conditional_unet(), brightness()); },
               {"the model is conditional", "conditions.classes or conditions.file"});
  expect_error(
      [&] {
        conditional_unet().score(torch::zeros({2, 1, 4, 4}, torch::kFloat64),
                                 torch::full({2}, 0.5, torch::kFloat64));
      },
      {"conditional", "no conditions were given"});
}

// ---- through the CLI: a config with conditions and guidance, grids one row per class ----

TEST(ConditionalCli, TunesWithGuidanceWritesClassRowsAndSamplesByClass) {
  testing::TempDir dir;
  TinyUNetOptions o;
  o.size = 4;
  o.classes = kClasses;
  o.model.dtype = c10::kFloat;
  make_tiny_unet(o).save(dir.file("cond.pt"));
  nlohmann::json config = {
      {"model", dir.file("cond.pt")},
      {"reward", "brightness"},
      {"conditions", {{"classes", {0, 1, 2}}}},
      {"objective", {{"lambda", 1.0}, {"beta", 0.1}}},
      {"sampler", {{"kind", "sde-euler"}, {"steps", 4}, {"guidance_scale", 2.0}}},
      {"algorithm", {{"queue_slots", 2}}},
      {"batch", 3},
      {"iterations", 4},
      {"output",
       {{"run_dir", dir.file("run")}, {"image_every", 2}, {"grid_samples", 6}, {"log_every", 0}}}};
  write_json_file(dir.file("run.json"), config);
  const std::string idtune = IDTUNE_EXECUTABLE;
  const auto tuned = testing::run(idtune + " tune --config " + dir.file("run.json"));
  ASSERT_EQ(tuned.status, 0) << tuned.output;
  for (const auto* f : {"samples/before.png", "samples/step_000002.png", "samples/after.png"})
    EXPECT_TRUE(std::filesystem::exists(dir.file("run/") + f)) << f;
  EXPECT_EQ(read_json_file(dir.file("run/tuned.json"))["condition"]["num_classes"], kClasses);
  const auto sampled =
      testing::run(idtune + " sample --model " + dir.file("run/tuned.pt") +
                   " --classes 0,2 --guidance 2 --n 4 --steps 4 --out " + dir.file("grid.png"));
  EXPECT_EQ(sampled.status, 0) << sampled.output;
  EXPECT_TRUE(std::filesystem::exists(dir.file("grid.png")));
  const auto eval = testing::run(
      idtune + " eval --model " + dir.file("run/tuned.pt") + " --reference " + dir.file("cond.pt") +
      " --classes 0,1,2 --guidance 2 --n 30 --batch 10 --steps 4" + " 2>/dev/null");
  ASSERT_EQ(eval.status, 0) << eval.output;
  const auto report = nlohmann::json::parse(eval.output.substr(eval.output.find('{')));
  ASSERT_EQ(report["by_class"].size(), 3u) << report.dump();
  int64_t counted = 0;
  for (const auto& [label, entry] : report["by_class"].items()) {
    counted += entry["samples"].get<int64_t>();
    EXPECT_GT(entry["path_kl"].get<double>(), 0.0) << label;  // tuned: it moved from cond.pt
  }
  EXPECT_EQ(counted, 30);
  // Refusals with the flag or key named.
  const auto no_classes = testing::run(idtune + " sample --model " + dir.file("cond.pt") +
                                       " --steps 4 --out " + dir.file("g.png"));
  EXPECT_NE(no_classes.status, 0);
  EXPECT_NE(no_classes.output.find("no conditions were given"), std::string::npos)
      << no_classes.output;
  const auto out_of_range = testing::run(idtune + " sample --model " + dir.file("cond.pt") +
                                         " --classes 0,5 --steps 4 --out " + dir.file("g.png"));
  EXPECT_NE(out_of_range.output.find("class label 5 is out of range"), std::string::npos)
      << out_of_range.output;
  make_tiny_unet({}).save(dir.file("plain.pt"));
  const auto unguided = testing::run(idtune + " sample --model " + dir.file("plain.pt") +
                                     " --guidance 2 --steps 4 --out " + dir.file("g.png"));
  EXPECT_NE(unguided.output.find("--guidance = 2 needs a conditional model"), std::string::npos)
      << unguided.output;
  config["model"] = dir.file("plain.pt");
  config["output"]["run_dir"] = dir.file("plain_run");
  config["sampler"].erase("guidance_scale");
  write_json_file(dir.file("plain_run.json"), config);  // not plain.json: its card
  const auto plain = testing::run(idtune + " tune --config " + dir.file("plain_run.json"));
  EXPECT_NE(plain.status, 0);
  EXPECT_NE(plain.output.find("conditions were given, but the model is not conditional"),
            std::string::npos)
      << plain.output;
}

}  // namespace
}  // namespace idtune
