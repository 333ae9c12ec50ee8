// The guarantees of docs/reliability.md at their roots: one JSON reading layer (depth, size,
// duplicates, exact integers and array lengths, clipped echoes), one atomic-write helper
// (non-regular targets refused, failures leave the target and no temporary file), the run
// directory's lock, blow-up detection, linear-time `tune` patterns.

#include "idtune/core/atomic_file.h"
#include "idtune/core/fair_share.h"
#include "idtune/core/file_lock.h"
#include "idtune/core/interrupt.h"
#include "idtune/core/json_reader.h"
#include "idtune/core/precision.h"
#include "idtune/core/runtime.h"
#include "idtune/core/text.h"
#include "idtune/diffusion/sampling.h"
#include "idtune/diffusion/toy_models.h"
#include "idtune/langevin/config.h"
#include "idtune/run/langevin_run.h"
#include "idtune/run/tune_run.h"
#include "idtune/training/trainer.h"
#include "test_helpers.h"

#include <gtest/gtest.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <torch/torch.h>
#include <unistd.h>

#include <ATen/Parallel.h>

#include <array>
#include <chrono>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <thread>
#include <vector>

namespace idtune {
namespace {

namespace fs = std::filesystem;
using testing::expect_error;
using Json = nlohmann::json;

template <typename T>
T read_value(const std::string& text) {
  const auto json = parse_json(text, "c.json");
  JsonReader reader(json, "c.json: ");
  T value{};
  reader.read("v", value);
  return value;
}

std::vector<std::string> files_in(const std::string& dir) {
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(dir)) names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

// ---- JSON ----

TEST(Json, DeepNestingIsRefusedWhileParsingNotACrash) {
  const std::string deep = std::string(200000, '[') + std::string(200000, ']');
  expect_error([&] { parse_json(deep, "c.json"); }, {"c.json", "nested deeper than 32 levels"});
  const std::string mixed = "{\"a\": " + std::string(100, '[') + std::string(100, ']') + "}";
  expect_error([&] { parse_json(mixed, "card.json"); }, {"card.json: /a/0/0/", "nested deeper"});
  EXPECT_NO_THROW(parse_json("{\"a\": [[1, 2], {\"b\": [3]}]}", "c.json"));
}

TEST(Json, DuplicateKeysAreRefusedWithTheirPath) {
  expect_error([] { parse_json(R"({"a": 1, "b": {"c": 1, "c": 2}})", "c.json"); },
               {"c.json: /b/c: duplicate key"});
  expect_error([] { parse_json(R"({"seed": 1, "seed": 2})", "c.json"); }, {"duplicate key"});
}

TEST(Json, IntegersAreExact) {
  EXPECT_EQ(read_value<int64_t>(R"({"v": 1e3})"), 1000);
  EXPECT_EQ(read_value<int64_t>(R"({"v": -7})"), -7);
  EXPECT_EQ(read_value<uint64_t>(R"({"v": 18446744073709551615})"), UINT64_MAX);
  expect_error([] { read_value<int64_t>(R"({"v": 2.5})"); },
               {"c.json: /v", "expected an integer", "2.5"});
  expect_error([] { read_value<int64_t>(R"({"v": 1e300})"); }, {"/v", "expected an integer"});
  expect_error([] { read_value<int64_t>(R"({"v": "3"})"); },
               {"/v", "expected an integer", "string"});
  expect_error([] { read_value<uint64_t>(R"({"v": -1})"); }, {"/v", "a non-negative integer"});
  expect_error([] { read_value<int>(R"({"v": 4294967296})"); }, {"/v", "an integer in ["});
  expect_error([] { read_value<bool>(R"({"v": 1})"); }, {"/v", "expected true or false"});
  expect_error([] { read_value<double>(R"({"v": null})"); }, {"/v", "expected a number"});
}

TEST(Json, ArraysAreCheckedElementByElementAndFixedLengthsExactly) {
  using Pair = std::array<double, 2>;
  EXPECT_EQ(read_value<Pair>(R"({"v": [0.9, 0.99]})"), (Pair{0.9, 0.99}));
  expect_error([] { read_value<Pair>(R"({"v": [0.9, 0.99, 0.5]})"); },
               {"/v", "an array of 2 elements"});
  expect_error([] { read_value<Pair>(R"({"v": [0.9]})"); }, {"/v", "an array of 2 elements"});
  expect_error([] { read_value<std::vector<int64_t>>(R"({"v": [0, 1.5]})"); },
               {"/v/1", "expected an integer"});
}

TEST(Json, ANumberBeyondADoubleNamesWhereItIs) {
  expect_error([] { parse_json(R"({"a": {"b": 1e999}})", "c.json"); },
               {"c.json is not valid JSON (near /a/b)", "1e999"});
}

TEST(Json, LongValuesAreClippedInMessages) {
  const std::string huge = "{\"v\": \"" + std::string(1 << 20, 'x') + "\"}";
  const auto message = expect_error([&] { read_value<int64_t>(huge); }, {"/v", "characters)"});
  EXPECT_LT(message.size(), 300u);
}

TEST(Json, ControlCharactersInKeysAndValuesAreEscapedInMessages) {
  // libFuzzer's two findings: a newline in a key, and in a name value, split the message.
  const auto json = parse_json(R"({"kind": "gaussi\n-mixture"})", "c.json");
  expect_error([&] { JsonReader(parse_json(R"({"out\nput": 1})", "c.json"), "c.json: ").finish(); },
               {"c.json: /\"out\\nput\": unknown key"});
  expect_error(
      [&] {
        JsonReader reader(json, "c.json: ");
        Precision p{};
        reader.read_enum("kind", p, precision_names());
      },
      {"/kind: \"gaussi\\n-mixture\" is not one of"});
  EXPECT_EQ(clipped(std::string("a\tb\x01\x7f")), "a\\tb\\u0001\\u007f");
}

TEST(Json, OnlyRegularFilesOfBoundedSizeAreRead) {
  testing::TempDir dir;
  fs::create_directory(dir.file("d"));
  expect_error([&] { read_json_file(dir.file("d")); }, {"not a regular file"});
  expect_error([&] { read_json_file(dir.file("absent.json")); }, {"absent.json", "no such file"});
  std::ofstream(dir.file("big.json")) << "[" << std::string(kMaxJsonFileBytes, ' ') << "]";
  expect_error([&] { read_json_file(dir.file("big.json")); }, {"big.json", "larger than"});
  std::ofstream(dir.file("binary.json")) << std::string("{\"a\": \"\xff\xfe\"}");
  expect_error([&] { read_json_file(dir.file("binary.json")); }, {"binary.json is not valid JSON"});
}

TEST(Json, AUsersInvalidUtf8IsWrittenReplacedNotThrown) {
  const Json value = {{"run_dir", std::string("r\xff")}};
  EXPECT_NE(dump_json(value).find("r\xEF\xBF\xBD"), std::string::npos);  // U+FFFD
}

// ---- atomic files ----

TEST(AtomicFile, ADirectoryOrFifoTargetIsRefusedAndLeftAsItWas) {
  testing::TempDir dir;
  ASSERT_EQ(::mkfifo(dir.file("fifo").c_str(), 0600), 0);
  expect_error([&] { write_bytes_atomically(dir.file("fifo"), "x"); },
               {"fifo", "not a regular file"});
  EXPECT_TRUE(fs::is_fifo(dir.file("fifo")));
  fs::create_directory(dir.file("d"));
  expect_error([&] { write_json_file(dir.file("d"), Json::object()); }, {"not a regular file"});
  EXPECT_TRUE(fs::is_directory(dir.file("d")));
  expect_error([&] { write_bytes_atomically(dir.file("no/such/dir/f"), "x"); }, {"does not exist"});
  EXPECT_EQ(files_in(dir.file("")), (std::vector<std::string>{"d", "fifo"}));
}

TEST(AtomicFile, AFailingWriterKeepsTheOldContentAndLeavesNoTemporaryFile) {
  testing::TempDir dir;
  write_bytes_atomically(dir.file("f"), "old");
  expect_error(
      [&] {
        write_file_atomically(dir.file("f"), [](const std::string& temp) {
          std::ofstream(temp) << "half";
          throw std::runtime_error("writer failed");
        });
      },
      {"cannot write", "writer failed", "nothing was replaced"});
  std::ifstream in(dir.file("f"));
  EXPECT_EQ(std::string(std::istreambuf_iterator<char>(in), {}), "old");
  EXPECT_EQ(files_in(dir.file("")), (std::vector<std::string>{"f"}));
}

TEST(AtomicFile, AFullDiskIsAnErrorAndLeavesNoTemporaryFile) {
  // RLIMIT_FSIZE makes the kernel refuse writes past 4 KiB (EFBIG), as a full disk would
  // (ENOSPC); SIGXFSZ ignored, as idtune's CLI does, so that the write fails instead of the
  // process dying.
  testing::TempDir dir;
  write_bytes_atomically(dir.file("f"), "old");
  const auto previous_handler = std::signal(SIGXFSZ, SIG_IGN);
  rlimit previous{};
  ASSERT_EQ(::getrlimit(RLIMIT_FSIZE, &previous), 0);
  rlimit small = previous;
  small.rlim_cur = 4096;
  ASSERT_EQ(::setrlimit(RLIMIT_FSIZE, &small), 0);
  std::string message;
  try {
    write_bytes_atomically(dir.file("f"), std::string(1 << 20, 'x'));
  } catch (const Error& e) {
    message = e.what();
  }
  ::setrlimit(RLIMIT_FSIZE, &previous);
  std::signal(SIGXFSZ, previous_handler);
  EXPECT_NE(message.find("File too large"), std::string::npos) << message;
  std::ifstream in(dir.file("f"));
  EXPECT_EQ(std::string(std::istreambuf_iterator<char>(in), {}), "old");
  EXPECT_EQ(files_in(dir.file("")), (std::vector<std::string>{"f"}));
}

TEST(AtomicFile, TheTemporaryFoldersOfKilledWritersAreRemovedOnlyThem) {
  testing::TempDir dir;
  const std::string own = ".f." + std::to_string(::getpid()) + ".tmp";
  for (const auto& name : {std::string(".f.999999999.tmp"), own, std::string(".g.tmp")})
    fs::create_directory(dir.file(name));
  std::ofstream(dir.file(".f.999999999.tmp/f")) << "half";
  EXPECT_EQ(remove_stale_temporaries(dir.file("")), 1);  // pid 999999999 exceeds pid_max
  EXPECT_EQ(files_in(dir.file("")), (std::vector<std::string>{own, ".g.tmp"}));
}

// ---- the run directory's lock ----

TEST(FileLock, ASecondHolderIsRefusedNamingThePidUntilTheFirstLetsGo) {
  testing::TempDir dir;
  {
    const FileLock first(dir.file(".lock"), "run directory 'r'");
    expect_error([&] { FileLock second(dir.file(".lock"), "run directory 'r'"); },
                 {"run directory 'r' is in use by another idtune process",
                  "(pid " + std::to_string(::getpid()) + ")"});
  }
  EXPECT_NO_THROW(FileLock(dir.file(".lock"), "run directory 'r'"));
}

// ---- signals ----

TEST(Signals, AnInterruptBeforeTheFirstIterationWritesNoCheckpoint) {
  // A checkpoint written then would lack the queue (it fills at the first iteration), and the
  // resumed run would no longer be the uninterrupted one.
  testing::TempDir dir;
  TinyUNetOptions o;
  o.size = 4;
  o.width = 2;
  o.model.dtype = c10::kFloat;
  make_tiny_unet(o).save(dir.file("unet.pt"));
  const Json config = {{"model", dir.file("unet.pt")},
                       {"sampler", {{"kind", "sde-euler"}, {"steps", 4}}},
                       {"algorithm", {{"queue_slots", 2}}},
                       {"batch", 2},
                       {"iterations", 3},
                       {"output", {{"run_dir", dir.file("run")}, {"grids", false}}}};
  install_interrupt_handlers();
  std::raise(SIGTERM);
  ASSERT_TRUE(interrupt_requested());
  {
    TuneRun run(parse_tune_config(config, "c.json"), /*resume=*/false);
    EXPECT_FALSE(run.run());
  }
  clear_interrupt_request();
  EXPECT_FALSE(fs::exists(dir.file("run/checkpoint.pt")));
  EXPECT_FALSE(fs::exists(dir.file("run/tuned.pt")));
  // Without the signal, the same directory takes the run (nothing was left behind).
  TuneRun again(parse_tune_config(config, "c.json"), /*resume=*/false);
  EXPECT_TRUE(again.run());
  EXPECT_TRUE(fs::exists(dir.file("run/checkpoint.pt")));
}

// ---- blow-ups and patterns ----

TEST(BlowUp, ASamplerThatDivergesIsStoppedNamingTheModelAndTheStep) {
  // A model whose weights went NaN (as a diverged tune leaves them): the samples follow.
  TinyUNetOptions o;
  o.size = 4;
  o.width = 2;
  auto model = make_tiny_unet(o);
  {
    torch::NoGradGuard no_grad;
    for (auto p : model.trainable_parameters()) p.fill_(std::nan(""));
  }
  const Sampler sampler({SamplerKind::SdeEuler, 4}, model);
  const Noise noise(0);
  expect_error([&] { sample_path(sampler, model, initial_state(model, 2, noise, 0), noise, 0); },
               {model.name(), "NaN or Inf at sampling step", "of 4"});
}

TEST(BlowUp, DivergingLangevinParticlesStopTheRunNamingTheStepAndGamma) {
  // The hexagon's potential with a step size 100× the shipped one: the chain explodes within
  // a few steps; the run must say so rather than end "successfully" with θ unchanged.
  testing::TempDir dir;
  auto json = read_json_file(IDTUNE_SOURCE_DIR "/configs/langevin/hexagon.json");
  json["sampler"]["gamma"] = 20.0;
  json["steps"] = 200;
  json["output"]["run_dir"] = dir.file("run");
  LangevinRun run(parse_langevin_config(json, "hexagon.json"));
  expect_error([&] { run.run(); },
               {"langevin: the particles diverged at step", "sampler.gamma = 20"});
}

TEST(Patterns, ABacktrackingPatternRunsInLinearTime) {
  TinyUNetOptions o;
  o.size = 4;
  o.width = 2;
  const auto model = make_tiny_unet(o);
  const auto start = std::chrono::steady_clock::now();
  TrainerOptions options;
  options.sampler.steps = 4;
  options.queue_slots = 2;
  // Catastrophic for a backtracking engine on names of ~30 characters; RE2 is linear. No name
  // matches, which is itself refused: the point is that the refusal comes at once.
  const auto build = [&] {
    Trainer(options, model, [](const at::Tensor& x, const at::Tensor&) {
      return x.mean({1, 2, 3});
    });
  };
  options.optimiser.tune = {"^(a|a?)+(b|b?)+(c|c?)+(d|d?)+(e|e?)+(f|f?)+(g|g?)+$"};
  expect_error(build, {"optimiser.tune"});
  EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(), 5.0);
  options.optimiser.tune = {"(a"};
  expect_error(build, {"optimiser.tune: '(a' is not a valid regular expression"});
}

TEST(FairShare, ThreadsFollowTheCoresOtherProcessesLeaveFree) {
  EXPECT_EQ(FairShare::threads_for(2.0, 2), 2);   // alone
  EXPECT_EQ(FairShare::threads_for(1.8, 2), 2);   // a little background noise
  EXPECT_EQ(FairShare::threads_for(1.7, 2), 1);   // a core shared: its thread would stall
  EXPECT_EQ(FairShare::threads_for(1.0, 2), 1);   // beside one busy process
  EXPECT_EQ(FairShare::threads_for(-0.5, 2), 1);  // at least one
  EXPECT_EQ(FairShare::threads_for(15.9, 8), 8);  // at most the maximum
}

TEST(FairShare, BesideAProcessOnEveryCoreItDropsToOneThreadAndWhenDisabledItDoesNot) {
  const int cores = static_cast<int>(std::thread::hardware_concurrency());
  if (cores < 2 || cores > 16) GTEST_SKIP() << cores << " cores: the test busies every core";
  const int before = at::get_num_threads();
  at::set_num_threads(2);
  FairShare fair(/*enabled=*/true, 2), fixed(/*enabled=*/false, 2);
  std::vector<pid_t> hogs;
  for (int i = 0; i < cores; ++i) {
    const pid_t pid = fork();
    if (pid == 0) {
      for (volatile uint64_t n = 0;; n = n + 1) {
      }
    }
    hogs.push_back(pid);
  }
  int threads = 2;
  for (int i = 0; i < 3 && threads > 1; ++i) {  // a measurement every 0.5 s at most
    std::this_thread::sleep_for(std::chrono::milliseconds(600));
    EXPECT_EQ(fixed.rebalance(), 2);
    threads = fair.rebalance();
  }
  for (const pid_t pid : hogs) {
    kill(pid, SIGKILL);
    waitpid(pid, nullptr, 0);
  }
  at::set_num_threads(before);
  EXPECT_EQ(threads, 1);
}

TEST(Runtime, AThreadCountInTheEnvironmentThatIsNotANumberIsNamed) {
  const char* old = std::getenv("IDTUNE_NUM_THREADS");
  const std::string saved = old ? old : "";
  for (const char* bad : {"two", "0", "-1", "2x", ""}) {
    setenv("IDTUNE_NUM_THREADS", bad, 1);
    expect_error([] { use_all_cores(); },
                 {"IDTUNE_NUM_THREADS='" + std::string(bad) + "'", "between 1 and 4096"});
  }
  if (old)
    setenv("IDTUNE_NUM_THREADS", saved.c_str(), 1);
  else
    unsetenv("IDTUNE_NUM_THREADS");
}

}  // namespace
}  // namespace idtune
