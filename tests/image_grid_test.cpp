// write_image_grid: layout (columns, gaps, integer upscaling), the linear map from the data
// range to 0..255, RGB landing in OpenCV's BGR, atomic writes, and clear errors.

#include "idtune/eval/image_grid.h"
#include "idtune/core/error.h"
#include "test_helpers.h"

#include <gtest/gtest.h>
#include <torch/torch.h>
#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <string>
#include <vector>

namespace idtune {
namespace {

using testing::expect_error;

using testing::TempDir;

constexpr int kLevelTolerance = 1;  // one 8-bit level: rounding of v ↦ 255 (v − low) / (high − low)
constexpr int kWhite = 255;         // gaps and unused cells

/// Writes `images` in [0, 1] and reads the PNG back unchanged (grey stays 1 channel).
cv::Mat write_and_read(const at::Tensor& images, int64_t columns, int64_t min_cell) {
  TempDir dir;
  write_image_grid(images, {0.0, 1.0}, dir.file("grid.png"), columns, min_cell);
  cv::Mat read = cv::imread(dir.file("grid.png"), cv::IMREAD_UNCHANGED);
  EXPECT_FALSE(read.empty()) << "cv::imread could not read the grid back";
  return read;
}

std::vector<std::string> directory_entries(const std::string& dir) {
  std::vector<std::string> names;
  for (const auto& entry : std::filesystem::directory_iterator(dir))
    names.push_back(entry.path().filename().string());
  return names;
}

TEST(ImageGrid, SizeCountsColumnsGapsAndScale) {
  // 5 images 8×6, 3 per row, cells ≥ 20 px: factor ⌈20/6⌉ = 4, cells 32×24, 2 rows.
  auto grid = write_and_read(torch::zeros({5, 1, 8, 6}), 3, 20);
  EXPECT_EQ(grid.rows, 2 * 32 + 2);
  EXPECT_EQ(grid.cols, 3 * 24 + 2 * 2);
  // Defaults: ⌈√5⌉ = 3 columns, 8×8 images upscaled 8× to 64-px cells.
  grid = write_and_read(torch::zeros({5, 1, 8, 8}), 0, 64);
  EXPECT_EQ(grid.rows, 2 * 64 + 2);
  EXPECT_EQ(grid.cols, 3 * 64 + 2 * 2);
  grid = write_and_read(torch::zeros({4, 1, 8, 8}), 0, 64);  // ⌈√4⌉ = 2
  EXPECT_EQ(grid.cols, 2 * 64 + 2);
  // Images already as large as min_cell are not scaled; more columns than images: one row.
  grid = write_and_read(torch::zeros({2, 1, 70, 80}), 8, 64);
  EXPECT_EQ(grid.rows, 70);
  EXPECT_EQ(grid.cols, 2 * 80 + 2);
}

TEST(ImageGrid, ValuesMapDataRangeLinearlyAndClamp) {
  // One float32 grey image whose columns ramp across [-1.2, 1.2] in data range [-1, 1], upscaled
  // 2× (min_cell 8 over 4 rows): pixel (r, c) shows column c / 2.
  constexpr int64_t W = 16;
  const auto ramp = torch::linspace(-1.2, 1.2, W, torch::kFloat32);
  TempDir dir;
  write_image_grid(ramp.expand({1, 1, 4, W}), {-1.0, 1.0}, dir.file("ramp.png"), 0, 8);
  const cv::Mat grid = cv::imread(dir.file("ramp.png"), cv::IMREAD_UNCHANGED);
  ASSERT_EQ(grid.type(), CV_8UC1) << "a grey grid is written as a one-channel PNG";
  ASSERT_EQ(grid.rows, 8);
  ASSERT_EQ(grid.cols, 2 * W);
  for (int r = 0; r < grid.rows; ++r)
    for (int c = 0; c < grid.cols; ++c) {
      const double v = ramp[c / 2].item<double>();
      const double expected = std::clamp(255 * (v + 1) / 2, 0.0, 255.0);
      EXPECT_NEAR(grid.at<uint8_t>(r, c), expected, kLevelTolerance)
          << "pixel (" << r << ", " << c << ") for value " << v;
    }
}

TEST(ImageGrid, PlacesImagesRowMajorAndLeavesUnusedCellsWhite) {
  // Three constant float64 images 0, 0.25, 0.5 in two columns: the fourth cell is empty.
  const auto images = torch::tensor({0.0, 0.25, 0.5}, torch::kFloat64).view({3, 1, 1, 1});
  const auto grid = write_and_read(images.expand({3, 1, 4, 4}), 2, 4);
  ASSERT_EQ(grid.rows, 4 + 2 + 4);
  ASSERT_EQ(grid.cols, 4 + 2 + 4);
  const auto cell = [&](int row, int column) {
    return grid.at<uint8_t>(row * 6 + 1, column * 6 + 1);
  };
  EXPECT_NEAR(cell(0, 0), 0, kLevelTolerance);
  EXPECT_NEAR(cell(0, 1), 0.25 * 255, kLevelTolerance);
  EXPECT_NEAR(cell(1, 0), 0.5 * 255, kLevelTolerance);
  EXPECT_EQ(cell(1, 1), kWhite);
  EXPECT_EQ(grid.at<uint8_t>(4, 1), kWhite) << "gap between rows";
  EXPECT_EQ(grid.at<uint8_t>(1, 5), kWhite) << "gap between columns";
}

TEST(ImageGrid, RgbChannelsLandInBgrOrder) {
  auto images = torch::zeros({3, 3, 4, 4}, torch::kFloat64);
  for (int64_t i = 0; i < 3; ++i) images[i][i].fill_(1.0);  // red, green, blue
  const auto grid = write_and_read(images, 3, 4);
  ASSERT_EQ(grid.type(), CV_8UC3);
  const auto center = [&](int i) { return grid.at<cv::Vec3b>(2, i * 6 + 2); };
  EXPECT_EQ(center(0), cv::Vec3b(0, 0, 255)) << "red";
  EXPECT_EQ(center(1), cv::Vec3b(0, 255, 0)) << "green";
  EXPECT_EQ(center(2), cv::Vec3b(255, 0, 0)) << "blue";
  EXPECT_EQ(grid.at<cv::Vec3b>(2, 4), cv::Vec3b(kWhite, kWhite, kWhite)) << "gap";
}

TEST(ImageGrid, NanIsWrittenAsTheLowEndOfTheRange) {
  const auto grid = write_and_read(torch::full({1, 1, 2, 2}, std::nan("")), 0, 1);
  EXPECT_EQ(grid.at<uint8_t>(0, 0), 0);
}

TEST(ImageGrid, OverwritesAndLeavesNoTemporaryFile) {
  TempDir dir;
  const auto path = dir.file("grid.png");
  write_image_grid(torch::zeros({4, 1, 8, 8}), {0.0, 1.0}, path, 0, 8);
  write_image_grid(torch::ones({1, 3, 8, 8}), {0.0, 1.0}, path, 0, 8);
  const cv::Mat grid = cv::imread(path, cv::IMREAD_UNCHANGED);
  EXPECT_EQ(grid.type(), CV_8UC3);
  EXPECT_EQ(grid.rows, 8);
  EXPECT_EQ(directory_entries(dir.file("")), std::vector<std::string>{"grid.png"});
}

TEST(ImageGrid, CudaImagesAreMovedToTheCpu) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  const auto images = torch::ones({2, 3, 4, 4}, torch::TensorOptions(torch::kCUDA));
  const auto grid = write_and_read(images, 0, 4);
  EXPECT_EQ(grid.at<cv::Vec3b>(0, 0), cv::Vec3b(255, 255, 255));
  EXPECT_EQ(grid.cols, 4 + 2 + 4);
}

// ---- bad input: each a clear message naming the path or the shape ----

TEST(ImageGridBadInput, MissingDirectoryNamesThePath) {
  TempDir dir;
  const auto path = dir.file("missing/grid.png");
  expect_error(
      [&] {
        write_image_grid(torch::zeros({1, 1, 4, 4}), {0.0, 1.0}, path);
      },
      {path, "does not exist"});
}

TEST(ImageGridBadInput, WritingOverADirectoryFailsAndLeavesNoTemporaryFile) {
  TempDir dir;
  std::filesystem::create_directory(dir.file("taken"));
  const auto path = dir.file("taken");
  expect_error(
      [&] {
        write_image_grid(torch::zeros({1, 1, 4, 4}), {0.0, 1.0}, path);
      },
      {"cannot write", path});
  EXPECT_EQ(directory_entries(dir.file("")), std::vector<std::string>{"taken"});
}

TEST(ImageGridBadInput, TwoChannelsAreRefused) {
  expect_error(
      [] {
        write_image_grid(torch::zeros({2, 2, 4, 4}), {0.0, 1.0}, "unused.png");
      },
      {"C = 1 (grey) or 3 (RGB)", "[2, 2, 4, 4]"});
}

TEST(ImageGridBadInput, ShapeWithoutBatchIsRefused) {
  expect_error(
      [] {
        write_image_grid(torch::zeros({3, 4, 4}), {0.0, 1.0}, "unused.png");
      },
      {"[B, C, H, W]", "[3, 4, 4]"});
}

TEST(ImageGridBadInput, EmptyDataRangeAndBadLayoutAreRefused) {
  const auto images = torch::zeros({1, 1, 4, 4});
  expect_error([&] { write_image_grid(images, {1.0, 1.0}, "unused.png"); }, {"low < high"});
  expect_error([&] { write_image_grid(images, {0.0, 1.0}, "unused.png", -1); }, {"columns", "-1"});
  expect_error([&] { write_image_grid(images, {0.0, 1.0}, "unused.png", 0, 0); }, {"min_cell"});
}

}  // namespace
}  // namespace idtune
