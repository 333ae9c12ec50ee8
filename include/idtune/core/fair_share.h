#pragma once
// A fair share of a shared machine. LibTorch's OpenMP pool waits at every parallel region for
// its slowest thread: beside one busy process on 2 cores, a 2-thread run fell 18× (80 → 4.4
// sample-steps/s) while a 1-thread run kept 44. FairShare gives the pool as many threads as
// there are cores that other processes leave free, measured between iterations
// (docs/benchmarks.md#cpu-contention).

#include <cstdint>

namespace idtune {

class FairShare {
 public:
  /// Adjusts the intra-op threads between 1 and `max_threads` when `enabled`; otherwise
  /// rebalance() leaves them alone. from_environment() is what the runs use.
  FairShare(bool enabled, int max_threads);

  /// Enabled, up to every core, unless $IDTUNE_NUM_THREADS fixes the thread count.
  static FairShare from_environment();

  /// Call between units of work (iterations). At most every 0.5 s (the first time 0.1 s) it
  /// measures the CPU time other processes used since the last measurement (/proc/stat's busy
  /// time minus this process's own, /proc/self/stat) and sets the threads to the cores they
  /// left free: fewer at once, more only when two measurements in a row agree. Returns the
  /// threads in use.
  int rebalance();

  /// Threads for `free_cores` cores left free by other processes: a core counts when at least
  /// three quarters of it is free (a thread on a shared core stalls the whole pool), clamped
  /// to [1, max_threads].
  static int threads_for(double free_cores, int max_threads);

 private:
  struct Sample {
    double seconds = 0;  // monotonic clock
    uint64_t busy = 0;   // all CPUs' busy ticks
    uint64_t total = 0;  // all CPUs' ticks
    uint64_t own = 0;    // this process's user + system ticks
  };
  static Sample measure();

  bool enabled_;
  int max_threads_;
  int cores_;
  bool decided_ = false;  // the first decision comes after 0.1 s (e.g. of loading the model)
  int pending_ = 0;       // an increase seen once, applied when seen again
  Sample last_;
};

}  // namespace idtune
