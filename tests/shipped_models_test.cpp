// The models shipped in models/: they load, agree with their cards, give finite outputs; the
// classifier is accurate on real test images; a short tune of the default model raises its
// brightness, and one of the class-conditional model raises its conditional reward in every class.

#include "idtune/core/json_reader.h"
#include "idtune/diffusion/conditions.h"
#include "idtune/diffusion/sampling.h"
#include "idtune/eval/classifier.h"
#include "idtune/eval/idx_images.h"
#include "idtune/training/reward.h"
#include "idtune/training/trainer.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <string>

namespace idtune {
namespace {

const std::string kScoreModel = IDTUNE_SOURCE_DIR "/models/fashion_unet.pt";
const std::string kConditionalModel = IDTUNE_SOURCE_DIR "/models/fashion_cond.pt";
const std::string kClassifier = IDTUNE_SOURCE_DIR "/models/fashion_classifier.pt";
const std::string kTestImages = "/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz";
const std::string kTestLabels = "/usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz";

TEST(ShippedModels, DefaultScoreModelMatchesItsCardAndGivesFiniteScores) {
  const auto model = ScoreModel::load(kScoreModel, {});  // load() probes the card's shape
  const auto& card = model.card();
  EXPECT_EQ(card.shape, (std::vector<int64_t>{1, 28, 28}));
  EXPECT_EQ(card.data_range, (std::array<double, 2>{-1.0, 1.0}));
  EXPECT_EQ(card.schedule.kind, ScheduleKind::Ou);
  torch::NoGradGuard no_grad;
  const auto x = torch::randn({4, 1, 28, 28});
  for (double t : {1e-3, 0.1, 1.0, 3.0}) {
    const auto s = model.score(x, torch::full({4}, t));
    EXPECT_EQ(s.sizes(), x.sizes());
    EXPECT_TRUE(s.isfinite().all().item<bool>()) << "t = " << t;
  }
}

// The shipped latent model (docs/latent.md): 4×7×7 latents decoded to 1×28×28 images that
// look like the data: its mean brightness, several garment classes, recognised with confidence.
// (Decoded N(0, I) latents are garment-like too, at confidence 0.69: the decoder does much.)
constexpr double kTestSetBrightness = 0.287;   // mean of (x + 1)/2 over the 10 000 test images
constexpr double kBrightnessTolerance = 0.06;  // 64 samples: ~3 standard errors
TEST(ShippedModels, LatentModelSamplesDecodeToRecognisableGarments) {
  const auto model = ScoreModel::load(IDTUNE_SOURCE_DIR "/models/fashion_latent.pt", {});
  ASSERT_TRUE(model.card().decoder.has_value());
  EXPECT_EQ(model.card().shape, (std::vector<int64_t>{4, 7, 7}));
  EXPECT_EQ(model.card().decoder->image_shape, (std::vector<int64_t>{1, 28, 28}));
  const Sampler sampler({SamplerKind::Ddpm, 16}, model);
  const Noise noise(1);
  const auto y0 = initial_state(model, 64, noise, 0);
  torch::NoGradGuard no_grad;
  const auto images = model.images(sample_path(sampler, model, y0, noise, 0).final_state());
  EXPECT_EQ(images.sizes(), c10::IntArrayRef({64, 1, 28, 28}));
  EXPECT_TRUE(images.isfinite().all().item<bool>());
  EXPECT_LE(images.abs().max().item<double>(), 1.0);  // the decoder's tanh: the data range
  const auto classifier = Classifier::load(kClassifier, c10::kCPU, c10::kFloat);
  const auto confidence = [&](const at::Tensor& x) {
    return torch::softmax(classifier.logits(x), 1).amax(1).mean().item<double>();
  };
  EXPECT_GT(confidence(images), 0.7);
  EXPECT_NEAR(((images + 1) / 2).mean().item<double>(), kTestSetBrightness, kBrightnessTolerance);
  const auto classes = std::get<0>(at::_unique(classifier.logits(images).argmax(1)));
  EXPECT_GE(classes.numel(), 5) << "predicted classes: " << classes;
}

TEST(ShippedModels, ClassifierIsAbove90PercentAccurateOn1000TestImages) {
  constexpr double kMinimumAccuracy = 0.90;
  const auto card = read_json_file(IDTUNE_SOURCE_DIR "/models/fashion_classifier.json");
  const auto classes = card.at("classes").get<std::vector<std::string>>();
  const auto range = card.at("data_range").get<std::array<double, 2>>();
  const auto classifier = Classifier::load(kClassifier, c10::kCPU, c10::kFloat);
  const auto images = read_idx_images(kTestImages, range, 1000);
  const auto labels = read_idx_labels(kTestLabels, 1000);
  ASSERT_EQ(images.sizes(), (std::vector<int64_t>{1000, 1, 28, 28}));
  EXPECT_EQ(classifier.logits(images.narrow(0, 0, 8)).size(1),
            static_cast<int64_t>(classes.size()));
  EXPECT_TRUE(classifier.features(images.narrow(0, 0, 8)).isfinite().all().item<bool>());
  EXPECT_GT(classifier.accuracy(images, labels), kMinimumAccuracy);
}

/// The reward of samples drawn with fixed noise (the same noise for every model), with the
/// given conditions (undefined: an unconditional model).
at::Tensor reward_of_samples(const Sampler& sampler, const ScoreModel& model,
                             const RewardFn& reward, int64_t n, const at::Tensor& conditions = {}) {
  torch::NoGradGuard no_grad;
  const Noise noise(/*seed=*/123);
  const auto y =
      sample_path(sampler, model, initial_state(model, n, noise, 0), noise, 0, conditions);
  return reward(y.final_state(), conditions);
}

/// Whether the paired gain (after − before) is positive by more than `standard_errors`.
::testing::AssertionResult PairedGain(const at::Tensor& before, const at::Tensor& after,
                                      double standard_errors) {
  const auto gain = (after - before).to(torch::kFloat64);
  const double mean = gain.mean().item<double>();
  const double standard_error = gain.std().item<double>() / std::sqrt(double(gain.numel()));
  if (mean > standard_errors * standard_error) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure()
         << "reward " << before.mean().item<double>() << " -> " << after.mean().item<double>()
         << ": gain " << mean << " not above " << standard_errors << " x " << standard_error;
}

/// A few Adam steps of Implicit Diffusion (queue of 2, K = 8, lr 1e-3) of `batch` samples.
TrainerOptions short_tune(int64_t batch) {
  TrainerOptions o;
  o.sampler.steps = 8;
  o.sampler.spacing = TimeSpacing::Quadratic;
  o.queue_slots = 2;
  o.batch = batch;
  o.optimiser.lr = 1e-3;
  o.seed = 7;
  return o;
}

/// A few Adam steps of Implicit Diffusion (queue of 2, K = 8) on the real model; the tuned
/// and base models are then compared on the same noise, so the paired difference must be
/// positive by more than kStandardErrors of its own spread.
void expect_short_tune_raises_brightness(const TrainerOptions& o,
                                         const ScoreModelOptions& model_options) {
  constexpr double kStandardErrors = 3.0;
  constexpr int64_t kSamples = 32;
  const auto base = ScoreModel::load(kScoreModel, {});
  const auto brightness = Reward::parse("brightness", base.card(), c10::kCPU, c10::kFloat);
  Trainer trainer(o, ScoreModel::load(kScoreModel, model_options), brightness.function());
  for (int i = 0; i < 8; ++i) trainer.step();
  ASSERT_GT(trainer.updates(), 0);
  // Both sampled in float32: the gain is the tuning's, not bf16's.
  const auto tuned = trainer.model().merged();
  const auto& sampler = trainer.sampler();
  const auto before = reward_of_samples(sampler, base, brightness.function(), kSamples);
  const auto after = reward_of_samples(sampler, tuned, brightness.function(), kSamples);
  EXPECT_TRUE(PairedGain(before, after, kStandardErrors));
}

TEST(ShippedModels, ShortTuneOfTheDefaultModelRaisesBrightness) {
  expect_short_tune_raises_brightness(short_tune(8), {});
}

TEST(ShippedModels, ShortLoraTuneOfTheDefaultModelRaisesBrightness) {
  TrainerOptions o = short_tune(8);
  o.lora.rank = 4;
  o.optimiser.lr = 1e-2;  // B starts at zero: adapters take larger steps than full weights
  expect_short_tune_raises_brightness(o, {});
}

TEST(ShippedModels, ShortBf16TuneOfTheDefaultModelRaisesBrightness) {
  expect_short_tune_raises_brightness(short_tune(8), {c10::kCPU, c10::kFloat, Precision::Bf16});
}

TEST(ShippedModels, ConditionalModelMatchesItsCardAndGuidanceChangesItsScore) {
  const auto model = ScoreModel::load(kConditionalModel, {});
  ASSERT_TRUE(model.card().condition.has_value());
  EXPECT_EQ(model.card().condition->num_classes, 10);
  EXPECT_EQ(model.card().condition->null_class, 10);
  torch::NoGradGuard no_grad;
  const auto x = torch::randn({4, 1, 28, 28});
  const auto t = torch::full({4}, 0.5);
  const auto labels = torch::tensor({0, 3, 7, 9}, torch::kLong);
  const auto unguided = model.guided_score(x, t, labels, 0.0);
  const auto guided = model.guided_score(x, t, labels, 2.0);
  EXPECT_TRUE(guided.isfinite().all().item<bool>());
  EXPECT_GT((guided - unguided).abs().max().item<double>(), 1e-3) << "guidance has no effect";
}

TEST(ShippedModels, ShortTuneOfTheConditionalModelRaisesTheConditionalRewardInEveryClass) {
  // Brightness plus log p(c | x) of the sample's own class: a few Adam steps, then each class
  // sampled from the base and the tuned model with the same noise; every class gains.
  constexpr double kStandardErrors = 2.0;  // per class, 8 paired samples
  constexpr int64_t kPerClass = 8;
  constexpr int64_t kClasses = 10;
  const std::string spec = "brightness + 0.1*classifier-cond:" + kClassifier;
  TrainerOptions o = short_tune(10);
  o.conditions = ConditionSet::classes({0, 1, 2, 3, 4, 5, 6, 7, 8, 9});
  const auto base = ScoreModel::load(kConditionalModel, {});
  const auto reward = Reward::parse(spec, base.card(), c10::kCPU, c10::kFloat);
  Trainer trainer(o, ScoreModel::load(kConditionalModel, {}), reward.function());
  for (int i = 0; i < 8; ++i) trainer.step();
  ASSERT_GT(trainer.updates(), 0);

  for (int64_t c = 0; c < kClasses; ++c) {
    const auto labels = torch::full({kPerClass}, c, torch::kLong);
    const auto& sampler = trainer.sampler();
    const auto before = reward_of_samples(sampler, base, reward.function(), kPerClass, labels);
    const auto after =
        reward_of_samples(sampler, trainer.model(), reward.function(), kPerClass, labels);
    EXPECT_TRUE(PairedGain(before, after, kStandardErrors)) << "class " << c;
  }
}

}  // namespace
}  // namespace idtune
