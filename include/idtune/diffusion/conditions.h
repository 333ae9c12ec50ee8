#pragma once
// The conditions a run draws its batches from (class labels, or N precomputed tensors such as
// text-encoder states). A batch's conditions are a pure function of (seed, stream), like its
// noise: replayable, and restored with the batch on resume.

#include "idtune/core/noise.h"

#include <ATen/core/Tensor.h>
#include <c10/core/TensorOptions.h>

#include <cstdint>
#include <vector>

namespace idtune {

class ConditionSet {
 public:
  /// Class labels to draw from, each equally likely (a label may repeat to weight it).
  static ConditionSet classes(std::vector<int64_t> labels);
  /// N tensor conditions [N, shape…], each equally likely.
  static ConditionSet tensors(at::Tensor conditions);

  /// The conditions of batch `stream`: int64 labels [batch], or [batch, shape…] in `options`'
  /// dtype; on `options`' device.
  at::Tensor draw(const Noise& noise, uint64_t stream, int64_t batch,
                  const c10::TensorOptions& options) const;
  /// Every condition of the set: labels [N] or tensors [N, shape…] (for checks).
  const at::Tensor& all() const { return values_; }
  bool is_classes() const { return classes_; }

 private:
  ConditionSet(at::Tensor values, bool classes);
  at::Tensor values_;  // on the CPU
  bool classes_;
};

/// Labels for a grid of about `n` images with one row per distinct label (in increasing order):
/// each label `per_row` = n / |distinct labels| times (at least once).
struct ClassRows {
  at::Tensor labels;
  int64_t per_row;
};
ClassRows class_rows(std::vector<int64_t> labels, int64_t n);

}  // namespace idtune
