#include "idtune/diffusion/conditions.h"

#include "idtune/core/error.h"
#include "idtune/core/text.h"

#include <torch/torch.h>

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

}  // namespace idtune
