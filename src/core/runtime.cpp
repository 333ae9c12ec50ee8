#include "idtune/core/runtime.h"

#include "idtune/core/error.h"
#include "idtune/core/text.h"

#include <ATen/Parallel.h>
#include <malloc.h>

#include <cstdlib>
#include <string>
#include <thread>

namespace idtune {

int use_all_cores() {
  int threads = static_cast<int>(std::thread::hardware_concurrency());
  if (const char* env = std::getenv("IDTUNE_NUM_THREADS")) {
    char* end = nullptr;
    const long value = std::strtol(env, &end, 10);
    if (end == env || *end != '\0' || value < 1 || value > 4096)
      throw Error("environment variable IDTUNE_NUM_THREADS='" + clipped(env, 60) +
                  "': expected a number of threads between 1 and 4096");
    threads = static_cast<int>(value);
  }
  if (threads > 0) at::set_num_threads(threads);
  return at::get_num_threads();
}

void retain_freed_memory() {
  mallopt(M_MMAP_THRESHOLD, 32 << 20);  // the largest glibc allows on 64-bit
  mallopt(M_TRIM_THRESHOLD, 1 << 30);
}

void configure_runtime() {
  use_all_cores();
  retain_freed_memory();
}

}  // namespace idtune
