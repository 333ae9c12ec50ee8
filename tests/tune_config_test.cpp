// The tune configuration: shipped configs parse, --set overrides, the resolved config round-trips.

#include "idtune/training/tune_config.h"
#include "idtune/core/json_reader.h"
#include "idtune/langevin/config.h"
#include "idtune/run/langevin_run.h"
#include "idtune/run/tune_run.h"
#include "test_helpers.h"

#include <gtest/gtest.h>

#include <filesystem>

namespace idtune {
namespace {

using testing::expect_error;

/// Runs `body` with the working directory at the repository root (configs name files
/// relative to it), restoring it afterwards.
template <typename Body>
void in_source_dir(Body body) {
  const auto previous = std::filesystem::current_path();
  std::filesystem::current_path(IDTUNE_SOURCE_DIR);
  body();
  std::filesystem::current_path(previous);
}

// Every config under configs/ (recursively) is read by its parser and, where the files it
// names are shipped, built into its run: the value rules live in the constructors.
TEST(ShippedConfigs, EveryConfigParsesAndBuildsItsRun) {
  int tune_runs = 0, langevin_runs = 0, parsed = 0;
  const testing::TempDir scratch;
  in_source_dir([&] {
    for (const auto& entry : std::filesystem::recursive_directory_iterator("configs")) {
      if (entry.path().extension() != ".json") continue;
      const auto file = entry.path().string();
      const auto json = read_json_file(file);
      SCOPED_TRACE(file);
      if (entry.path().parent_path().filename() == "langevin") {
        EXPECT_NO_THROW(LangevinRun run(parse_langevin_config(json, file)));
        ++langevin_runs;
      } else {
        auto config = parse_tune_config(json, file);
        config.output.run_dir = scratch.file(entry.path().stem().string());  // not the user's runs/
        if (std::filesystem::exists(config.model)) {
          EXPECT_NO_THROW(TuneRun run(config, /*resume=*/false));
          ++tune_runs;
        }
      }
      ++parsed;
    }
  });
  EXPECT_GE(tune_runs, 2);      // fashion_brightness, fashion_class
  EXPECT_GE(langevin_runs, 3);  // hexagon, scratch_weights, scratch_full
  EXPECT_GE(parsed, 6);
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
