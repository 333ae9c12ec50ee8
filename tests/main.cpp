#include "idtune/core/runtime.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

namespace {

/// Every test starts from the same seed of torch's global generator, whatever ran before it
/// (tests that draw must not depend on the order or filter they run in).
class SeedEveryTest : public ::testing::EmptyTestEventListener {
  void OnTestStart(const ::testing::TestInfo&) override { torch::manual_seed(0); }
};

}  // namespace

int main(int argc, char** argv) {
  idtune::configure_runtime();
  ::testing::InitGoogleTest(&argc, argv);
  ::testing::UnitTest::GetInstance()->listeners().Append(new SeedEveryTest);
  return RUN_ALL_TESTS();
}
