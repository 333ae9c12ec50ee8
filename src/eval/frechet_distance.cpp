#include "idtune/eval/frechet_distance.h"

#include "idtune/core/error.h"

#include <torch/torch.h>

#include <algorithm>

namespace idtune {
namespace {

/// Eigenvalues and eigenvectors of the symmetric part of `matrix`, eigenvalues clamped to ≥ 0.
std::tuple<at::Tensor, at::Tensor> psd_eigh(const at::Tensor& matrix) {
  auto [eigenvalues, eigenvectors] = at::linalg_eigh((matrix + matrix.t()) / 2);
  return {eigenvalues.clamp_min(0), eigenvectors};
}

/// Σ^{1/2} = V diag(√λ) Vᵀ for a symmetric positive semi-definite Σ.
at::Tensor psd_sqrt(const at::Tensor& matrix) {
  const auto [eigenvalues, eigenvectors] = psd_eigh(matrix);
  return (eigenvectors * eigenvalues.sqrt()).mm(eigenvectors.t());
}

/// Checks that `s` is a mean [D] and a covariance [D, D]; `name` says which argument it is.
void check_statistics(const GaussianStatistics& s, const char* name, int64_t D) {
  check(s.mean.dim() == 1 && s.mean.size(0) == D, "frechet_distance: expected the mean of ", name,
        " to be [", D, "] (the dimension of a's mean), got shape ", s.mean.sizes());
  check(s.covariance.dim() == 2 && s.covariance.size(0) == D && s.covariance.size(1) == D,
        "frechet_distance: expected the covariance of ", name, " to be [", D, ", ", D,
        "] to match the means, got shape ", s.covariance.sizes());
  check(s.mean.isfinite().all().item<bool>() && s.covariance.isfinite().all().item<bool>(),
        "frechet_distance: the mean or covariance of ", name, " contains NaN or Inf");
}

}  // namespace

GaussianStatistics gaussian_statistics(const at::Tensor& features) {
  check(features.defined(), "gaussian_statistics: features is an undefined tensor");
  check(features.dim() == 2, "gaussian_statistics: expected features [N, D], got shape ",
        features.sizes());
  check(features.size(0) >= 2 && features.size(1) >= 1,
        "gaussian_statistics: expected at least 2 feature vectors (rows) of dimension >= 1 for a "
        "covariance, got shape ",
        features.sizes());
  const auto x = features.detach().to(torch::kFloat64);
  check(x.isfinite().all().item<bool>(), "gaussian_statistics: features contain NaN or Inf");
  const auto mean = x.mean(0);
  const auto centered = x - mean;
  return {mean, centered.t().mm(centered) / static_cast<double>(x.size(0) - 1)};
}

double frechet_distance(const GaussianStatistics& a, const GaussianStatistics& b) {
  check(a.mean.defined() && a.covariance.defined() && b.mean.defined() && b.covariance.defined(),
        "frechet_distance: a mean or covariance is an undefined tensor");
  check(a.mean.dim() == 1, "frechet_distance: expected the mean of a to be [D], got shape ",
        a.mean.sizes());
  const int64_t D = a.mean.size(0);
  check_statistics(a, "a", D);
  check_statistics(b, "b", D);
  const auto cpu = [](const at::Tensor& t) { return t.detach().to(torch::kCPU, torch::kFloat64); };
  const auto mu1 = cpu(a.mean), mu2 = cpu(b.mean);
  const auto sigma1 = cpu(a.covariance), sigma2 = cpu(b.covariance);

  // tr (Σ₁^{1/2} Σ₂ Σ₁^{1/2})^{1/2} = Σ √λ of the (symmetric PSD) inner product.
  const auto root1 = psd_sqrt(sigma1);
  const auto trace_cross = std::get<0>(psd_eigh(root1.mm(sigma2).mm(root1))).sqrt().sum();
  const auto distance =
      (mu1 - mu2).square().sum() + sigma1.trace() + sigma2.trace() - 2 * trace_cross;
  // Rounding can leave −1e-16 for identical statistics; the true distance is ≥ 0.
  return std::max(0.0, distance.item<double>());
}

}  // namespace idtune
