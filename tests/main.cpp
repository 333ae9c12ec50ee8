#include "idtune/core/runtime.h"

#include <gtest/gtest.h>

int main(int argc, char** argv) {
  idtune::configure_runtime();
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
