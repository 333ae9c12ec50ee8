#pragma once
// Replayable Gaussian noise: ξ for (stream, step) is a pure function of the seed, so any
// step of any batch can be regenerated (for resume, for autograd-vs-adjoint checks, or to
// recompute a path instead of storing it).

#include "idtune/core/shard.h"

#include <ATen/core/Tensor.h>
#include <c10/core/TensorOptions.h>

#include <cstdint>
#include <vector>

namespace idtune {

class Noise {
 public:
  /// Step index of the initial state Y_0 ∼ N(0, I).
  static constexpr int64_t kInitial = -1;

  explicit Noise(uint64_t seed) : seed_(seed) {}

  /// N(0, I) of `shape` for batch `stream` at chain step `step` (kInitial for Y_0).
  /// Drawn on the CPU with a counter-based seed, then moved to `options`' device.
  at::Tensor normal(uint64_t stream, int64_t step, std::vector<int64_t> shape,
                    const c10::TensorOptions& options) const;
  /// `count` indices uniform in [0, size), as Φ of the normal draws of (stream, step):
  /// replayable like the noise (int64, on the CPU).
  at::Tensor uniform_indices(uint64_t stream, int64_t step, int64_t count, int64_t size) const;
  uint64_t seed() const { return seed_; }

 private:
  uint64_t seed_;
};

/// The noise of one batch: stream `stream` of `noise` (of which a data-parallel rank uses
/// its shard's rows).
struct BatchNoise {
  Noise noise;
  uint64_t stream = 0;
  Shard shard{};
};

}  // namespace idtune
