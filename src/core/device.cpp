#include "idtune/core/device.h"

#include "idtune/core/error.h"
#include "idtune/core/text.h"

#include <torch/cuda.h>
#include <torch/torch.h>

namespace idtune {

c10::Device parse_device(const std::string& name) {
  c10::optional<c10::Device> device;
  try {
    device = c10::Device(name);
  } catch (const std::exception&) {
    throw Error("device \"" + clipped(name) + "\" is not one of: cpu, cuda, cuda:N");
  }
  check(!device->is_cuda() || torch::cuda::is_available(), "device \"", name,
        "\" asked for, but this LibTorch sees no CUDA device (build against a CUDA LibTorch, "
        "or use device cpu)");
  check(!device->is_cuda() || !device->has_index() ||
            device->index() < static_cast<int>(torch::cuda::device_count()),
        "device \"", name, "\": there are ", torch::cuda::device_count(), " CUDA devices");
  check(device->is_cpu() || device->is_cuda(), "device \"", name, "\" is not one of: cpu, cuda");
  return *device;
}

void read_dtype(JsonReader& reader, std::string& dtype) {
  reader.read("dtype", dtype);
  check(dtype == "float32" || dtype == "float64", reader.path_of("dtype"), ": \"", dtype,
        "\" is not one of: float32, float64");
}

c10::ScalarType parse_dtype(const std::string& name) {
  check(name == "float32" || name == "float64", "dtype \"", clipped(name),
        "\" is not one of: float32, float64");
  return name == "float32" ? c10::kFloat : c10::kDouble;
}

}  // namespace idtune
