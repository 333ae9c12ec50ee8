#pragma once
// A data-parallel rank's part of every batch: rank r of W holds samples [r·B/W, (r+1)·B/W) of
// each global batch of B. Every rank draws the whole batch's noise and conditions and keeps
// its rows, so the ranks' samples together are exactly the single process's.

#include <ATen/core/Tensor.h>

#include <cstdint>

namespace idtune {

struct Shard {
  int rank = 0;
  int world_size = 1;

  /// B/W; throws InvalidOption ("batch") unless W divides B.
  int64_t local_batch(int64_t batch) const;
  /// This rank's share of `whole` along `dim` (the whole of it in a single process).
  at::Tensor slice(const at::Tensor& whole, int64_t dim = 0) const;
};

}  // namespace idtune
