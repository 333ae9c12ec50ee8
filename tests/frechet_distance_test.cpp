// Fréchet distance: closed forms for diagonal and commuting covariances, symmetry, empirical
// statistics that recover the exact value, and clear errors for bad input.

#include "idtune/eval/frechet_distance.h"
#include "idtune/core/error.h"
#include "test_helpers.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <string>
#include <vector>

namespace idtune {
namespace {

using testing::expect_error;

constexpr double kRoundingTolerance = 1e-10;  // float64 eigendecompositions of small matrices
// 200k samples: the FD of empirical statistics is off by O(1/√N) relative plus a positive bias
// O(D/N); here it is off by 2e-4 relative, so 1% is loose.
constexpr double kSamplingTolerance = 0.01;
constexpr int64_t kSamples = 200000;

at::Tensor f64(std::vector<double> values) { return torch::tensor(values, torch::kFloat64); }

/// A random D×D rotation (Q of a QR factorisation of a Gaussian matrix).
at::Tensor random_rotation(int64_t D) {
  return std::get<0>(at::linalg_qr(torch::randn({D, D}, torch::kFloat64)));
}

/// Q diag(λ) Qᵀ.
at::Tensor with_eigenvalues(const at::Tensor& Q, const at::Tensor& eigenvalues) {
  return (Q * eigenvalues).mm(Q.t());
}

/// A random symmetric positive-definite D×D covariance, well conditioned.
at::Tensor random_covariance(int64_t D) {
  const auto A = torch::randn({D, D}, torch::kFloat64);
  return A.mm(A.t()) / D + 0.1 * torch::eye(D, torch::kFloat64);
}

TEST(FrechetDistance, IdenticalStatisticsGiveZero) {
  torch::manual_seed(1);
  const auto s = gaussian_statistics(torch::randn({50, 6}, torch::kFloat64));
  EXPECT_NEAR(frechet_distance(s, s), 0.0, kRoundingTolerance);
}

TEST(FrechetDistance, SingularCovarianceIsFiniteAndNearZeroAgainstItself) {
  // 5 rows in 8 dimensions: rank-4 covariance, whose zero eigenvalues come out as ±1e-16; their
  // square roots (±1e-8 before clamping) are why this tolerance is looser than rounding.
  constexpr double kSingularTolerance = 1e-6;
  torch::manual_seed(2);
  const auto s = gaussian_statistics(torch::randn({5, 8}, torch::kFloat64));
  const double fd = frechet_distance(s, s);
  EXPECT_TRUE(std::isfinite(fd));
  EXPECT_NEAR(fd, 0.0, kSingularTolerance);
}

TEST(FrechetDistance, DiagonalGaussiansMatchClosedForm) {
  // FD = Σᵢ (μ1ᵢ − μ2ᵢ)² + (s1ᵢ − s2ᵢ)² for standard deviations s.
  const auto mu1 = f64({0.0, 1.0, -2.0}), mu2 = f64({0.5, 1.0, 1.0});
  const auto s1 = f64({1.0, 0.3, 2.0}), s2 = f64({2.0, 0.7, 0.1});
  const double expected = ((mu1 - mu2).square().sum() + (s1 - s2).square().sum()).item<double>();
  const double got =
      frechet_distance({mu1, torch::diag(s1.square())}, {mu2, torch::diag(s2.square())});
  EXPECT_NEAR(got, expected, kRoundingTolerance * expected) << "expected " << expected;
}

TEST(FrechetDistance, CommutingCovariancesMatchClosedForm) {
  // Σ₁ = Q diag(λ1) Qᵀ, Σ₂ = Q diag(λ2) Qᵀ: FD = |Δμ|² + Σⱼ (√λ1ⱼ − √λ2ⱼ)².
  torch::manual_seed(3);
  constexpr int64_t D = 5;
  const auto Q = random_rotation(D);
  const auto lambda1 = f64({0.1, 0.5, 1.0, 2.0, 4.0}), lambda2 = f64({3.0, 0.2, 1.0, 0.01, 9.0});
  const auto mu1 = torch::randn({D}, torch::kFloat64), mu2 = torch::randn({D}, torch::kFloat64);
  const double expected =
      ((mu1 - mu2).square().sum() + (lambda1.sqrt() - lambda2.sqrt()).square().sum())
          .item<double>();
  const double got =
      frechet_distance({mu1, with_eigenvalues(Q, lambda1)}, {mu2, with_eigenvalues(Q, lambda2)});
  EXPECT_NEAR(got, expected, kRoundingTolerance * expected) << "expected " << expected;
}

TEST(FrechetDistance, IsSymmetric) {
  torch::manual_seed(4);
  constexpr int64_t D = 7;
  const GaussianStatistics a{torch::randn({D}, torch::kFloat64), random_covariance(D)};
  const GaussianStatistics b{torch::randn({D}, torch::kFloat64), random_covariance(D)};
  const double ab = frechet_distance(a, b), ba = frechet_distance(b, a);
  EXPECT_GT(ab, 0.0);
  EXPECT_NEAR(ab, ba, kRoundingTolerance * ab);
}

TEST(FrechetDistance, EmpiricalStatisticsOfSamplesRecoverTheDistance) {
  torch::manual_seed(5);
  constexpr int64_t D = 4;
  const GaussianStatistics a{f64({0.0, 0.5, -0.5, 1.0}), random_covariance(D)};
  const GaussianStatistics b{f64({0.5, 0.0, 0.0, 1.0}), random_covariance(D)};
  const auto sample = [](const GaussianStatistics& s) {  // x = μ + L z, Σ = L Lᵀ
    const auto L = at::linalg_cholesky(s.covariance);
    return s.mean + torch::randn({kSamples, D}, torch::kFloat64).mm(L.t());
  };
  const auto empirical_a = gaussian_statistics(sample(a));
  const auto empirical_b = gaussian_statistics(sample(b));
  const double expected = frechet_distance(a, b);
  const double got = frechet_distance(empirical_a, empirical_b);
  EXPECT_NEAR(got, expected, kSamplingTolerance * expected) << "expected " << expected;
  EXPECT_LT((empirical_a.mean - a.mean).abs().max().item<double>(), kSamplingTolerance);
  EXPECT_LT((empirical_a.covariance - a.covariance).abs().max().item<double>(), kSamplingTolerance);
}

TEST(FrechetDistance, StatisticsAreFloat64WhateverTheFeatureType) {
  const auto s = gaussian_statistics(torch::tensor({{1.0f, 2.0f}, {3.0f, 6.0f}}));
  EXPECT_EQ(s.mean.scalar_type(), torch::kFloat64);
  EXPECT_TRUE(torch::allclose(s.mean, f64({2.0, 4.0})));
  EXPECT_TRUE(
      torch::allclose(s.covariance, torch::tensor({{2.0, 4.0}, {4.0, 8.0}}, torch::kFloat64)));
}

// ---- bad input: a clear message saying what was expected and what was found ----

TEST(FrechetDistanceBadInput, FeaturesThatAreNot2D) {
  expect_error([] { gaussian_statistics(torch::randn({10})); }, {"[N, D]", "[10]"});
  expect_error([] { gaussian_statistics(torch::randn({10, 2, 3})); }, {"[N, D]", "[10, 2, 3]"});
}

TEST(FrechetDistanceBadInput, FewerThanTwoRows) {
  expect_error([] { gaussian_statistics(torch::randn({1, 4})); }, {"at least 2", "[1, 4]"});
}

TEST(FrechetDistanceBadInput, NonFiniteFeatures) {
  auto x = torch::randn({5, 2}, torch::kFloat64);
  x[2][1] = std::nan("");
  expect_error([&] { gaussian_statistics(x); }, {"NaN or Inf"});
}

TEST(FrechetDistanceBadInput, MismatchedDimensions) {
  const auto a = gaussian_statistics(torch::randn({10, 3}, torch::kFloat64));
  const auto b = gaussian_statistics(torch::randn({10, 4}, torch::kFloat64));
  expect_error([&] { frechet_distance(a, b); }, {"mean of b", "[3]", "[4]"});
  expect_error(
      [&] {
        frechet_distance({a.mean, b.covariance}, a);
      },
      {"covariance of a", "[3, 3]", "[4, 4]"});
}

}  // namespace
}  // namespace idtune
