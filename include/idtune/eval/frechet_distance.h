#pragma once
// Fréchet distance between Gaussians fitted to features (FID's formula, in any feature space).

#include <ATen/core/Tensor.h>

namespace idtune {

/// Mean [D] and covariance [D, D] of a set of feature vectors, float64 on the features' device.
struct GaussianStatistics {
  at::Tensor mean;
  at::Tensor covariance;
};

/// Sample mean and unbiased (N − 1) covariance of `features` [N, D], N ≥ 2, computed in
/// float64. Throws idtune::Error for another shape or for non-finite features.
GaussianStatistics gaussian_statistics(const at::Tensor& features);

/// Fréchet (2-Wasserstein²) distance between N(μ₁, Σ₁) and N(μ₂, Σ₂):
///   |μ₁ − μ₂|² + tr(Σ₁ + Σ₂ − 2 (Σ₁^{1/2} Σ₂ Σ₁^{1/2})^{1/2}),
/// as in FID (Heusel et al. 2017, eq. 6), with matrix square roots by symmetric
/// eigendecomposition in float64 on the CPU (tiny negative eigenvalues from rounding are
/// clamped to 0, so singular covariances are fine). The result is clamped to ≥ 0. Throws
/// idtune::Error unless both means are [D] and both covariances [D, D] for one D.
double frechet_distance(const GaussianStatistics& a, const GaussianStatistics& b);

}  // namespace idtune
