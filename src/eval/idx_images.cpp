#include "idtune/eval/idx_images.h"

#include "idtune/core/atomic_file.h"
#include "idtune/core/error.h"

#include <torch/torch.h>
#include <zlib.h>

#include <vector>

namespace idtune {

namespace {

/// A gzip (or plain) file read through zlib, closed on scope exit.
class IdxFile {
 public:
  explicit IdxFile(const std::string& path) : path_(path) {
    // A FIFO would block the open until a writer came; a directory fails only when read.
    check(is_existing_file(path), "cannot open idx file '", path,
          "': it does not exist or is not a regular file");
    file_ = gzopen(path.c_str(), "rb");
    check(file_ != nullptr, "cannot open idx file '", path, "'");
  }
  ~IdxFile() {
    if (file_ != nullptr) gzclose(file_);
  }
  IdxFile(const IdxFile&) = delete;
  IdxFile& operator=(const IdxFile&) = delete;

  void read(void* data, int64_t bytes) {
    const int got = gzread(file_, data, static_cast<unsigned>(bytes));
    check(got == bytes, "idx file '", path_, "' is truncated or not gzip/idx data (wanted ", bytes,
          " bytes, read ", got, ")");
  }

  uint32_t read_big_endian() {
    unsigned char b[4];
    read(b, 4);
    return (uint32_t{b[0]} << 24) | (uint32_t{b[1]} << 16) | (uint32_t{b[2]} << 8) | b[3];
  }

  /// Reads the header of an idx file of unsigned bytes with `rank` dimensions.
  std::vector<int64_t> read_header(int rank) {
    const uint32_t magic = read_big_endian();
    check(magic == 0x0800u + static_cast<uint32_t>(rank), "'", path_,
          "' is not an idx file of unsigned bytes with ", rank, " dimensions (magic 0x", std::hex,
          magic, ", expected 0x", 0x0800 + rank, ")");
    std::vector<int64_t> dims;
    for (int i = 0; i < rank; ++i) dims.push_back(read_big_endian());
    return dims;
  }

  /// The next count × size unsigned bytes as a uint8 tensor [count, size], read as they come:
  /// a header that promises more than the file holds is reported as truncated, never
  /// allocated up front.
  at::Tensor read_bytes(int64_t count, int64_t size) {
    const double wanted = double(count) * double(size);
    std::vector<uint8_t> data;
    std::vector<uint8_t> chunk(1 << 20);
    while (double(data.size()) < wanted) {
      const auto want =
          static_cast<unsigned>(std::min(double(chunk.size()), wanted - double(data.size())));
      const int got = gzread(file_, chunk.data(), want);
      check(got == int(want), "idx file '", path_, "' is truncated or not gzip/idx data (wanted ",
            wanted, " bytes, read ", got < 0 ? got : int64_t(data.size()) + got, ")");
      data.insert(data.end(), chunk.begin(), chunk.begin() + got);
    }
    return torch::from_blob(data.data(), {count, size}, torch::kUInt8).clone();
  }

 private:
  std::string path_;
  gzFile file_ = nullptr;
};

int64_t clip_count(int64_t available, int64_t limit) {
  return limit < 0 ? available : std::min(available, limit);
}

}  // namespace

at::Tensor read_idx_images(const std::string& path, const std::array<double, 2>& range,
                           int64_t limit) {
  IdxFile file(path);
  const auto dims = file.read_header(3);
  check(dims[1] >= 1 && dims[1] <= 65536 && dims[2] >= 1 && dims[2] <= 65536, "idx file '", path,
        "' holds images of ", dims[1], "×", dims[2], " pixels: expected sizes in [1, 65536]");
  const int64_t n = clip_count(dims[0], limit);
  const auto bytes = file.read_bytes(n, dims[1] * dims[2]).view({n, 1, dims[1], dims[2]});
  return bytes.to(torch::kFloat32) * ((range[1] - range[0]) / 255.0) + range[0];
}

at::Tensor read_idx_labels(const std::string& path, int64_t limit) {
  IdxFile file(path);
  const auto dims = file.read_header(1);
  return file.read_bytes(clip_count(dims[0], limit), 1).flatten().to(torch::kInt64);
}

}  // namespace idtune
