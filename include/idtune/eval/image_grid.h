#pragma once
// Sample grids: a batch of images written as one PNG, for looking at what a model generates.

#include <ATen/core/Tensor.h>

#include <array>
#include <cstdint>
#include <string>

namespace idtune {

/// Writes `images` [B, C, H, W] (C = 1 grey or 3 RGB; any floating or integer dtype, any
/// device) as one PNG grid at `path`, regardless of the path's extension.
///
/// Values map linearly from `data_range` = [low, high] to 0..255 (rounded); values outside
/// the range are clamped and NaN is written as `low`. Images fill rows left to right,
/// `columns` per row (0: ⌈√B⌉; at most B), with 2-px white gaps between cells; unused cells of the
/// last row are white. Each image is upscaled by the smallest integer factor (nearest neighbour)
/// that makes the shorter side of a cell at least `min_cell` pixels (factor 1 if it already
/// is). The file is written to `<stem>.tmp.png` beside `path` and renamed, so a reader never
/// sees a partial grid.
///
/// Throws idtune::Error for a shape other than [B ≥ 1, 1 or 3, H ≥ 1, W ≥ 1], for
/// a non-finite range or low ≥ high, columns < 0 or min_cell < 1, and, naming `path`, when its
/// directory does not exist or writing fails.
void write_image_grid(const at::Tensor& images, std::array<double, 2> data_range,
                      const std::string& path, int64_t columns = 0, int64_t min_cell = 64);

}  // namespace idtune
