#include "idtune/diffusion/conditions.h"

#include "idtune/core/error.h"
#include "idtune/core/text.h"

#include <torch/torch.h>

#include <algorithm>

namespace idtune {

namespace {
/// The noise step index of a batch's condition draw (Y_0 is Noise::kInitial = −1).
constexpr int64_t kConditionStep = -2;
}  // namespace

ConditionSet::ConditionSet(at::Tensor values, bool classes)
    : values_(std::move(values)), classes_(classes) {}

ConditionSet ConditionSet::classes(std::vector<int64_t> labels) {
  check(!labels.empty(), "conditions: the class list is empty");
  return ConditionSet(torch::tensor(labels, torch::kLong), true);
}

ConditionSet ConditionSet::tensors(at::Tensor conditions) {
  check(conditions.defined() && conditions.dim() >= 2 && conditions.size(0) >= 1 &&
            conditions.is_floating_point(),
        "conditions: expected a floating tensor [N, shape…] of N >= 1 conditions, got ",
        conditions.defined() ? shape_string(conditions.sizes()) : std::string("none"));
  return ConditionSet(conditions.detach().cpu(), false);
}

at::Tensor ConditionSet::draw(const Noise& noise, uint64_t stream, int64_t batch,
                              const c10::TensorOptions& options) const {
  const auto index = noise.uniform_indices(stream, kConditionStep, batch, values_.size(0));
  const auto drawn = values_.index_select(0, index);
  return classes_ ? drawn.to(options.device()) : drawn.to(options.device(), options.dtype());
}

ClassRows class_rows(std::vector<int64_t> labels, int64_t n) {
  check(!labels.empty(), "class rows: no labels");
  std::sort(labels.begin(), labels.end());
  labels.erase(std::unique(labels.begin(), labels.end()), labels.end());
  const int64_t per_row = std::max<int64_t>(1, n / static_cast<int64_t>(labels.size()));
  return {torch::tensor(labels, torch::kLong).repeat_interleave(per_row), per_row};
}

}  // namespace idtune
