#include "idtune/parallelism.h"

#include <ATen/Parallel.h>

#include <cstdlib>
#include <string>
#include <thread>

namespace idtune {

int use_all_cores() {
  int threads = static_cast<int>(std::thread::hardware_concurrency());
  if (const char* env = std::getenv("IDTUNE_NUM_THREADS")) threads = std::stoi(env);
  if (threads > 0) at::set_num_threads(threads);
  return at::get_num_threads();
}

}  // namespace idtune
