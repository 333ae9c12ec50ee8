// Data-parallel runs on loopback, two real processes (this test binary run again as each rank,
// by torchrun's variables): the process group (mean all-reduce, θ checksum, a rank that dies
// or hangs making the other fail with a message instead of hanging); the trainer on W = 2
// following the single process's run (θ, the samples its reward saw, resume, re-sharding);
// and `idtune tune --nproc 2` (a killed worker, Ctrl-C and --resume).

#include "cli_fixture.h"
#include "idtune/core/error.h"
#include "idtune/distributed/process_group.h"
#include "idtune/training/trainer.h"
#include "test_helpers.h"

#include <gtest/gtest.h>
#include <torch/torch.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <sstream>
#include <string>
#include <thread>

namespace idtune {
namespace {

// The same float64 arithmetic on another batch size and reduction order: BLAS may block (and
// so round) a batch of 2 differently from one of 4, and the mean of two means differs from
// the mean of four in the last bit. A wrong share of noise or an unsynchronised gradient
// differs by O(1).
constexpr double kReductionOrder = 1e-12;
constexpr int64_t kIterations = 8, kCheckpointAt = 4;

/// Runs this binary as ranks 0 and 1 of `role`, concurrently, with `env` ("NAME=value ...")
/// added; their combined output.
testing::Result two_ranks(const std::string& role, const std::string& env = "") {
  const int port = 20000 + static_cast<int>(getpid() % 20000);
  const std::string self = std::filesystem::read_symlink("/proc/self/exe").string();
  std::string command;
  for (int rank = 0; rank < 2; ++rank)
    command += "RANK=" + std::to_string(rank) +
               " WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT=" + std::to_string(port) +
               " IDTUNE_DISTRIBUTED_ROLE=" + role + " " + env + " " + self +
               " --gtest_filter=DistributedWorker.Rank 2>&1 & ";
  return testing::run(command + "wait");
}

// ---- the trainer on two ranks ----

/// A variant of the trainer: the queue with the full adjoint (conditional: the conditions are
/// sharded too), the double queue (partial gradients per rank), DRaFT (no queue).
struct Variant {
  std::string name;
  Method method;
  GradientEstimator gradient;
  int64_t classes;  // > 0: a class-conditional model
};

const std::vector<Variant>& variants() {
  static const std::vector<Variant> all = {
      {"adjoint", Method::Implicit, GradientEstimator::Adjoint, 3},
      {"double-queue", Method::Implicit, GradientEstimator::DoubleQueue, 0},
      {"draft", Method::Draft, GradientEstimator::Adjoint, 0}};
  return all;
}

std::vector<std::string> variant_names() {
  std::vector<std::string> names;
  for (const auto& v : variants()) names.push_back(v.name);
  return names;
}

const Variant& variant(const std::string& name) {
  for (const auto& v : variants())
    if (v.name == name) return v;
  throw Error("no variant " + name);
}

/// A trainer of `v` on a float64 tiny U-Net whose reward records the samples it is given.
std::unique_ptr<Trainer> make_trainer(const Variant& v, ProcessGroup* group,
                                      std::vector<at::Tensor>* rewarded, uint64_t seed = 11) {
  TinyUNetOptions unet;
  unet.size = 4;
  unet.width = 4;
  unet.classes = v.classes;
  TrainerOptions o;
  o.sampler = {SamplerKind::SdeEuler, 8, 1e-2};
  o.method = v.method;
  o.gradient = v.gradient;
  o.queue_slots = 4;
  o.batch = 4;
  o.objective = {1.0, 0.1};
  o.optimiser.lr = 1e-2;
  o.optimiser.clip_grad_norm = 5.0;
  o.seed = seed;
  o.theta_check_every = 2;
  if (v.classes > 0) o.conditions = ConditionSet::classes({0, 1, 2});
  RewardFn reward = [rewarded](const at::Tensor& x, const at::Tensor&) {
    if (rewarded) rewarded->push_back(x.detach().clone());
    return x.flatten(1).mean(1);
  };
  return std::make_unique<Trainer>(o, make_tiny_unet(unet), reward, group);
}

/// Y_0 … Y_j of a slot in flight (the rest of its buffer is not written yet).
at::Tensor recorded(const QueueSlot& slot) {
  return slot.path.storage.narrow(0, 0, slot.steps_done() + 1).clone();
}

/// θ and every in-flight slot's path (this rank's share).
std::vector<at::Tensor> theta_and_queue(const Trainer& trainer) {
  auto out = trainer.model().trainable_parameters();
  for (const auto& slot : trainer.queue().slots()) out.push_back(recorded(slot));
  return out;
}

/// Where a rank's worker leaves `what` for the test that started it: <dir>/<what>_rank<r>.pt.
std::string out_file(const std::string& what, int rank,
                     const std::string& dir = std::getenv("IDTUNE_TEST_DIR")) {
  return dir + "/" + what + "_rank" + std::to_string(rank) + ".pt";
}

/// Rank r of a variant: kIterations iterations with a checkpoint at kCheckpointAt, then the
/// same from that checkpoint in a fresh trainer; writes θ, the queue and the samples rewarded.
void run_variant_rank(ProcessGroup& group, const std::string& name) {
  const auto& v = variant(name);
  const int r = group.rank();
  std::vector<at::Tensor> rewarded;
  auto trainer = make_trainer(v, &group, &rewarded);
  for (int64_t i = 0; i < kIterations; ++i) {
    trainer->step();
    if (trainer->iteration() == kCheckpointAt)
      trainer->save_checkpoint(out_file("checkpoint", 0));  // rank 0 writes it
  }
  torch::save(theta_and_queue(*trainer), out_file("theta_and_queue", r));
  torch::save(rewarded, out_file("rewarded", r));
  // Resumed on the same world size: bit-identical to the uninterrupted run.
  auto resumed = make_trainer(v, &group, nullptr);
  resumed->load_checkpoint(out_file("checkpoint", 0));
  while (resumed->iteration() < kIterations) resumed->step();
  const auto straight = theta_and_queue(*trainer), again = theta_and_queue(*resumed);
  ASSERT_EQ(straight.size(), again.size());
  for (size_t i = 0; i < straight.size(); ++i)
    EXPECT_TRUE(torch::equal(straight[i], again[i])) << name << ": tensor " << i;
  std::printf("rank %d: variant %s done\n", r, name.c_str());
}

TEST(DistributedWorker, Rank) {
  const char* role = std::getenv("IDTUNE_DISTRIBUTED_ROLE");
  if (!role) GTEST_SKIP() << "run by the Distributed tests as one of their ranks";
  auto options = distributed_from_environment();
  ASSERT_TRUE(options.has_value());
  const std::string what = role;
  options->timeout = std::chrono::seconds(what == "hang" ? 2 : 10);
  ProcessGroup group(*options);
  const int r = group.rank();
  if (what.rfind("variant:", 0) == 0) return run_variant_rank(group, what.substr(8));
  if (what == "other-seed") {  // rank 1 was given another seed: both refuse to start
    testing::expect_error([&] { make_trainer(variant("adjoint"), &group, nullptr, 11 + r); },
                          {"the run's configurations", "differ between the ranks"});
    std::printf("rank %d refused\n", r);
    return;
  }
  if (what == "die" || what == "hang") {
    if (r == 1 && what == "die") std::_Exit(3);  // gone without a word, as a killed rank
    if (r == 1) {                                // alive, but never at the collective
      std::this_thread::sleep_for(std::chrono::seconds(4));
      std::_Exit(0);
    }
    std::vector<at::Tensor> t{torch::ones({4}, torch::kFloat64)};
    const auto start = std::chrono::steady_clock::now();
    const auto message = testing::expect_error([&] { group.all_reduce_mean(t); },
                                               {"distributed rank 0 of 2: all-reduce", "failed"});
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    std::printf("rank 0 stopped after %.1f s: %s\n", seconds, message.c_str());
    EXPECT_LT(seconds, 60.0);
    return;
  }
  // Rank r holds r + 1 and 2r: the means are 1.5 and 1, exactly, in float64.
  std::vector<at::Tensor> t{torch::full({3}, r + 1.0, torch::kFloat64),
                            torch::full({2, 2}, 2.0 * r, torch::kFloat64)};
  group.all_reduce_mean(t);
  EXPECT_TRUE(torch::equal(t[0], torch::full({3}, 1.5, torch::kFloat64)));
  EXPECT_TRUE(torch::equal(t[1], torch::full({2, 2}, 1.0, torch::kFloat64)));
  group.check_identical(t, "θ");  // the same on both ranks now
  std::vector<at::Tensor> diverged{torch::full({3}, static_cast<double>(r), torch::kFloat64)};
  testing::expect_error([&] { group.check_identical(diverged, "θ"); },
                        {"θ differ between the ranks", "diverged"});
  std::printf("rank %d done\n", r);
}

TEST(Distributed, TwoRanksAverageExactlyAndCatchDivergedTheta) {
  const auto result = two_ranks("reduce");
  EXPECT_EQ(result.status, 0) << result.output;
  EXPECT_NE(result.output.find("rank 0 done"), std::string::npos) << result.output;
  EXPECT_NE(result.output.find("rank 1 done"), std::string::npos) << result.output;
  EXPECT_EQ(result.output.find("FAILED"), std::string::npos) << result.output;
}

TEST(Distributed, RanksWithDifferentConfigurationsRefuseToStart) {
  const auto result = two_ranks("other-seed");
  EXPECT_NE(result.output.find("rank 0 refused"), std::string::npos) << result.output;
  EXPECT_NE(result.output.find("rank 1 refused"), std::string::npos) << result.output;
  EXPECT_EQ(result.output.find("FAILED"), std::string::npos) << result.output;
}

TEST(Distributed, ARankThatDiesOrHangsMakesTheOtherStopWithAMessageNotHang) {
  for (const std::string role : {"die", "hang"}) {
    const auto result = two_ranks(role);
    EXPECT_NE(result.output.find("rank 0 stopped after"), std::string::npos) << result.output;
    EXPECT_EQ(result.output.find("FAILED"), std::string::npos) << result.output;
  }
}

class TwoRanks : public ::testing::TestWithParam<std::string> {};

TEST_P(TwoRanks, FollowTheSingleProcessRunAndResumeBitIdentically) {
  const auto& v = variant(GetParam());
  testing::TempDir dir;
  const auto file = [&](const std::string& what, int rank) {
    return out_file(what, rank, dir.file(""));
  };
  const auto result = two_ranks("variant:" + v.name, "IDTUNE_TEST_DIR=" + dir.file(""));
  ASSERT_EQ(result.status, 0) << result.output;
  for (int r = 0; r < 2; ++r)
    ASSERT_NE(result.output.find("rank " + std::to_string(r) + ": variant " + v.name + " done"),
              std::string::npos)
        << result.output;
  EXPECT_EQ(result.output.find("FAILED"), std::string::npos) << result.output;

  // The single process, same global batch and seed.
  std::vector<at::Tensor> rewarded;
  auto single = make_trainer(v, nullptr, &rewarded);
  for (int64_t i = 0; i < kIterations; ++i) single->step();
  std::vector<at::Tensor> ranks[2], ranks_rewarded[2];
  for (int r = 0; r < 2; ++r) {
    torch::load(ranks[r], file("theta_and_queue", r));
    torch::load(ranks_rewarded[r], file("rewarded", r));
  }
  // θ: the same on both ranks, and the single process's to the reduction order.
  const auto theta = single->model().trainable_parameters();
  const std::vector<at::Tensor> theta0(ranks[0].begin(), ranks[0].begin() + theta.size());
  const std::vector<at::Tensor> theta1(ranks[1].begin(), ranks[1].begin() + theta.size());
  for (size_t i = 0; i < theta.size(); ++i) EXPECT_TRUE(torch::equal(theta0[i], theta1[i]));
  EXPECT_LT(testing::relative_error(theta0, theta), kReductionOrder);
  EXPECT_GT(testing::relative_error(
                make_trainer(v, nullptr, nullptr)->model().trainable_parameters(), theta),
            1e-4)
      << "θ barely moved: the comparison says nothing";
  // The paths: every slot in flight and every batch the reward saw is the union of the ranks'
  // halves (rank 0 the first B/2 samples).
  const auto union_of = [&](const std::vector<at::Tensor>* halves, size_t i, int64_t dim) {
    return torch::cat({halves[0][i], halves[1][i]}, dim);
  };
  std::vector<at::Tensor> paths, paths_union;
  for (const auto& slot : single->queue().slots()) paths.push_back(recorded(slot));
  for (size_t i = theta.size(); i < ranks[0].size(); ++i)
    paths_union.push_back(union_of(ranks, i, 1));
  ASSERT_EQ(paths.size(), paths_union.size());
  EXPECT_LT(testing::relative_error(paths_union, paths), kReductionOrder);
  ASSERT_EQ(rewarded.size(), ranks_rewarded[0].size());
  ASSERT_GT(rewarded.size(), 0u);
  std::vector<at::Tensor> rewarded_union;
  for (size_t i = 0; i < rewarded.size(); ++i)
    rewarded_union.push_back(union_of(ranks_rewarded, i, 0));
  EXPECT_LT(testing::relative_error(rewarded_union, rewarded), kReductionOrder);

  // The 2-rank checkpoint in one process: re-sharded, the same run to the reduction order;
  // refused while the double queue's per-rank partial gradients are in flight.
  auto resumed = make_trainer(v, nullptr, nullptr);
  if (v.gradient == GradientEstimator::DoubleQueue) {
    testing::expect_error([&] { resumed->load_checkpoint(file("checkpoint", 0)); },
                          {"written by 2 ranks", "resume it with 2 ranks (this run has 1)"});
    return;
  }
  resumed->load_checkpoint(file("checkpoint", 0));
  while (resumed->iteration() < kIterations) resumed->step();
  EXPECT_LT(testing::relative_error(resumed->model().trainable_parameters(), theta),
            kReductionOrder);
}

INSTANTIATE_TEST_SUITE_P(Variants, TwoRanks, ::testing::ValuesIn(variant_names()),
                         [](const auto& info) {
                           std::string name = info.param;
                           std::replace(name.begin(), name.end(), '-', '_');
                           return name;
                         });

// ---- idtune tune --nproc 2 ----

/// The pids of `launcher`'s children by their RANK (from /proc).
std::map<int, pid_t> workers_of(pid_t launcher) {
  std::map<int, pid_t> workers;
  for (const auto& entry : std::filesystem::directory_iterator("/proc")) {
    const std::string name = entry.path().filename();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    std::istringstream stat(testing::contents(entry.path() / "stat"));
    std::string pid, comm, state;
    pid_t parent = 0;
    stat >> pid >> comm >> state >> parent;
    if (parent != launcher) continue;
    std::istringstream environ(testing::contents(entry.path() / "environ"));
    for (std::string variable; std::getline(environ, variable, '\0');)
      if (variable.rfind("RANK=", 0) == 0) workers[std::stoi(variable.substr(5))] = std::stoi(name);
  }
  return workers;
}

class LocalWorkers : public testing::CliTest {
 protected:
  /// Starts `tune --nproc 2` of `config` (far more iterations than it is given) and waits
  /// until its metrics have `lines` lines.
  std::unique_ptr<testing::Child> start(nlohmann::json config, int64_t lines) {
    config["iterations"] = 100000;
    auto launcher = std::make_unique<testing::Child>(
        testing::tune_args(write_config(config), {"--nproc", "2"}), log());
    const auto start = std::chrono::steady_clock::now();
    while (metrics_lines() < lines && launcher->running() &&
           std::chrono::steady_clock::now() - start < std::chrono::seconds(60))
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    return launcher;
  }
  int64_t metrics_lines() const {
    const auto text = testing::contents(run_dir() + "/metrics.jsonl");
    return std::count(text.begin(), text.end(), '\n');
  }
  std::string log() const { return dir_.file("log.txt"); }
};

TEST_F(LocalWorkers, ABatchTheWorkersCannotShareIsRefusedBeforeAnyStarts) {
  expect_refused([](auto&) {}, {"run.json: /batch: 4 is not a multiple of --nproc 3"}, "--nproc 3");
  expect_refused(
      [](auto& c) {
        c["distributed"] = {{"timeout_s", 0}};
      },
      {"/distributed/timeout_s", "[1, 86400]"}, "--nproc 2");
}

TEST_F(LocalWorkers, AKilledWorkerStopsTheRunWithAMessageWithinTheTimeout) {
  auto launcher = start(config_, 2);
  const auto workers = workers_of(launcher->pid());
  ASSERT_EQ(workers.size(), 2u) << testing::contents(log());
  const auto start = std::chrono::steady_clock::now();
  ::kill(workers.at(1), SIGKILL);
  const int status = launcher->wait();
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const auto log_text = testing::contents(log());
  EXPECT_NE(status, 0) << log_text;
  EXPECT_LT(seconds, 60.0) << log_text;
  EXPECT_NE(log_text.find("worker rank 1 (pid " + std::to_string(workers.at(1)) +
                          ") was killed by signal 9"),
            std::string::npos)
      << log_text;
  EXPECT_NE(log_text.find("[idtune rank 0] [error] distributed rank 0 of 2"), std::string::npos)
      << log_text;
  EXPECT_NE(log_text.find("another rank died"), std::string::npos) << log_text;
  EXPECT_TRUE(workers_of(launcher->pid()).empty());
}

TEST_F(LocalWorkers, CtrlCLeavesACheckpointThatResumesBitIdentically) {
  constexpr int64_t kTotal = 40;
  auto config = config_;
  config["iterations"] = kTotal;
  const auto file = write_config(config);
  auto r = testing::idtune("tune --config " + file + " --nproc 2");
  ASSERT_EQ(r.status, 0) << r.output;
  std::filesystem::rename(run_dir(), dir_.file("uninterrupted"));

  auto launcher = start(config, 3);
  ::kill(launcher->pid(), SIGINT);  // as a terminal's Ctrl-C reaches the launcher
  EXPECT_EQ(launcher->wait(), 0) << testing::contents(log());
  const auto log_text = testing::contents(log());
  EXPECT_NE(log_text.find("interrupted: stopping the 2 workers"), std::string::npos) << log_text;
  EXPECT_NE(log_text.find("checkpoint written; continue with --resume"), std::string::npos)
      << log_text;
  ASSERT_TRUE(std::filesystem::exists(run_dir() + "/checkpoint.pt")) << log_text;
  ASSERT_LT(metrics_lines(), kTotal) << "interrupted too late to compare";
  r = testing::idtune("tune --config " + file +
                      " --resume --nproc 2 --set iterations=" + std::to_string(kTotal));
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_EQ(testing::metrics_without_timings(run_dir() + "/metrics.jsonl"),
            testing::metrics_without_timings(dir_.file("uninterrupted/metrics.jsonl")));
  EXPECT_EQ(testing::contents(run_dir() + "/tuned.pt"),
            testing::contents(dir_.file("uninterrupted/tuned.pt")));
}

TEST(Distributed, TheEnvironmentIsReadAsTorchrunSetsItAndBadValuesAreNamed) {
  // Without WORLD_SIZE: a single process. With it: RANK must be there and in range.
  const auto with = [](const char* world, const char* rank, const char* port) {
    for (const auto& [name, value] :
         {std::pair{"WORLD_SIZE", world}, std::pair{"RANK", rank}, std::pair{"MASTER_PORT", port}})
      value ? setenv(name, value, 1) : unsetenv(name);
  };
  with(nullptr, nullptr, nullptr);
  EXPECT_FALSE(distributed_from_environment().has_value());
  with("2", "1", "29999");
  const auto o = distributed_from_environment();
  ASSERT_TRUE(o.has_value());
  EXPECT_EQ(o->rank, 1);
  EXPECT_EQ(o->world_size, 2);
  EXPECT_EQ(o->master_port, 29999);
  EXPECT_EQ(o->local_rank, 1);  // LOCAL_RANK unset: the rank
  setenv("LOCAL_RANK", "0", 1);
  EXPECT_EQ(distributed_from_environment()->local_rank, 0);
  setenv("LOCAL_RANK", "7", 1);
  testing::expect_error([] { distributed_from_environment(); }, {"LOCAL_RANK='7'", "[0, 1]"});
  unsetenv("LOCAL_RANK");
  with("2", nullptr, nullptr);
  testing::expect_error([] { distributed_from_environment(); }, {"RANK is not set"});
  with("2", "2", nullptr);
  testing::expect_error([] { distributed_from_environment(); }, {"RANK='2'", "[0, 1]"});
  with("two", "0", nullptr);
  testing::expect_error([] { distributed_from_environment(); }, {"WORLD_SIZE='two'"});
  with(nullptr, nullptr, nullptr);
}

}  // namespace
}  // namespace idtune
