#pragma once
// Data-parallel runs on PyTorch's own distributed engine (c10d): a process group of W ranks
// that meet through a TCPStore (rank 0 hosts it) and reduce over Gloo on the CPU. Ranks are
// launched as PyTorch users launch them: RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT (torchrun,
// Slurm wrappers). The c10d headers stay in the .cpp.

#include <ATen/core/Tensor.h>

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace idtune {

struct DistributedOptions {
  int rank = 0;
  int world_size = 1;
  /// This rank's index on its machine (LOCAL_RANK; the rank when unset): its GPU.
  int local_rank = 0;
  std::string master_addr = "127.0.0.1";
  int master_port = 29500;
  /// A rank that dies or hangs makes every collective of the others fail after this long.
  std::chrono::milliseconds timeout{std::chrono::seconds(60)};
};

/// The options torchrun's variables describe, or nothing when WORLD_SIZE is unset (a single
/// process). Throws idtune::Error naming a variable that is malformed or missing.
std::optional<DistributedOptions> distributed_from_environment();

class ProcessGroup {
 public:
  /// Meets the other ranks (within the timeout) and builds the Gloo group; throws idtune::Error
  /// naming the address and port when they do not come.
  explicit ProcessGroup(const DistributedOptions& options);
  ~ProcessGroup();
  ProcessGroup(const ProcessGroup&) = delete;
  ProcessGroup& operator=(const ProcessGroup&) = delete;

  int rank() const { return options_.rank; }
  int world_size() const { return options_.world_size; }

  /// Each tensor replaced by its mean over the ranks, in place (CPU tensors of one dtype, sent
  /// as one flat buffer). Throws idtune::Error when a rank does not take part within the
  /// timeout.
  void all_reduce_mean(std::vector<at::Tensor>& tensors);
  /// The ranks' `local` tensors concatenated along `dim` in rank order (equal shapes, CPU):
  /// every rank's share of a batch made whole again.
  at::Tensor all_gather(const at::Tensor& local, int64_t dim = 0);
  /// True on every rank when `flag` is true on any (e.g. an interrupt seen by one rank first,
  /// so that all stop at the same iteration).
  bool any(bool flag);
  /// Throws idtune::Error naming `what` unless every rank holds bit-identical `tensors`
  /// (compared by their float64 sums and sums of squares: a checksum, not a proof).
  void check_identical(const std::vector<at::Tensor>& tensors, const std::string& what);

 private:
  struct Impl;
  DistributedOptions options_;
  std::unique_ptr<Impl> impl_;
};

}  // namespace idtune
