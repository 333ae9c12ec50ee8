// The tune configuration: shipped configs parse, --set overrides, the resolved config round-trips.

#include "idtune/training/tune_config.h"
#include "analytic_problems.h"
#include "idtune/core/json_reader.h"

#include <gtest/gtest.h>

#include <filesystem>

namespace idtune {
namespace {

using testing::expect_error;

TEST(TuneConfig, EveryShippedConfigParses) {
  int parsed = 0;
  for (const auto& entry : std::filesystem::directory_iterator(IDTUNE_SOURCE_DIR "/configs")) {
    if (entry.path().extension() != ".json") continue;
    const auto file = entry.path().string();
    EXPECT_NO_THROW(parse_tune_config(read_json_file(file), file)) << file;
    ++parsed;
  }
  EXPECT_GE(parsed, 1);
}

TEST(TuneConfig, ResolvedConfigParsesBackToItself) {
  nlohmann::json config = {{"model", "m.pt"},
                           {"sampler", {{"steps", 12}, {"spacing", "quadratic"}}},
                           {"algorithm", {{"queue_slots", 3}, {"gradient", "double-queue"}}},
                           {"optimiser", {{"tune", {"^up_"}}, {"ema_decay", 0.99}}}};
  const auto resolved = to_json(parse_tune_config(config, "run.json"));
  EXPECT_EQ(to_json(parse_tune_config(resolved, "config.json")), resolved);
  EXPECT_EQ(resolved["algorithm"]["queue_slots"], 3);
  EXPECT_EQ(resolved["sampler"]["spacing"], "quadratic");
  EXPECT_EQ(resolved["objective"]["beta"], 0.0);  // defaults are written out
}

TEST(TuneConfig, SetOverridesNestedKeysWithJsonOrStringValues) {
  nlohmann::json config = {{"model", "m.pt"}};
  apply_override(config, "sampler.steps=64");
  apply_override(config, "reward=0.5*brightness + red");
  apply_override(config, "optimiser.tune=[\"^up_\", \"out\"]");
  apply_override(config, "algorithm.warm_start=false");
  EXPECT_EQ(config["sampler"]["steps"], 64);
  EXPECT_EQ(config["reward"], "0.5*brightness + red");
  EXPECT_EQ(config["optimiser"]["tune"], nlohmann::json({"^up_", "out"}));
  EXPECT_EQ(config["algorithm"]["warm_start"], false);
  expect_error([&] { apply_override(config, "model.path=x"); }, {"/model", "is not an object"});
  expect_error([&] { apply_override(config, "sampler..steps=1"); }, {"empty key component"});
  expect_error([&] { apply_override(config, "=1"); }, {"expected key=value"});
}

}  // namespace
}  // namespace idtune
