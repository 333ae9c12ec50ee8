// docs/bring-your-own-model.md as a test: a PyTorch state dict of an architecture idtune has
// never seen (ε-prediction, ddpm-discrete schedule, integer time) is exported by
// scripts/export_model.py, tuned by `idtune tune`, and the tuned TorchScript runs in Python.

#include "idtune/core/json_reader.h"
#include "test_helpers.h"

#include <gtest/gtest.h>

namespace idtune {
namespace {

using testing::Result;
using testing::run;

const std::string kPython = "/usr/bin/python3 ";
const std::string kScripts = IDTUNE_SOURCE_DIR "/scripts/";

class BringYourOwnModel : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto trained =
        run(kPython + kScripts + "example_denoiser.py --steps 0 --threads 1 --out " +
            dir_.file("state.pt"));
    ASSERT_EQ(trained.status, 0) << trained.output;
  }
  Result export_model(const std::string& extra) const {
    return run(kPython + kScripts + "export_model.py --module " + kScripts +
               "example_denoiser.py --class DilatedDenoiser --state-dict " + dir_.file("state.pt") +
               " --shape 1 28 28 --schedule ddpm-discrete --prediction epsilon --time-dtype long" +
               " --out " + dir_.file("denoiser.pt") + " " + extra);
  }
  testing::TempDir dir_;
};

TEST_F(BringYourOwnModel, ExportTuneAndLoadTheTunedModelBackInPython) {
  const auto exported = export_model("");
  ASSERT_EQ(exported.status, 0) << exported.output;
  const auto card = read_json_file(dir_.file("denoiser.json"));
  EXPECT_EQ(card["schedule"]["kind"], "ddpm-discrete");
  EXPECT_EQ(card["time_input"], "discrete");
  EXPECT_EQ(card["time_dtype"], "long");

  const nlohmann::json config = {{"model", dir_.file("denoiser.pt")},
                                 {"reward", "brightness"},
                                 {"objective", {{"lambda", 1.0}, {"beta", 0.1}}},
                                 {"sampler", {{"kind", "ddpm"}, {"steps", 4}}},
                                 {"algorithm", {{"queue_slots", 2}}},
                                 {"batch", 2},
                                 {"iterations", 3},
                                 {"output", {{"run_dir", dir_.file("run")}, {"image_every", 0}}}};
  write_json_file(dir_.file("run.json"), config);
  const auto tuned = run(IDTUNE_EXECUTABLE " tune --config " + dir_.file("run.json"));
  ASSERT_EQ(tuned.status, 0) << tuned.output;

  // The tuned file is a TorchScript module with the same signature, and its weights moved.
  const auto loaded = run(kPython +
                          "-c \"import torch\n"
                          "tuned = torch.jit.load('" +
                          dir_.file("run/tuned.pt") +
                          "')\n"
                          "base = torch.jit.load('" +
                          dir_.file("denoiser.pt") +
                          "')\n"
                          "x, t = torch.randn(3, 1, 28, 28), torch.tensor([0, 500, 999])\n"
                          "y = tuned(x, t)\n"
                          "assert y.shape == x.shape and torch.isfinite(y).all()\n"
                          "assert not torch.equal(y, base(x, t)), 'weights did not move'\n"
                          "print('loaded OK')\"");
  EXPECT_EQ(loaded.status, 0) << loaded.output;
  EXPECT_NE(loaded.output.find("loaded OK"), std::string::npos) << loaded.output;
}

TEST_F(BringYourOwnModel, ExportRefusesAStateDictThatDoesNotFitTheClass) {
  const auto r = export_model("--init-kwargs '{\"ch\": 16}'");
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.output.find("state dict does not fit DilatedDenoiser"), std::string::npos)
      << r.output;
  EXPECT_FALSE(std::filesystem::exists(dir_.file("denoiser.pt")));
}

TEST_F(BringYourOwnModel, ExportRefusesAnUnknownClassListingTheClassesItFound) {
  const auto r = export_model("--class UNet");
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.output.find("defines no class 'UNet'"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("DilatedDenoiser"), std::string::npos) << r.output;
}

}  // namespace
}  // namespace idtune
