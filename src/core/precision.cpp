#include "idtune/core/precision.h"

#include "idtune/core/error.h"

#include <ATen/autocast_mode.h>

namespace idtune {

const NameTable<Precision>& precision_names() {
  static const NameTable<Precision> table = {
      {"fp32", Precision::Fp32}, {"bf16", Precision::Bf16}, {"fp16", Precision::Fp16}};
  return table;
}

void check_precision(Precision precision, c10::Device device, c10::ScalarType dtype) {
  if (precision == Precision::Fp32) return;
  const auto& name = name_of(precision, precision_names());
  check(dtype == c10::kFloat, "precision ", name, " needs dtype float32 (the master weights), not ",
        c10::toString(dtype));
  check(precision != Precision::Fp16 || device.is_cuda(),
        "precision fp16 needs a CUDA device: LibTorch's CPU autocast runs bf16 only (use bf16)");
}

AutocastGuard::AutocastGuard(Precision precision, c10::Device device) {
  if (precision == Precision::Fp32) return;
  active_ = true;
  cuda_ = device.is_cuda();
  const auto dtype = precision == Precision::Bf16 ? c10::kBFloat16 : c10::kHalf;
  if (cuda_) {
    was_enabled_ = at::autocast::is_enabled();
    previous_dtype_ = at::autocast::get_autocast_gpu_dtype();
    at::autocast::set_enabled(true);
    at::autocast::set_autocast_gpu_dtype(dtype);
  } else {
    was_enabled_ = at::autocast::is_cpu_enabled();
    previous_dtype_ = at::autocast::get_autocast_cpu_dtype();
    at::autocast::set_cpu_enabled(true);
    at::autocast::set_autocast_cpu_dtype(dtype);
  }
  at::autocast::increment_nesting();
}

AutocastGuard::~AutocastGuard() {
  if (!active_) return;
  if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
  if (cuda_) {
    at::autocast::set_enabled(was_enabled_);
    at::autocast::set_autocast_gpu_dtype(previous_dtype_);
  } else {
    at::autocast::set_cpu_enabled(was_enabled_);
    at::autocast::set_autocast_cpu_dtype(previous_dtype_);
  }
}

}  // namespace idtune
