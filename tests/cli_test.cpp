// The idtune executable as a user meets it: a tune run end to end, the export read back in
// Python, and bad input of every kind refused with a clear message, a non-zero exit and no
// checkpoint left behind.

#include "cli_fixture.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

namespace idtune {
namespace {

using testing::CliTest;
using testing::contents;
using testing::idtune;
using testing::metrics_without_timings;
using testing::run;

TEST_F(CliTest, TuneRaisesTheRewardAndWritesTheRunDirectory) {
  const auto r = idtune("tune --config " + write_config(config_));
  ASSERT_EQ(r.status, 0) << r.output;
  for (const auto* f : {"config.json", "metrics.jsonl", "checkpoint.pt", "tuned.pt", "tuned.json",
                        "samples/before.png", "samples/after.png"})
    EXPECT_TRUE(std::filesystem::exists(run_dir() + "/" + f)) << f;
  std::ifstream metrics(run_dir() + "/metrics.jsonl");
  std::vector<nlohmann::json> lines;
  for (std::string line; std::getline(metrics, line);) lines.push_back(nlohmann::json::parse(line));
  ASSERT_EQ(lines.size(), 30u);
  auto mean_reward = [&](size_t from, size_t to) {
    double sum = 0;
    for (size_t i = from; i < to; ++i) sum += lines[i]["reward_mean"].get<double>();
    return sum / double(to - from);
  };
  EXPECT_GT(mean_reward(25, 30), mean_reward(0, 5) + 0.05);
  for (const auto* key :
       {"step", "reward_std", "kl", "loss", "grad_norm", "lr", "sample_steps_per_s", "wall_time_s"})
    EXPECT_TRUE(lines.back().contains(key)) << key;
  const auto card = read_json_file(run_dir() + "/tuned.json");
  EXPECT_EQ(card["provenance"]["reward"], "brightness");
  EXPECT_EQ(card["provenance"]["beta"], 0.05);
}

TEST_F(CliTest, ResumedRunHasTheSameMetricsAndWeights) {
  ASSERT_EQ(idtune("tune --config " + write_config(config_)).status, 0);
  std::filesystem::rename(run_dir(), dir_.file("uninterrupted"));
  ASSERT_EQ(idtune("tune --config " + write_config(config_) + " --set iterations=13").status, 0);
  const auto r = idtune("tune --config " + write_config(config_) + " --resume");
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_EQ(metrics_without_timings(run_dir() + "/metrics.jsonl"),
            metrics_without_timings(dir_.file("uninterrupted/metrics.jsonl")));
  EXPECT_EQ(run("cmp " + run_dir() + "/tuned.pt " + dir_.file("uninterrupted/tuned.pt")).status, 0);
}

TEST_F(CliTest, SigtermWritesACheckpointExitsZeroAndTheRunResumes) {
  auto config = config_;
  config["iterations"] = 100000;  // far more than the test waits for
  config["output"]["checkpoint_every"] = 0;
  const std::string tune =
      std::string(IDTUNE_EXECUTABLE) + " tune --config " + write_config(config);
  // Start, wait for the first metrics line, send SIGTERM, report the exit status.
  const auto r =
      run("bash -c '" + tune + " & pid=$!; while [ ! -s " + run_dir() +
          "/metrics.jsonl ]; do sleep 0.05; done; kill -TERM $pid; wait $pid; echo exit=$?'");
  EXPECT_NE(r.output.find("exit=0"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("interrupted at iteration"), std::string::npos) << r.output;
  ASSERT_TRUE(std::filesystem::exists(run_dir() + "/checkpoint.pt"));
  EXPECT_FALSE(std::filesystem::exists(run_dir() + "/tuned.pt"));  // not finished, not exported
  const auto resumed =
      idtune("tune --config " + write_config(config) + " --resume --set iterations=40");
  EXPECT_EQ(resumed.status, 0) << resumed.output;
  EXPECT_TRUE(std::filesystem::exists(run_dir() + "/tuned.pt"));
}

TEST_F(CliTest, ExportLoadsInPythonAndItsRewardMovedAsReported) {
  ASSERT_EQ(idtune("tune --config " + write_config(config_)).status, 0);
  const auto eval = idtune("eval --model " + run_dir() + "/tuned.pt --reference " +
                           dir_.file("unet.pt") + " --n 512 --steps 8");
  ASSERT_EQ(eval.status, 0) << eval.output;
  const auto report = nlohmann::json::parse(eval.output.substr(eval.output.find('{')));
  const auto check = run(
      "/usr/bin/python3 " IDTUNE_SOURCE_DIR "/scripts/check_export.py --tuned " + run_dir() +
      "/tuned.pt --base " + dir_.file("unet.pt") + " --reward brightness --steps 8 --n 512" +
      " --expected-reward " + std::to_string(report["reward_mean"].get<double>()) +
      " --expected-base-reward " + std::to_string(report["reference_reward_mean"].get<double>()));
  EXPECT_EQ(check.status, 0) << check.output;
  EXPECT_NE(check.output.find("export OK"), std::string::npos) << check.output;
}

TEST_F(CliTest, LoraRunExportsTheMergedModelAndAdaptersThatPythonMergesBack) {
  // bf16 and LoRA from the config; Python (torch.load, torch.jit.load, hashlib) rebuilds
  // tuned.pt's weights from the base model and tuned_lora.pt by the formula tuned_lora.json
  // states, and checks the base model's SHA-1.
  auto config = config_;
  config["iterations"] = 6;
  config["precision"] = "bf16";
  config["lora"] = {{"rank", 2}, {"alpha", 4}, {"targets", {"^(in|down|up|out)_w$"}}};
  const auto tune = idtune("tune --config " + write_config(config));
  ASSERT_EQ(tune.status, 0) << tune.output;
  EXPECT_NE(tune.output.find("(LoRA adapters, rank 2), precision bf16"), std::string::npos)
      << tune.output;
  std::ofstream(dir_.file("merge.py")) << R"(import hashlib, json, sys, torch
run, base_file = sys.argv[1], sys.argv[2]
card = json.load(open(run + "/tuned_lora.json"))
assert card["base_model_sha1"] == hashlib.sha1(open(base_file, "rb").read()).hexdigest()
adapters = torch.load(run + "/tuned_lora.pt")
base = dict(torch.jit.load(base_file).named_parameters())
tuned = dict(torch.jit.load(run + "/tuned.pt").named_parameters())
worst = 0.0
for name in card["weights"]:
    A, B = adapters[name + ".lora_A"], adapters[name + ".lora_B"]
    merged = base[name] + card["scale"] * (B @ A).reshape(base[name].shape)
    worst = max(worst, (merged - tuned[name]).abs().max().item())
moved = max(adapters[n + ".lora_B"].abs().max().item() for n in card["weights"])
untouched = [n for n in base if n not in card["weights"] and not torch.equal(base[n], tuned[n])]
print(f"weights {len(card['weights'])} worst {worst:.3g} moved {moved:.3g} untouched {untouched}")
assert worst < 1e-6 and moved > 0 and not untouched and card["scale"] == 2.0
print("merge OK")
)";
  const auto check = run("/usr/bin/python3 " + dir_.file("merge.py") + " " + run_dir() + " " +
                         dir_.file("unet.pt"));
  EXPECT_EQ(check.status, 0) << check.output;
  EXPECT_NE(check.output.find("merge OK"), std::string::npos) << check.output;
}

TEST_F(CliTest, CheckValidatesEverythingAndWritesNothing) {
  const std::string tune = "tune --check --config " + write_config(config_);
  auto r = idtune(tune);
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("config OK: '" + dir_.file("unet.pt") + "' with reward 'brightness'"),
            std::string::npos)
      << r.output;
  EXPECT_FALSE(std::filesystem::exists(run_dir()));
  // Refused as the run would be: a value rule, a model that is not there, a resume of nothing.
  r = idtune(tune + " --set sampler.steps=0");
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.output.find("/sampler/steps = 0 must be in"), std::string::npos) << r.output;
  r = idtune(tune + " --set model=" + dir_.file("absent.pt"));
  EXPECT_NE(r.output.find("absent.pt"), std::string::npos) << r.output;
  r = idtune(tune + " --resume");
  EXPECT_NE(r.output.find("checkpoint.pt' does not exist"), std::string::npos) << r.output;
  EXPECT_FALSE(std::filesystem::exists(run_dir()));
  // With --resume the checkpoint is read too; a run directory that holds a run is named.
  ASSERT_EQ(idtune("tune --config " + write_config(config_) + " --set iterations=2").status, 0);
  EXPECT_EQ(idtune(tune + " --resume --set iterations=4").status, 0);
  EXPECT_EQ(read_json_file(run_dir() + "/config.json")["iterations"], 2);  // not rewritten
  EXPECT_NE(idtune(tune).output.find("already holds a run"), std::string::npos);
  std::ofstream(run_dir() + "/checkpoint.pt") << "not a checkpoint";
  r = idtune(tune + " --resume --set iterations=4");
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.output.find("cannot read checkpoint"), std::string::npos) << r.output;
  // langevin: a shipped config checked, nothing created; a bad value refused.
  const std::string langevin = "langevin --check --config " IDTUNE_SOURCE_DIR
                               "/configs/langevin/hexagon.json --set output.run_dir=" +
                               dir_.file("langevin");
  r = idtune(langevin);
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("config OK: implicit on gaussian-mixture"), std::string::npos)
      << r.output;
  EXPECT_FALSE(std::filesystem::exists(dir_.file("langevin")));
  r = idtune(langevin + " --set sampler.particles=0");
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.output.find("/sampler/particles = 0"), std::string::npos) << r.output;
}

// ---- bad input ----

using Json = nlohmann::json;

TEST_F(CliTest, BadCommandsAndFlags) {
  EXPECT_EQ(idtune("").status, 2);
  auto r = idtune("tnue");
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.output.find("unknown command 'tnue'"), std::string::npos) << r.output;
  r = idtune("tune");
  EXPECT_NE(r.output.find("--config is required"), std::string::npos) << r.output;
  r = idtune("tune --config " + write_config(config_) + " --fast");
  EXPECT_NE(r.output.find("unknown argument '--fast'"), std::string::npos) << r.output;
  r = idtune("tune --config /nonexistent/run.json");
  EXPECT_NE(r.output.find("cannot open '/nonexistent/run.json'"), std::string::npos) << r.output;
  r = idtune("sample --model " + dir_.file("unet.pt") + " --n zero");
  EXPECT_NE(r.output.find("--n expects a number"), std::string::npos) << r.output;
  r = idtune("eval --model " + dir_.file("unet.pt") + " --data images.gz");
  EXPECT_NE(r.output.find("--data needs --classifier"), std::string::npos) << r.output;
  for (const auto& c : {"", "tnue", "tune", "tune --config /nonexistent/run.json"})
    EXPECT_NE(idtune(c).status, 0) << c;
}

TEST_F(CliTest, ConfigThatIsNotJson) {
  std::ofstream(dir_.file("broken.json")) << "{\"model\": ";
  const auto r = idtune("tune --config " + dir_.file("broken.json"));
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.output.find("is not valid JSON"), std::string::npos) << r.output;
}

TEST_F(CliTest, UnknownKeysAreNamedByTheirJsonPath) {
  expect_refused([](Json& c) { c["iteratons"] = 5; }, {"/iteratons", "unknown key"});
  expect_refused([](Json& c) { c["sampler"]["stepz"] = 5; }, {"/sampler/stepz", "unknown key"});
  expect_refused([](Json& c) { c["optimiser"]["learning_rate"] = 1; },
                 {"/optimiser/learning_rate"});
  expect_refused([](Json&) {}, {"/output/typo", "unknown key"}, "--set output.typo=1");
}

TEST_F(CliTest, OutOfRangeAndInvalidValues) {
  expect_refused([](Json& c) { c["sampler"]["kind"] = "euler"; },
                 {"/sampler/kind", "sde-euler, ode-euler, ddpm, ddim"});
  expect_refused([](Json& c) { c["sampler"]["steps"] = 0; },
                 {"/sampler/steps = 0", "must be in [1, 100000]"});
  expect_refused([](Json& c) { c["algorithm"]["queue_slots"] = 3; },
                 {"/algorithm/queue_slots = 3", "must divide"});
  expect_refused([](Json& c) { c["algorithm"]["method"] = "single-loop"; },
                 {"/algorithm/method", "implicit, nested, draft, draft-k"});
  expect_refused([](Json& c) { c["algorithm"]["gradient"] = "adjoint2"; },
                 {"/algorithm/gradient", "adjoint, double-queue"});
  expect_refused([](Json& c) { c["objective"]["lambda"] = -1; },
                 {"/objective/lambda = -1", "must be a finite number >= 0"});
  expect_refused(
      [](Json& c) {
        c["objective"] = {{"lambda", 0}, {"beta", 0}};
      },
      {"nothing to optimise"});
  expect_refused([](Json& c) { c["optimiser"]["lr"] = 0; },
                 {"/optimiser/lr = 0", "must be in (0, 10]"});
  expect_refused(
      [](Json& c) {
        c["optimiser"]["betas"] = {0.9, 1.5};
      },
      {"/optimiser/betas = 1.5", "[0, 1)"});
  expect_refused([](Json& c) { c["dtype"] = "float16"; }, {"/dtype", "float32, float64"});
  expect_refused([](Json& c) { c["batch"] = "many"; }, {"/batch", "expected an integer"});
  expect_refused([](Json& c) { c["output"]["grid_samples"] = 0; }, {"/output/grid_samples"});
  expect_refused([](Json& c) { c["iterations"] = -5; }, {"/iterations", "out of range"});
}

TEST_F(CliTest, ChoicesThatDoNotFitTogether) {
  expect_refused([](Json& c) { c["sampler"]["kind"] = "ode-euler"; },
                 {"deterministic", "sde-euler or ddpm"});
  expect_refused([](Json& c) { c["reward"] = "red"; }, {"red", "3 channels"});
  expect_refused([](Json& c) { c["reward"] = "sharpness"; }, {"sharpness", "brightness"});
  expect_refused([](Json& c) { c["optimiser"]["tune"] = {"^decoder"}; },
                 {"^decoder", "matches no parameter", "up_w"});
  expect_refused([](Json& c) { c["device"] = "cuda"; }, {"cuda"});
  expect_refused([](Json& c) { c["device"] = "tpu"; }, {"tpu", "cpu"});
}

TEST_F(CliTest, MissingOrBrokenModelFiles) {
  expect_refused([&](Json& c) { c["model"] = dir_.file("absent.pt"); },
                 {"absent.pt", "does not exist"});
  std::filesystem::copy_file(dir_.file("unet.pt"), dir_.file("nocard.pt"));
  expect_refused([&](Json& c) { c["model"] = dir_.file("nocard.pt"); }, {"nocard.json", "card"});
  std::ofstream(dir_.file("junk.pt")) << "junk";
  std::filesystem::copy_file(dir_.file("unet.json"), dir_.file("junk.json"));
  expect_refused([&](Json& c) { c["model"] = dir_.file("junk.pt"); }, {"junk.pt", "cannot load"});
}

TEST_F(CliTest, AnExplodingKlIsReportedWithTheKnobsToTurn) {
  auto config = config_;
  config["optimiser"]["lr"] = 1.0;  // far too large a step for this model
  config["iterations"] = 8;
  const auto hacked = idtune("tune --config " + write_config(config));
  ASSERT_EQ(hacked.status, 0) << hacked.output;
  EXPECT_NE(hacked.output.find("the path KL went from"), std::string::npos) << hacked.output;
  EXPECT_NE(hacked.output.find("Lower optimiser.lr"), std::string::npos) << hacked.output;
  std::filesystem::remove_all(run_dir());
  config["optimiser"]["lr"] = 3e-3;  // the suite's usual step: no warning
  const auto calm = idtune("tune --config " + write_config(config));
  ASSERT_EQ(calm.status, 0) << calm.output;
  EXPECT_EQ(calm.output.find("the path KL went from"), std::string::npos) << calm.output;
}

TEST_F(CliTest, SamplingFlagsAreNamedInErrors) {
  const auto r = idtune("sample --model " + dir_.file("unet.pt") + " --steps 0 --out " +
                        dir_.file("grid.png"));
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.output.find("--steps = 0 must be in [1, 100000]"), std::string::npos) << r.output;
}

TEST_F(CliTest, SetOverridesAndResumeMistakes) {
  expect_refused([](Json&) {}, {"expected key=value"}, "--set sampler.steps");
  expect_refused([](Json&) {}, {"--resume", "checkpoint.pt", "does not exist"}, "--resume");
  ASSERT_EQ(idtune("tune --config " + write_config(config_) + " --set iterations=2").status, 0);
  auto r = idtune("tune --config " + write_config(config_));
  EXPECT_NE(r.output.find("already holds a run"), std::string::npos) << r.output;
  r = idtune("tune --config " + write_config(config_) + " --resume --set batch=8");
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.output.find("differs from the one in"), std::string::npos) << r.output;
}

TEST_F(CliTest, AFailedResumeChangesNothingInTheRunDirectory) {
  ASSERT_EQ(idtune("tune --config " + write_config(config_) + " --set iterations=4").status, 0);
  const auto config = contents(run_dir() + "/config.json");
  const auto metrics = contents(run_dir() + "/metrics.jsonl");
  // A checkpoint that cannot be read: refused before config.json or metrics.jsonl change.
  std::ofstream(run_dir() + "/checkpoint.pt") << "not a checkpoint";
  const auto r = idtune("tune --config " + write_config(config_) + " --resume --set iterations=9");
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.output.find("cannot read checkpoint"), std::string::npos) << r.output;
  EXPECT_EQ(contents(run_dir() + "/config.json"), config);
  EXPECT_EQ(contents(run_dir() + "/metrics.jsonl"), metrics);
}

TEST_F(CliTest, TwoRunsInOneDirectoryCannotBothWrite) {
  auto config = config_;
  config["iterations"] = 100000;
  const std::string tune =
      std::string(IDTUNE_EXECUTABLE) + " tune --config " + write_config(config);
  // The first holds the directory's lock while it runs; the second is refused naming its pid.
  const auto r = run("bash -c '" + tune + " & pid=$!; while [ ! -s " + run_dir() +
                     "/metrics.jsonl ]; do sleep 0.05; done; " + tune +
                     " --set iterations=3; echo second=$?; kill -TERM $pid; wait $pid'");
  EXPECT_NE(r.output.find("second=1"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("is in use by another idtune process (pid"), std::string::npos)
      << r.output;
}

}  // namespace
}  // namespace idtune
