#include "idtune/diffusion/girsanov_kl.h"

#include <torch/torch.h>

namespace idtune {

at::Tensor girsanov_increment(const at::Tensor& mean, const at::Tensor& mean_reference,
                              const at::Tensor& sigma) {
  return 0.5 * ((mean - mean_reference) / sigma).pow(2).flatten(1).sum(1);
}

}  // namespace idtune
