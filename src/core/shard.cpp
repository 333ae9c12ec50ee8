#include "idtune/core/shard.h"

#include "idtune/core/error.h"

namespace idtune {

int64_t Shard::local_batch(int64_t batch) const {
  check_option(batch >= world_size && batch % world_size == 0, "batch", batch,
               "must be a multiple of the world size ", world_size,
               " (each rank samples batch / world size of every slot)");
  return batch / world_size;
}

at::Tensor Shard::slice(const at::Tensor& whole, int64_t dim) const {
  if (world_size == 1) return whole;
  const int64_t n = local_batch(whole.size(dim));
  return whole.narrow(dim, rank * n, n).contiguous();
}

}  // namespace idtune
