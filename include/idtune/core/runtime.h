#pragma once
// Process-wide settings that make LibTorch fast on the CPU; the CLI, the tests and the
// benchmarks call configure_runtime() once at start-up.

namespace idtune {

/// LibTorch starts with one intra-op thread on Debian's build: use every core (or
/// $IDTUNE_NUM_THREADS when set). Returns the number of threads in use.
int use_all_cores();

/// Keeps freed activations in glibc's heap instead of returning them to the OS after every
/// backward pass (which makes the next step fault them in again: 11-19% of a tuned step, see
/// docs/benchmarks.md): raises the mmap and trim thresholds.
void retain_freed_memory();

/// Both of the above.
void configure_runtime();

}  // namespace idtune
