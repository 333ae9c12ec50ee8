// The process group on loopback, two real processes (this test binary run again as each rank,
// by torchrun's variables): the mean all-reduce, the θ checksum, and a rank that dies making
// the other fail with a message within the timeout instead of hanging.

#include "idtune/core/error.h"
#include "idtune/distributed/process_group.h"
#include "test_helpers.h"

#include <gtest/gtest.h>
#include <torch/torch.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>

namespace idtune {
namespace {

/// Runs this binary as ranks 0 and 1 of `role`, concurrently; their combined output.
testing::Result two_ranks(const std::string& role) {
  const int port = 20000 + static_cast<int>(getpid() % 20000);
  const std::string self = std::filesystem::read_symlink("/proc/self/exe").string();
  std::string command;
  for (int rank = 0; rank < 2; ++rank)
    command += "RANK=" + std::to_string(rank) +
               " WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT=" + std::to_string(port) +
               " IDTUNE_DISTRIBUTED_ROLE=" + role + " " + self +
               " --gtest_filter=DistributedWorker.Rank 2>&1 & ";
  return testing::run(command + "wait");
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

TEST(Distributed, ARankThatDiesOrHangsMakesTheOtherStopWithAMessageNotHang) {
  for (const std::string role : {"die", "hang"}) {
    const auto result = two_ranks(role);
    EXPECT_NE(result.output.find("rank 0 stopped after"), std::string::npos) << result.output;
    EXPECT_EQ(result.output.find("FAILED"), std::string::npos) << result.output;
  }
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
