#include "idtune/eval/image_grid.h"

#include "idtune/core/atomic_file.h"
#include "idtune/core/error.h"

#include <torch/torch.h>
#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>

#include <algorithm>
#include <cmath>
#include <vector>

namespace idtune {
namespace {


constexpr int64_t kGap = 2;            // pixels between cells
constexpr int64_t kBackground = 255;   // gaps and unused cells: white
constexpr int64_t kMaxSide = 1 << 15;  // a larger grid is a mistake (and gigabytes)

void check_arguments(const at::Tensor& images, std::array<double, 2> data_range, int64_t columns,
                     int64_t min_cell) {
  check(images.defined(), "write_image_grid: images is an undefined tensor");
  check(images.dim() == 4 && images.size(0) >= 1 && (images.size(1) == 1 || images.size(1) == 3) &&
            images.size(2) >= 1 && images.size(3) >= 1,
        "write_image_grid: expected images [B, C, H, W] with B >= 1 and C = 1 (grey) or 3 (RGB), "
        "got shape ",
        images.sizes());
  check(
      std::isfinite(data_range[0]) && std::isfinite(data_range[1]) && data_range[0] < data_range[1],
      "write_image_grid: expected a finite data_range [low, high] with low < high, got [",
      data_range[0], ", ", data_range[1], "]");
  check(columns >= 0, "write_image_grid: expected columns >= 0 (0: ceil(sqrt(B))), got ", columns);
  check(min_cell >= 1, "write_image_grid: expected min_cell >= 1, got ", min_cell);
}

/// [B, C, H, W] in `range` -> contiguous uint8 [B, H, W, C] on the CPU, channels in BGR order.
at::Tensor to_bgr_bytes(const at::Tensor& images, std::array<double, 2> range) {
  const auto [low, high] = range;
  auto x = images.detach().to(torch::kCPU, torch::kFloat64).nan_to_num(low, high, low);
  x = ((x - low) * (255.0 / (high - low))).clamp(0, 255).round();
  if (x.size(1) == 3) x = x.flip({1});  // RGB -> BGR, the order OpenCV's encoder expects
  return x.to(torch::kUInt8).permute({0, 2, 3, 1}).contiguous();
}

struct GridLayout {
  int64_t scale, columns, rows, cell_height, cell_width, height, width;
};

GridLayout plan_grid(int64_t B, int64_t H, int64_t W, int64_t columns, int64_t min_cell) {
  GridLayout g{};
  g.scale = (min_cell - 1) / std::min(H, W) + 1;  // ceil(min_cell / shorter side), no overflow
  g.columns = columns;
  if (g.columns == 0)
    for (g.columns = 1; g.columns * g.columns < B;) ++g.columns;  // ceil(sqrt(B)), exactly
  g.columns = std::min(g.columns, B);
  g.rows = (B + g.columns - 1) / g.columns;
  check(g.scale <= kMaxSide && std::max(H, W) * g.scale <= kMaxSide, "write_image_grid: a cell of ",
        H, "x", W, " pixels upscaled ", g.scale, "x (min_cell = ", min_cell, ") exceeds ", kMaxSide,
        " pixels; lower min_cell");
  g.cell_height = H * g.scale;
  g.cell_width = W * g.scale;
  g.height = g.rows * (g.cell_height + kGap) - kGap;
  g.width = g.columns * (g.cell_width + kGap) - kGap;
  check(g.height <= kMaxSide && g.width <= kMaxSide, "write_image_grid: a grid of ", g.rows, "x",
        g.columns, " cells of ", g.cell_height, "x", g.cell_width, " pixels exceeds ", kMaxSide,
        " pixels on a side; write fewer images, change columns or lower min_cell");
  return g;
}

/// Bytes [B, H, W, C] -> one uint8 canvas [height, width, C] laid out by `g`.
at::Tensor compose_grid(const at::Tensor& bytes, const GridLayout& g) {
  const auto cells = bytes.repeat_interleave(g.scale, 1).repeat_interleave(g.scale, 2);
  auto grid = torch::full({g.height, g.width, bytes.size(3)}, kBackground, torch::kUInt8);
  for (int64_t b = 0; b < bytes.size(0); ++b) {
    const int64_t top = (b / g.columns) * (g.cell_height + kGap);
    const int64_t left = (b % g.columns) * (g.cell_width + kGap);
    grid.narrow(0, top, g.cell_height).narrow(1, left, g.cell_width).copy_(cells[b]);
  }
  return grid;
}

/// Encodes `grid` [height, width, C] (uint8, BGR) as PNG and writes it atomically.
void write_png_atomically(const at::Tensor& grid, const std::string& path) {
  check_writable_target(path);
  const cv::Mat image(static_cast<int>(grid.size(0)), static_cast<int>(grid.size(1)),
                      CV_8UC(static_cast<int>(grid.size(2))), grid.data_ptr<uint8_t>());
  std::vector<uchar> png;
  bool encoded = false;
  std::string reason = "the encoder refused the image";
  try {
    encoded = cv::imencode(".png", image, png);
  } catch (const cv::Exception& e) {
    reason = e.what();
  }
  check(encoded, "write_image_grid: cannot encode ", path, " as PNG: ", reason);
  write_bytes_atomically(path, std::string(png.begin(), png.end()));
}

}  // namespace

void write_image_grid(const at::Tensor& images, std::array<double, 2> data_range,
                      const std::string& path, int64_t columns, int64_t min_cell) {
  check_arguments(images, data_range, columns, min_cell);
  const auto layout = plan_grid(images.size(0), images.size(2), images.size(3), columns, min_cell);
  write_png_atomically(compose_grid(to_bgr_bytes(images, data_range), layout), path);
}

}  // namespace idtune
