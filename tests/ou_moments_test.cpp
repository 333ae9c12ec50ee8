// Spec §7: the Euler chains of the paper's 1-D OU problem against their exact Gaussian
// moments, and their continuous-time limits as K grows.

#include "analytic_problems.h"
#include "idtune/diffusion/sampling.h"
#include "idtune/diffusion/toy_models.h"
#include "test_helpers.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

namespace idtune {
namespace {

using testing::chain_moments;
using testing::Moments;
using testing::ou_euler_chain;

constexpr double kTheta = 1.5, kKappa = 1.0, kTMax = 1.0, kTMin = 1e-3;
constexpr int64_t kSamples = 200000;
// Empirical moments of n Gaussian samples: the mean's standard error is √(V/n), the
// variance's √(2/n)·V; 5 standard errors keep a false alarm below 1e-6.
constexpr double kStandardErrors = 5.0;

Moments empirical_final_moments(SamplerKind kind, int64_t K) {
  auto model = make_ou_gaussian_model({kTheta, kKappa, kTMax});
  Sampler sampler({kind, K, kTMin}, model);
  Noise noise(2024);
  auto path = sample_path(sampler, model, initial_state(model, kSamples, noise, 0), noise, 0);
  const auto& y = path.final_state();
  return {y.mean().item<double>(), y.var().item<double>()};
}

void expect_moments_match(SamplerKind kind, int64_t K, bool stochastic) {
  const auto exact = chain_moments(ou_euler_chain(kTheta, kKappa, kTMax, kTMin, K, stochastic));
  const auto sampled = empirical_final_moments(kind, K);
  const double mean_tolerance = kStandardErrors * std::sqrt(exact.variance / kSamples);
  const double variance_tolerance = kStandardErrors * std::sqrt(2.0 / kSamples) * exact.variance;
  EXPECT_NEAR(sampled.mean, exact.mean, mean_tolerance) << "K = " << K;
  EXPECT_NEAR(sampled.variance, exact.variance, variance_tolerance) << "K = " << K;
}

TEST(OuMoments, SdeEulerMatchesExactGaussianRecursion) {
  for (int64_t K : {1, 5, 40}) expect_moments_match(SamplerKind::SdeEuler, K, true);
}

TEST(OuMoments, OdeEulerMatchesExactGaussianRecursion) {
  for (int64_t K : {1, 5, 40}) expect_moments_match(SamplerKind::OdeEuler, K, false);
}

// The Euler recursion's error to the continuous-time end point is O(1/K): it must shrink
// by about 10x per 10x steps and be small at K = 10^4.
constexpr double kLimitTolerance = 1e-3;

void expect_converges(double limit_mean, bool stochastic) {
  double previous_error = INFINITY;
  for (int64_t K : {10, 100, 1000, 10000}) {
    const auto m = chain_moments(ou_euler_chain(kTheta, kKappa, kTMax, kTMin, K, stochastic));
    const double error = std::abs(m.mean - limit_mean) + std::abs(m.variance - 1.0);
    EXPECT_LT(error, previous_error / 5) << "K = " << K << " error " << error;
    previous_error = error;
  }
  EXPECT_LT(previous_error, kLimitTolerance);
}

TEST(OuMoments, SdeEulerApproachesContinuousLimit) {
  expect_converges(testing::sde_limit_mean(kTheta, kTMax, kTMin), true);
  // With t_min → 0 this is spec §7's N(cθ, 1), c = 1 − e^{−2T}.
  EXPECT_NEAR(testing::sde_limit_mean(kTheta, kTMax, 0), (1 - std::exp(-2 * kTMax)) * kTheta,
              1e-15);
}

TEST(OuMoments, OdeEulerApproachesContinuousLimit) {
  expect_converges(testing::ode_limit_mean(kTheta, kTMax, kTMin), false);
  EXPECT_NEAR(testing::ode_limit_mean(kTheta, kTMax, 0), (1 - std::exp(-kTMax)) * kTheta, 1e-15);
}

TEST(OuMoments, SamplerTableIsTheEulerDiscretisation) {
  auto model = make_ou_gaussian_model({});
  const int64_t K = 7;
  Sampler sde({SamplerKind::SdeEuler, K, kTMin}, model);
  Sampler ode({SamplerKind::OdeEuler, K, kTMin}, model);
  const double h = (kTMax - kTMin) / K;
  for (int64_t k = 0; k < K; ++k) {
    // For ou (β ≡ 2): SDE m = y + h(y + 2s), σ = √(2h); ODE m = y + h(y + s), σ = 0.
    EXPECT_NEAR(sde.coefficients(k).tau, kTMax - k * h, 1e-14);
    EXPECT_NEAR(sde.coefficients(k).a, 1 + h, 1e-14);
    EXPECT_NEAR(sde.coefficients(k).b, 2 * h, 1e-14);
    EXPECT_NEAR(sde.coefficients(k).sigma, std::sqrt(2 * h), 1e-14);
    EXPECT_NEAR(ode.coefficients(k).b, h, 1e-14);
    EXPECT_EQ(ode.coefficients(k).sigma, 0.0);
  }
  EXPECT_TRUE(sde.stochastic());
  EXPECT_FALSE(ode.stochastic());
}

}  // namespace
}  // namespace idtune
