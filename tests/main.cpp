#include "idtune/parallelism.h"

#include <gtest/gtest.h>

int main(int argc, char** argv) {
  idtune::use_all_cores();
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
