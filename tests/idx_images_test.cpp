// The idx reader: pixel mapping, limits, and refusals of files that are not idx.

#include "idtune/eval/idx_images.h"
#include "test_helpers.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <fstream>

namespace idtune {
namespace {

using testing::expect_error;
using testing::TempDir;

void write_bytes(const std::string& path, const std::vector<unsigned char>& bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(bytes.data()),
            static_cast<std::streamsize>(bytes.size()));
}

/// An idx3 file of three 1×2 images with pixels 0, 255 | 51, 102 | 204, 153.
std::vector<unsigned char> three_images() {
  return {0, 0, 8, 3, 0, 0, 0, 3, 0, 0, 0, 1, 0, 0, 0, 2, 0, 255, 51, 102, 204, 153};
}

TEST(IdxImages, PixelsMapLinearlyOntoTheDataRangeAndLimitKeepsTheFirstImages) {
  TempDir dir;
  write_bytes(dir.file("images"), three_images());
  const auto all = read_idx_images(dir.file("images"), {-1.0, 1.0});
  ASSERT_EQ(all.sizes(), (std::vector<int64_t>{3, 1, 1, 2}));
  const auto expected = torch::tensor({-1.0f, 1.0f, -0.6f, -0.2f, 0.6f, 0.2f}).view({3, 1, 1, 2});
  EXPECT_TRUE(torch::allclose(all, expected, 0, 1e-6));
  const auto first_two = read_idx_images(dir.file("images"), {0.0, 1.0}, 2);
  EXPECT_EQ(first_two.size(0), 2);
  EXPECT_FLOAT_EQ(first_two[1][0][0][1].item<float>(), 0.4f);
}

TEST(IdxImages, LabelsAreReadAsInt64) {
  TempDir dir;
  write_bytes(dir.file("labels"), {0, 0, 8, 1, 0, 0, 0, 3, 7, 0, 9});
  const auto labels = read_idx_labels(dir.file("labels"));
  EXPECT_EQ(labels.scalar_type(), torch::kInt64);
  EXPECT_TRUE(labels.equal(torch::tensor({7, 0, 9}, torch::kInt64)));
}

TEST(IdxImages, RefusesMissingTruncatedAndNonIdxFiles) {
  TempDir dir;
  expect_error(
      [&] {
        read_idx_images(dir.file("absent"), {0.0, 1.0});
      },
      {"cannot open idx file", "absent"});
  auto truncated = three_images();
  truncated.resize(truncated.size() - 1);
  write_bytes(dir.file("truncated"), truncated);
  expect_error(
      [&] {
        read_idx_images(dir.file("truncated"), {0.0, 1.0});
      },
      {"truncated", "wanted 6 bytes, read 5"});
  write_bytes(dir.file("labels"), {0, 0, 8, 1, 0, 0, 0, 1, 4});
  expect_error(
      [&] {
        read_idx_images(dir.file("labels"), {0.0, 1.0});
      },
      {"3 dimensions", "magic 0x801", "expected 0x803"});
}

}  // namespace
}  // namespace idtune
