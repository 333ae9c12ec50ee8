#include "idtune/eval/idx_images.h"

#include "idtune/core/error.h"

#include <torch/torch.h>
#include <zlib.h>

#include <vector>

namespace idtune {

namespace {

/// A gzip (or plain) file read through zlib, closed on scope exit.
class IdxFile {
 public:
  explicit IdxFile(const std::string& path) : path_(path), file_(gzopen(path.c_str(), "rb")) {
    check(file_ != nullptr, "cannot open idx file '", path, "'");
  }
  ~IdxFile() { gzclose(file_); }
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

  /// The next unsigned bytes as a uint8 tensor of `shape`.
  at::Tensor read_bytes(std::vector<int64_t> shape) {
    auto bytes = torch::empty(shape, torch::kUInt8);
    read(bytes.data_ptr(), bytes.numel());
    return bytes;
  }

 private:
  std::string path_;
  gzFile file_;
};

int64_t clip_count(int64_t available, int64_t limit) {
  return limit < 0 ? available : std::min(available, limit);
}

}  // namespace

at::Tensor read_idx_images(const std::string& path, const std::array<double, 2>& range,
                           int64_t limit) {
  IdxFile file(path);
  const auto dims = file.read_header(3);
  const int64_t n = clip_count(dims[0], limit);
  const auto bytes = file.read_bytes({n, 1, dims[1], dims[2]});
  return bytes.to(torch::kFloat32) * ((range[1] - range[0]) / 255.0) + range[0];
}

at::Tensor read_idx_labels(const std::string& path, int64_t limit) {
  IdxFile file(path);
  const auto dims = file.read_header(1);
  return file.read_bytes({clip_count(dims[0], limit)}).to(torch::kInt64);
}

}  // namespace idtune
