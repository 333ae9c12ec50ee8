#pragma once
// Process-wide settings that make LibTorch fast on the CPU; the CLI, the tests and the
// benchmarks call configure_runtime() once at start-up.

namespace idtune {

/// LibTorch starts with one intra-op thread on Debian's build: use every core (or
/// $IDTUNE_NUM_THREADS when set: a number from 1 to 4096, else an Error naming it). Returns the
/// number of threads in use. While a run goes on, FairShare (fair_share.h) lowers them when
/// other processes take cores, unless $IDTUNE_NUM_THREADS is set.
int use_all_cores();

/// Keeps freed activations in glibc's heap instead of returning them to the OS after every
/// backward pass (which makes the next step fault them in again: 11-19% of a tuned step, see
/// docs/benchmarks.md): raises the mmap and trim thresholds.
void retain_freed_memory();

/// Both of the above.
void configure_runtime();

}  // namespace idtune
