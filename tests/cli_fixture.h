#pragma once
// The idtune executable on a tiny U-Net: the fixture of the tests that run the CLI
// (cli_test.cpp, fault_injection_test.cpp) and what they compare runs by.

#include "idtune/core/json_reader.h"
#include "idtune/diffusion/toy_models.h"
#include "test_helpers.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

namespace idtune::testing {

/// `idtune <args>`: its exit status and output.
inline Result idtune(const std::string& args) {
  return run(std::string(IDTUNE_EXECUTABLE) + " " + args);
}

/// The bytes of a file ("" when it cannot be read).
inline std::string contents(const std::string& file) {
  std::ifstream in(file, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), {}};
}

/// metrics.jsonl without what depends on the machine's speed (wall_time_s,
/// sample_steps_per_s): two runs of one configuration must agree on the rest, bit for bit.
inline std::string metrics_without_timings(const std::string& file) {
  std::ifstream in(file);
  std::string out;
  for (std::string line; std::getline(in, line);) {
    auto j = nlohmann::json::parse(line);
    j.erase("wall_time_s");
    j.erase("sample_steps_per_s");
    out += j.dump() + "\n";
  }
  return out;
}

/// A tiny U-Net saved with its card, and a valid 30-iteration config for it, in a fresh
/// directory.
class CliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    TinyUNetOptions o;
    o.size = 4;
    o.width = 4;
    o.model.dtype = c10::kFloat;
    make_tiny_unet(o).save(dir_.file("unet.pt"));
    config_ = {{"model", dir_.file("unet.pt")},
               {"reward", "brightness"},
               {"objective", {{"lambda", 1.0}, {"beta", 0.05}}},
               {"sampler", {{"kind", "sde-euler"}, {"steps", 8}}},
               {"algorithm", {{"queue_slots", 4}}},
               {"batch", 4},
               {"iterations", 30},
               {"optimiser", {{"lr", 3e-3}}},
               {"output", {{"run_dir", run_dir()}, {"image_every", 0}, {"log_every", 10}}}};
  }
  std::string run_dir() const { return dir_.file("run"); }
  std::string write_config(const nlohmann::json& config) const {
    write_json_file(dir_.file("run.json"), config);
    return dir_.file("run.json");
  }
  /// Runs tune with a config changed by `edit`; expects failure naming every fragment, and
  /// no checkpoint in the run directory.
  template <typename Edit>
  void expect_refused(Edit edit, const std::vector<std::string>& fragments,
                      const std::string& extra_flags = "") {
    auto config = config_;
    edit(config);
    const auto r = idtune("tune --config " + write_config(config) + " " + extra_flags);
    EXPECT_NE(r.status, 0) << r.output;
    for (const auto& f : fragments)
      EXPECT_NE(r.output.find(f), std::string::npos) << "missing '" << f << "' in:\n" << r.output;
    EXPECT_FALSE(std::filesystem::exists(run_dir() + "/checkpoint.pt")) << r.output;
  }

  TempDir dir_;
  nlohmann::json config_;
};

}  // namespace idtune::testing
