#pragma once
// The objective every tuner descends (spec §1, §6):
//     F(π) = −λ E_π[R] + β KL,
// with the path KL(P_θ ‖ P_ref) for diffusion samplers and KL(p_ref ‖ π) for the Langevin
// family. One struct for the weights, checked in one place.

namespace idtune {

struct Objective {
  /// λ ≥ 0, the reward's weight.
  double lambda = 1.0;
  /// β ≥ 0, the KL's weight (0: reward only).
  double beta = 0.0;
};

/// Throws InvalidOption ("objective.lambda", "objective.beta") unless λ and β are finite,
/// ≥ 0 and not both 0.
void validate(const Objective& objective);

}  // namespace idtune
