#pragma once
// Mixed precision: the network's calls under LibTorch's autocast (bf16 on the CPU, bf16 or
// fp16 on CUDA), everything else in the model's dtype (float32): θ and Adam's moments, the
// reward, the sampler's arithmetic and the adjoint's sums (docs/precision-and-lora.md).

#include "idtune/core/name_table.h"

#include <c10/core/Device.h>
#include <c10/core/ScalarType.h>

namespace idtune {

enum class Precision { Fp32, Bf16, Fp16 };
const NameTable<Precision>& precision_names();

/// Throws idtune::Error unless `precision` can run on `device` with parameters of `dtype`:
/// bf16/fp16 need float32 parameters (float64 runs are for checking, in full precision), fp16
/// needs CUDA (LibTorch's CPU autocast is bf16 only).
void check_precision(Precision precision, c10::Device device, c10::ScalarType dtype);

/// Autocast for `device`'s type in `precision` while alive (nothing for Fp32); restores the
/// previous state and clears autocast's weight cache when the outermost guard ends.
class AutocastGuard {
 public:
  AutocastGuard(Precision precision, c10::Device device);
  ~AutocastGuard();
  AutocastGuard(const AutocastGuard&) = delete;
  AutocastGuard& operator=(const AutocastGuard&) = delete;

 private:
  bool active_ = false;
  bool cuda_ = false;
  bool was_enabled_ = false;
  c10::ScalarType previous_dtype_ = c10::kFloat;
};

}  // namespace idtune
