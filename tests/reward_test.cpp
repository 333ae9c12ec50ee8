// Reward: built-ins against hand-computed values, weighted sums, TorchScript rewards saved and
// loaded, and a clear message for every bad spec and every bad reward value.

#include "idtune/training/reward.h"

#include "idtune/core/error.h"
#include "test_helpers.h"

#include <gtest/gtest.h>
#include <torch/script.h>
#include <torch/torch.h>

#include <fstream>

namespace idtune {
namespace {

using testing::expect_error;

using testing::TempDir;

/// Float64 round-off on a handful of operations.
constexpr double kRoundOff = 1e-12;

ModelCard card_with(std::vector<int64_t> shape, std::array<double, 2> range = {-1.0, 1.0}) {
  ModelCard card;
  card.shape = std::move(shape);
  card.data_range = range;
  return card;
}

Reward parse(const std::string& spec, const ModelCard& card) {
  return Reward::parse(spec, card, c10::kCPU, c10::kDouble);
}

/// Random float64 images [B, C, H, W] for `card`, in its data range.
at::Tensor images_for(const ModelCard& card, int64_t batch, uint64_t seed = 0) {
  torch::manual_seed(seed);
  const auto [lo, hi] = card.data_range;
  auto u = torch::rand({batch, card.shape[0], card.shape[1], card.shape[2]}, torch::kFloat64);
  return lo + (hi - lo) * u;
}

void expect_close(const at::Tensor& computed, const at::Tensor& expected, double tolerance) {
  ASSERT_EQ(computed.sizes(), expected.sizes());
  const double diff = (computed - expected).abs().max().item<double>();
  EXPECT_LE(diff, tolerance) << "computed " << computed << "\nexpected " << expected;
}

void expect_parse_error(const std::string& spec, const ModelCard& card,
                        const std::vector<std::string>& fragments) {
  expect_error([&] { parse(spec, card); }, fragments);
}

/// Saves a parameter-free TorchScript module with `forward_source` (a `def forward(self, x)`).
std::string save_module(const TempDir& dir, const std::string& file,
                        const std::string& forward_source) {
  torch::jit::Module module("TestReward");
  module.define(forward_source);
  module.save(dir.file(file));
  return dir.file(file);
}

/// A linear classifier x -> W flatten(x) + b with W [K, D] and b [K], saved; returns its path.
std::string save_linear_classifier(const TempDir& dir, const at::Tensor& W, const at::Tensor& b) {
  torch::jit::Module module("LinearClassifier");
  module.register_parameter("W", W, false);
  module.register_parameter("b", b, false);
  module.define(R"(
def forward(self, x):
    return torch.matmul(x.flatten(1), self.W.t()) + self.b
)");
  module.save(dir.file("classifier.pt"));
  return dir.file("classifier.pt");
}

/// Two RGB images [2, 3, 1, 2] in [−1, 1]; on [0, 1] image 0 is red (1, 1), green (0, 0),
/// blue (0, 0.5), and image 1 is 0.5 everywhere.
at::Tensor two_rgb_images() {
  return torch::tensor({1., 1., -1., -1., -1., 0., 0., 0., 0., 0., 0., 0.}, torch::kFloat64)
      .view({2, 3, 1, 2});
}

TEST(RewardBuiltins, BrightnessIsTheMeanPixelOnTheUnitInterval) {
  auto r = parse("brightness", card_with({3, 1, 2}));
  expect_close(r(two_rgb_images()), torch::tensor({2.5 / 6, 0.5}, torch::kFloat64), kRoundOff);
}

TEST(RewardBuiltins, RedIsTheRedMeanMinusTheMeanOfGreenAndBlue) {
  auto r = parse("red", card_with({3, 1, 2}));
  expect_close(r(two_rgb_images()), torch::tensor({1 - 0.5 / 4, 0.0}, torch::kFloat64), kRoundOff);
}

TEST(RewardBuiltins, ChannelMeanIsTheChannelsMeanOnTheUnitInterval) {
  auto r = parse("channel-mean:2", card_with({3, 1, 2}));
  expect_close(r(two_rgb_images()), torch::tensor({0.25, 0.5}, torch::kFloat64), kRoundOff);
}

TEST(RewardBuiltins, BrightnessGradientIsOneOverPixelCountTimesRange) {
  const auto card = card_with({3, 2, 2}, {-1.0, 3.0});
  auto x = images_for(card, 2).requires_grad_(true);
  parse("brightness", card)(x).sum().backward();
  const double expected = 1.0 / (12 * (3.0 - -1.0));  // 1 / (N (hi − lo))
  expect_close(x.grad(), torch::full_like(x, expected), kRoundOff);
}

TEST(RewardSpecs, WeightedSumEqualsTheWeightedSumOfItsParts) {
  const auto card = card_with({3, 2, 2});
  const auto x = images_for(card, 4);
  auto sum = parse("0.5*brightness + 2*red + -1.5*channel-mean:2", card);
  auto parts = 0.5 * parse("brightness", card)(x) + 2 * parse("red", card)(x) -
               1.5 * parse("channel-mean:2", card)(x);
  expect_close(sum(x), parts, kRoundOff);
}

TEST(RewardSpecs, NameIsTheNormalisedSpecAndParsesToItself) {
  const auto card = card_with({3, 2, 2});
  auto r = parse(" 0.50 * brightness+1*red + 2 * channel-mean: 1 ", card);
  EXPECT_EQ(r.name(), "0.5*brightness + red + 2*channel-mean:1");
  EXPECT_EQ(parse(r.name(), card).name(), r.name());
}

TEST(RewardSpecs, FunctionGivesTheEngineTheRewardAndItsGradient) {
  const auto card = card_with({1, 2, 2}, {0.0, 2.0});
  const auto x = images_for(card, 3);
  auto r = parse("brightness", card);
  const double lambda = 2.0;
  auto terminal = evaluate_terminal_reward(r.function(), x, lambda);
  expect_close(terminal.reward, r(x), kRoundOff);
  expect_close(terminal.cotangent, torch::full_like(x, lambda / (4 * 2.0)), kRoundOff);
}

/// A seeded linear classifier x [B, 1, 2, 2] -> 4 logits, saved as TorchScript in a temp dir.
struct LinearClassifier {
  TempDir dir;
  ModelCard card = card_with({1, 2, 2});
  at::Tensor W, b;
  std::string path;
  LinearClassifier() {
    torch::manual_seed(1);
    W = torch::randn({4, 4}, torch::kFloat64);
    b = torch::randn({4}, torch::kFloat64);
    path = save_linear_classifier(dir, W, b);
  }
};

TEST(RewardTorchScript, ClassifierRewardIsTheLogSoftmaxOfItsClass) {
  const LinearClassifier f;
  auto r = parse("classifier:" + f.path + ":1", f.card);
  EXPECT_EQ(r.name(), "classifier:" + f.path + ":1");
  const auto x = images_for(f.card, 3);
  const auto logits = torch::matmul(x.flatten(1), f.W.t()) + f.b;
  const auto expected = logits.select(1, 1) - logits.exp().sum(1).log();  // log softmax, class 1
  expect_close(r(x), expected, kRoundOff);
}

TEST(RewardTorchScript, ConditionalClassifierRewardReadsEachSamplesLabel) {
  const LinearClassifier f;
  auto r = parse("classifier-cond:" + f.path + " + brightness", f.card);
  const auto x = images_for(f.card, 3);
  const auto labels = torch::tensor({2, 0, 3}, torch::kLong);
  const auto log_p = torch::log_softmax(torch::matmul(x.flatten(1), f.W.t()) + f.b, 1);
  const auto expected = torch::stack({log_p[0][2], log_p[1][0], log_p[2][3]}) +
                        ((x + 1) / 2).mean({1, 2, 3});  // + brightness on [-1, 1]
  expect_close(r(x, labels), expected, kRoundOff);
  testing::expect_error([&] { r(x); }, {"classifier-cond needs each sample's class label"});
}

TEST(RewardTorchScript, UserModuleRoundTripsWithItsValueAndGradient) {
  TempDir dir;
  const auto card = card_with({2, 2, 2});
  const auto path = save_module(dir, "square.pt", R"(
def forward(self, x):
    return 3.0 * (x * x).mean([1, 2, 3])
)");
  auto r = parse("0.5*" + path, card);
  EXPECT_EQ(r.name(), "0.5*" + path);
  auto x = images_for(card, 3).requires_grad_(true);
  const auto value = r(x);
  expect_close(value, 1.5 * (x * x).mean({1, 2, 3}), kRoundOff);
  value.sum().backward();
  expect_close(x.grad(), 1.5 * 2 * x.detach() / 8, kRoundOff);  // d/dx of 1.5 mean(x²), N = 8
}

TEST(RewardTorchScript, ModuleRunsInTheRequestedDtype) {
  TempDir dir;
  const auto card = card_with({1, 2, 2});
  torch::manual_seed(2);
  const auto path = save_linear_classifier(dir, torch::randn({3, 4}, torch::kFloat64),
                                           torch::zeros({3}, torch::kFloat64));
  auto r = Reward::parse("classifier:" + path + ":0", card, c10::kCPU, c10::kFloat);
  EXPECT_EQ(r(images_for(card, 2).to(torch::kFloat)).scalar_type(), torch::kFloat);
}

TEST(RewardSpecErrors, UnknownNameListsTheValidNames) {
  expect_parse_error("0.5*sharpness", card_with({3, 2, 2}),
                     {"reward spec \"0.5*sharpness\"", "unknown reward \"sharpness\"",
                      "brightness, red, channel-mean, classifier", "channel-mean:<c>", ".pt"});
}

TEST(RewardSpecErrors, RedNeedsThreeChannels) {
  expect_parse_error("brightness + red", card_with({1, 2, 2}),
                     {"term \"red\"", "3 channels", "C = 1"});
}

TEST(RewardSpecErrors, ChannelIndexMustBeAChannelOfTheCard) {
  const auto card = card_with({3, 2, 2});
  expect_parse_error("channel-mean:3", card, {"channel 3 is out of range", "C = 3", "0..2"});
  expect_parse_error("channel-mean:-1", card, {"channel \"-1\" is not a non-negative integer"});
  expect_parse_error("channel-mean", card, {"expected channel-mean:<c>"});
  expect_parse_error("brightness:1", card, {"expected brightness", "takes no argument"});
}

TEST(RewardSpecErrors, ClassifierClassMustBeBelowItsClassCount) {
  TempDir dir;
  const auto card = card_with({1, 2, 2});
  const auto path = save_linear_classifier(dir, torch::zeros({4, 4}, torch::kFloat64),
                                           torch::zeros({4}, torch::kFloat64));
  expect_parse_error("classifier:" + path + ":4", card,
                     {"class 4 is out of range", path, "4 classes", "0..3"});
  expect_parse_error("classifier:" + path, card, {"expected classifier:<file.pt>:<class>"});
  expect_parse_error("classifier:" + path + ":first", card,
                     {"class \"first\" is not a non-negative integer"});
}

TEST(RewardSpecErrors, MissingFileIsNamed) {
  TempDir dir;
  const auto card = card_with({1, 2, 2});
  expect_parse_error(dir.file("missing.pt"), card, {dir.file("missing.pt"), "does not exist"});
  expect_parse_error("classifier:" + dir.file("gone.pt") + ":0", card,
                     {dir.file("gone.pt"), "does not exist"});
}

TEST(RewardSpecErrors, CorruptFileIsNamed) {
  TempDir dir;
  std::ofstream(dir.file("corrupt.pt")) << "not a TorchScript archive";
  expect_parse_error(dir.file("corrupt.pt"), card_with({1, 2, 2}),
                     {"cannot load reward '" + dir.file("corrupt.pt") + "' as TorchScript"});
}

TEST(RewardSpecErrors, ModuleReturningTheWrongShapeIsRefusedAtParse) {
  TempDir dir;
  const auto path = save_module(dir, "per_channel.pt", R"(
def forward(self, x):
    return x.mean([2, 3])
)");
  expect_parse_error(path, card_with({3, 2, 2}), {path, "returned shape [2, 3]", "expected [2]"});
}

TEST(RewardSpecErrors, MalformedWeightsAreRefused) {
  const auto card = card_with({1, 2, 2});
  expect_parse_error("abc*brightness", card, {"weight \"abc\" is not a finite number"});
  expect_parse_error("*brightness", card, {"weight \"\" is not a finite number"});
  expect_parse_error("inf*brightness", card, {"weight \"inf\" is not a finite number"});
  expect_parse_error("2*", card, {"no reward name after the weight"});
}

TEST(RewardSpecErrors, EmptySpecsAndTermsAreRefused) {
  const auto card = card_with({1, 2, 2});
  expect_parse_error("", card, {"reward spec is empty", "brightness"});
  expect_parse_error("  ", card, {"reward spec is empty"});
  expect_parse_error("brightness + ", card, {"term 2 of 2 is empty"});
}

TEST(RewardEvaluation, WrongShapeIsRefusedNamingTheReward) {
  TempDir dir;
  const auto card = card_with({1, 2, 2});
  const auto path = save_module(dir, "first_two.pt", R"(
def forward(self, x):
    return x.sum([1, 2, 3])[0:2]
)");
  auto r = parse(path, card);  // the probe batch has 2 images: passes
  expect_error([&] { r(images_for(card, 3)); },
               {"reward \"" + path + "\"", "returned shape [2]", "expected [3]"});
}

TEST(RewardEvaluation, NanIsRefusedNamingTheRewardAndTheTerm) {
  TempDir dir;
  const auto card = card_with({1, 2, 2});
  const auto path = save_module(dir, "sqrt_negative.pt", R"(
def forward(self, x):
    return torch.sqrt(x.mean([1, 2, 3]) - 10.0)
)");
  auto r = parse("brightness + " + path, card);
  expect_error([&] { r(images_for(card, 2)); },
               {"reward \"brightness + " + path + "\"", "term \"" + path + "\"", "NaN or Inf"});
}

TEST(RewardEvaluation, RewardWithoutGradientIsRefusedWhenImagesRequireGrad) {
  TempDir dir;
  const auto card = card_with({1, 2, 2});
  const auto detached = save_module(dir, "detached.pt", R"(
def forward(self, x):
    return x.sum([1, 2, 3]).detach()
)");
  const auto constant = save_module(dir, "constant.pt", R"(
def forward(self, x):
    return torch.zeros([x.size(0)], dtype=x.dtype)
)");
  const auto x = images_for(card, 2).requires_grad_(true);
  for (const auto& path : {detached, constant}) {
    auto r = parse("brightness + " + path, card);
    expect_error([&] { r(x); }, {"reward \"brightness + " + path + "\"", "term \"" + path + "\"",
                                 "does not depend differentiably on the images"});
    EXPECT_NO_THROW(r(x.detach()));  // no gradient asked for: nothing to check
    torch::NoGradGuard no_grad;
    EXPECT_NO_THROW(r(x));
  }
}

}  // namespace
}  // namespace idtune
