#pragma once
// Reads image and label files in the idx format of (Fashion-)MNIST, gzipped or not
// (http://yann.lecun.com/exdb/mnist/: big-endian magic 0x00000803 / 0x00000801, then the
// dimensions, then unsigned bytes).

#include <ATen/core/Tensor.h>

#include <array>
#include <cstdint>
#include <string>

namespace idtune {

/// The first `limit` images (all when limit < 0) of an idx3 file as float32 [N, 1, H, W],
/// pixels mapped from 0..255 linearly onto `range` (e.g. [−1, 1]). Throws idtune::Error for a
/// missing, truncated or non-idx3 file.
at::Tensor read_idx_images(const std::string& path, const std::array<double, 2>& range,
                           int64_t limit = -1);

/// The first `limit` labels (all when limit < 0) of an idx1 file as int64 [N].
at::Tensor read_idx_labels(const std::string& path, int64_t limit = -1);

}  // namespace idtune
