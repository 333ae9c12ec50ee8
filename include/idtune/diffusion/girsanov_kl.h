#pragma once
// The path KL to a frozen reference model by the discrete Girsanov theorem (spec §3):
//     KL(P_θ ‖ P_ref) = E_{Y∼P_θ} Σ_k c_k(Y_k; θ),
//     c_k(y; θ) = ‖m_k(y; θ) − m_k(y; θ_ref)‖² / (2 σ_k²).
// Defined for stochastic chains only (σ_k > 0).

#include <ATen/core/Tensor.h>

namespace idtune {

/// c_k per sample ([B]) from the two means [B, ...] and σ_k ([B, 1, 1, 1]).
at::Tensor girsanov_increment(const at::Tensor& mean, const at::Tensor& mean_reference,
                              const at::Tensor& sigma);

}  // namespace idtune
