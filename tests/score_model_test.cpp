// ScoreModel: TorchScript + card loading, prediction-type conversions, and clear errors for
// every kind of bad input.

#include "idtune/diffusion/score_model.h"
#include "idtune/core/error.h"
#include "idtune/core/json_reader.h"
#include "idtune/diffusion/toy_models.h"
#include "test_helpers.h"

#include <gtest/gtest.h>
#include <torch/script.h>
#include <torch/torch.h>

#include <fstream>

namespace idtune {
namespace {

using testing::expect_error;

using testing::TempDir;

TinyUNetOptions unet_options(ScheduleKind schedule = ScheduleKind::Ou) {
  TinyUNetOptions o;
  o.size = 4;
  o.width = 4;
  o.schedule.kind = schedule;
  return o;
}

TEST(ScoreModelFiles, SaveThenLoadGivesTheSameScore) {
  TempDir dir;
  auto model = make_tiny_unet(unet_options());
  model.save(dir.file("unet.pt"));
  auto loaded = ScoreModel::load(dir.file("unet.pt"), {c10::kCPU, c10::kDouble});
  auto x = torch::randn({3, 1, 4, 4}, torch::kFloat64), t = torch::rand({3}, torch::kFloat64);
  EXPECT_TRUE(torch::equal(model.score(x, t), loaded.score(x, t)));
  EXPECT_EQ(to_json(loaded.card()), to_json(model.card()));
  auto in_float = ScoreModel::load(dir.file("unet.pt"), {c10::kCPU, c10::kFloat});
  EXPECT_EQ(in_float.score(x.to(torch::kFloat), t.to(torch::kFloat)).scalar_type(), torch::kFloat);
}

TEST(ScoreModelFiles, FrozenCopyIsIndependentAndNotTrainable) {
  auto model = make_ou_gaussian_model({1.0});
  auto frozen = model.frozen_copy();
  EXPECT_TRUE(frozen.trainable_parameters().empty());
  EXPECT_EQ(model.trainable_parameters().size(), 2u);
  {
    torch::NoGradGuard no_grad;
    model.trainable_parameters()[0].add_(1.0);
  }
  EXPECT_EQ(frozen.module().attr("theta").toTensor().item<double>(), 1.0);
}

// ---- prediction types: one score network wrapped to output ε and v ----

/// A module whose forward returns the inner score model's output converted to `prediction`,
/// with the `ou` schedule's α(t) = e^{−t}, σ(t) = √(1 − e^{−2t}) written in TorchScript.
ScoreModel wrap_as(const ScoreModel& inner, Prediction prediction) {
  torch::jit::Module m("Wrapped");
  m.register_module("inner", inner.clone().module());
  const char* body = prediction == Prediction::Epsilon ? "    return -sigma * s\n"
                     : prediction == Prediction::V
                         ? "    x0 = (x + sigma * sigma * s) / alpha\n"
                           "    return alpha * (-sigma * s) - sigma * x0\n"
                         : "    return (x + sigma * sigma * s) / alpha\n";  // x0 (Tweedie)
  m.define(std::string("def forward(self, x, t):\n"
                       "    s = self.inner.forward(x, t)\n"
                       "    alpha = torch.exp(-t).view(-1, 1, 1, 1)\n"
                       "    sigma = torch.sqrt(1 - torch.exp(-2 * t)).view(-1, 1, 1, 1)\n") +
           body);
  ModelCard card = inner.card();
  card.prediction = prediction;
  return ScoreModel(std::move(m), card, {c10::kCPU, c10::kDouble});
}

constexpr double kConversionTolerance = 1e-12;

TEST(PredictionTypes, EpsilonVAndSampleWrappersGiveTheSameScore) {
  auto score_model = make_tiny_unet(unet_options());
  auto x = torch::randn({5, 1, 4, 4}, torch::kFloat64);
  auto t = torch::rand({5}, torch::kFloat64) * 0.9 + 0.05;  // each sample its own time
  const auto expected = score_model.score(x, t);
  for (auto prediction : {Prediction::Epsilon, Prediction::V, Prediction::Sample}) {
    const auto got = wrap_as(score_model, prediction).score(x, t);
    EXPECT_LT(testing::relative_error({got}, {expected}), kConversionTolerance)
        << name_of(prediction, prediction_names());
  }
}

// ---- bad input: each a clear message naming the file or key, the value, what was expected ----

void write_text(const std::string& path, const std::string& text) { std::ofstream(path) << text; }

nlohmann::json good_card() {
  return {{"shape", {1, 4, 4}}, {"schedule", {{"kind", "ou"}, {"t_max", 1.0}}}};
}

TEST(BadInput, MissingModelFile) {
  expect_error([] { ScoreModel::load("/nonexistent/model.pt"); },
               {"/nonexistent/model.pt", "does not exist"});
}

TEST(BadInput, MissingCard) {
  TempDir dir;
  make_tiny_unet(unet_options()).module().save(dir.file("m.pt"));
  expect_error([&] { ScoreModel::load(dir.file("m.pt")); }, {dir.file("m.json"), "card"});
}

TEST(BadInput, CorruptTorchScriptFile) {
  TempDir dir;
  write_text(dir.file("m.pt"), "this is not a zip archive");
  write_json_file(dir.file("m.json"), good_card());
  expect_error([&] { ScoreModel::load(dir.file("m.pt")); },
               {"cannot load", dir.file("m.pt"), "torch.jit.save"});
}

TEST(BadInput, CardThatIsNotJson) {
  TempDir dir;
  make_tiny_unet(unet_options()).module().save(dir.file("m.pt"));
  write_text(dir.file("m.json"), "{\"shape\": [1, 4,");
  expect_error([&] { ScoreModel::load(dir.file("m.pt")); }, {dir.file("m.json"), "not valid JSON"});
}

void expect_card_error(const nlohmann::json& card, const std::vector<std::string>& fragments) {
  expect_error([&] { parse_model_card(card, "card.json"); }, fragments);
}

TEST(BadInput, CardWithUnknownKey) {
  auto card = good_card();
  card["predction"] = "score";
  expect_card_error(card, {"card.json", "/predction", "unknown key", "prediction"});
  card = good_card();
  card["schedule"]["beta_mn"] = 0.1;
  expect_card_error(card, {"/schedule/beta_mn", "unknown key"});
}

TEST(BadInput, CardWithOutOfRangeOrInvalidValues) {
  auto card = good_card();
  card["schedule"]["t_max"] = -1.0;
  expect_card_error(card, {"/schedule/t_max", "-1", "out of range"});
  card = good_card();
  card["prediction"] = "noise";
  expect_card_error(card, {"/prediction", "noise", "score, epsilon, v"});
  card = good_card();
  card["schedule"]["kind"] = "linear";
  expect_card_error(card, {"/schedule/kind", "ou, vp-linear, cosine, ddpm-discrete"});
  card = good_card();
  card["shape"] = {4, 4};
  expect_card_error(card, {"/shape", "[C, H, W]"});
  card = good_card();
  card.erase("shape");
  expect_card_error(card, {"/shape", "missing"});
  card = good_card();
  card["data_range"] = {1, -1};
  expect_card_error(card, {"/data_range", "low < high"});
  card = good_card();
  card["shape"] = "1x4x4";
  expect_card_error(card, {"/shape", "expected an array"});
}

TEST(BadInput, TimeInputThatDoesNotFitTheSchedule) {
  auto card = good_card();
  card["time_input"] = "discrete";
  expect_card_error(card, {"/time_input", "ddpm-discrete"});
}

TEST(BadInput, ForwardWithWrongSignature) {
  torch::jit::Module m("OneArgument");
  m.define("def forward(self, x):\n    return x\n");
  auto card = parse_model_card(good_card(), "card.json");
  expect_error([&] { ScoreModel(m, card, {}, "one_arg.pt"); },
               {"one_arg.pt", "forward must take (x, t)"});
}

TEST(BadInput, ForwardReturningWrongShape) {
  torch::jit::Module m("WrongShape");
  m.define("def forward(self, x, t):\n    return x.sum(1)\n");
  auto card = parse_model_card(good_card(), "card.json");
  expect_error([&] { ScoreModel(m, card, {}, "wrong_shape.pt"); },
               {"wrong_shape.pt", "returned shape [2, 4, 4]", "expected [2, 1, 4, 4]"});
}

TEST(BadInput, CardShapeThatDoesNotMatchTheModel) {
  TempDir dir;
  make_tiny_unet(unet_options()).save(dir.file("m.pt"));
  auto card = read_json_file(dir.file("m.json"));
  card["shape"] = {3, 4, 4};  // the network's first conv takes 1 channel
  card.erase("output_channels");
  write_json_file(dir.file("m.json"), card);
  expect_error([&] { ScoreModel::load(dir.file("m.pt")); },
               {dir.file("m.pt"), "forward([2, 3, 4, 4], [2]) failed"});
}

}  // namespace
}  // namespace idtune
