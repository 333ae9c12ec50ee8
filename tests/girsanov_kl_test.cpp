// Spec §3: the Girsanov path KL accumulated along sampled paths equals the closed-form KL
// between the two Gaussian chains' joint laws of (Y_0, …, Y_K).

#include "analytic_problems.h"
#include "idtune/core/error.h"
#include "idtune/diffusion/adjoint.h"
#include "idtune/diffusion/sampling.h"
#include "idtune/diffusion/toy_models.h"
#include "test_helpers.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

namespace idtune {
namespace {

using testing::LinearGaussianStep;

/// Mean vector and covariance matrix of (Y_0, …, Y_K) for Y_0 ∼ N(0, 1),
/// Y_{k+1} = A_k Y_k + C_k + σ_k ξ_k.
std::pair<at::Tensor, at::Tensor> joint_law(const std::vector<LinearGaussianStep>& steps) {
  const int64_t n = static_cast<int64_t>(steps.size()) + 1;
  auto mean = torch::zeros({n}, torch::kFloat64), cov = torch::zeros({n, n}, torch::kFloat64);
  cov[0][0] = 1.0;
  for (int64_t k = 0; k + 1 < n; ++k) {
    const auto& s = steps[k];
    mean[k + 1] = s.A * mean[k] + s.C;
    cov.index_put_({k + 1, torch::indexing::Slice(0, k + 1)},
                   s.A * cov.index({k, torch::indexing::Slice(0, k + 1)}));
    cov.index_put_({torch::indexing::Slice(0, k + 1), k + 1},
                   cov.index({k + 1, torch::indexing::Slice(0, k + 1)}));
    cov[k + 1][k + 1] = s.A * s.A * cov[k][k] + s.variance;
  }
  return {mean, cov};
}

/// KL(N(μ_p, Σ_p) ‖ N(μ_q, Σ_q)) = ½[tr(Σ_q⁻¹Σ_p) + Δᵀ Σ_q⁻¹ Δ − n + log det Σ_q − log det Σ_p].
double gaussian_kl(const std::pair<at::Tensor, at::Tensor>& p,
                   const std::pair<at::Tensor, at::Tensor>& q) {
  const auto q_inv = torch::inverse(q.second);
  const auto delta = q.first - p.first;
  const double n = static_cast<double>(p.first.size(0));
  return 0.5 * (torch::trace(q_inv.mm(p.second)).item<double>() +
                delta.dot(q_inv.mv(delta)).item<double>() - n +
                torch::logdet(q.second).item<double>() - torch::logdet(p.second).item<double>());
}

constexpr double kTMax = 1.0, kTMin = 1e-2;
constexpr int64_t kSteps = 8, kSamples = 400000;
constexpr double kStandardErrors = 5.0;
// Two computations of the same float64 arithmetic in a different order.
constexpr double kSameArithmeticTolerance = 1e-12;

TEST(GirsanovKl, MatchesClosedFormKlBetweenGaussianChains) {
  // θ and κ both differ, so m_θ − m_ref depends on y and c_k is random along the path.
  const double theta = 1.2, kappa = 1.4, theta_ref = 0.3, kappa_ref = 1.0;
  const auto closed_form = gaussian_kl(
      joint_law(testing::ou_euler_chain(theta, kappa, kTMax, kTMin, kSteps, true)),
      joint_law(testing::ou_euler_chain(theta_ref, kappa_ref, kTMax, kTMin, kSteps, true)));

  auto model = make_ou_gaussian_model({theta, kappa, kTMax});
  auto reference = make_ou_gaussian_model({theta_ref, kappa_ref, kTMax});
  Sampler sampler({SamplerKind::SdeEuler, kSteps, kTMin}, model);
  AdjointSolver solver(sampler, {1.0, 1.0});
  const auto params = model.trainable_parameters();
  Noise noise(7);
  const auto y0 = initial_state(model, kSamples, noise, 0);
  auto path = sample_path(sampler, model, y0, noise, 0);
  auto zero_reward = [](const at::Tensor& x) { return x.flatten(1).sum(1) * 0; };
  auto result = solver.gradient({model, params, &reference}, path, zero_reward);

  const double estimate = result.kl.mean().item<double>();
  const double tolerance = kStandardErrors * result.kl.std().item<double>() / std::sqrt(kSamples);
  EXPECT_NEAR(estimate, closed_form, tolerance)
      << "Girsanov estimate " << estimate << " vs closed form " << closed_form;
  EXPECT_GT(closed_form, 0.05);  // the check is not vacuous

  // The sampling loop's own estimate (idtune eval) walks the same path with the same noise.
  const auto sampled = sample_with_path_kl(sampler, model, reference, y0, {noise, 0});
  EXPECT_LT(
      testing::relative_error({sampled.kl, sampled.final_state}, {result.kl, path.final_state()}),
      kSameArithmeticTolerance);
}

TEST(GirsanovKl, IsZeroForTheReferenceItself) {
  auto model = make_ou_gaussian_model({0.7, 1.0, kTMax});
  auto reference = model.frozen_copy();
  Sampler sampler({SamplerKind::SdeEuler, kSteps, kTMin}, model);
  Noise noise(1);
  auto path = sample_path(sampler, model, initial_state(model, 64, noise, 0), noise, 0);
  auto reward = [](const at::Tensor& x) { return x.flatten(1).sum(1); };
  const auto params = model.trainable_parameters();
  auto result =
      AdjointSolver(sampler, {1.0, 2.0}).gradient({model, params, &reference}, path, reward);
  EXPECT_EQ(result.kl.abs().max().item<double>(), 0.0);
}

TEST(GirsanovKl, RefusesBetaWithDeterministicSampler) {
  auto model = make_ou_gaussian_model({});
  for (auto kind : {SamplerKind::OdeEuler, SamplerKind::Ddim}) {
    Sampler sampler({kind, 4, kTMin}, model);
    testing::expect_error(
        [&] {
          AdjointSolver(sampler, {1.0, 0.1});
        },
        {"objective.beta = 0.1", "deterministic", "sde-euler or ddpm"});
  }
}

// Issue 13: classifier-free guidance keeps the chain Gaussian on the 1-D problem. With
// s(x, t, c) = −κ(x − θ_c e^{−t}), the guided score (1 + w)s(x, t, c) − w s(x, t, ∅) is
// −κ(x − θ_eff e^{−t}) with θ_eff = (1 + w)θ_c − wθ_∅: θ's guided chain against the
// reference's guided chain (same w) has the closed-form KL of two unconditional chains.
TEST(GirsanovKl, GuidedConditionalChainsMatchTheClosedForm) {
  const double kappa = 1.4, kappa_ref = 1.0, w = 2.0;  // κ differs: c_k depends on the path
  const std::vector<double> theta{1.2, -0.5, 0.3}, theta_ref{0.2, 0.4, -0.1};  // labels 0, 1, ∅
  const auto effective = [&](const std::vector<double>& th, int c) {
    return (1 + w) * th[c] - w * th[2];
  };
  auto model = make_ou_gaussian_model({0, kappa, kTMax, {c10::kCPU, c10::kDouble}, theta});
  auto reference =
      make_ou_gaussian_model({0, kappa_ref, kTMax, {c10::kCPU, c10::kDouble}, theta_ref});
  SamplerOptions options{SamplerKind::SdeEuler, kSteps, kTMin};
  options.guidance_scale = w;
  Sampler sampler(options, model);
  const int64_t half = kSamples / 2;
  // Half the batch class 0, half class 1: each half's KL has its own closed form.
  const auto labels =
      torch::cat({torch::zeros({half}, torch::kLong), torch::ones({half}, torch::kLong)});
  Noise noise(9);
  const auto y0 = initial_state(model, kSamples, noise, 0);
  const auto sampled = sample_with_path_kl(sampler, model, reference, y0, {noise, 0}, labels);
  for (int c : {0, 1}) {
    const double closed_form = gaussian_kl(
        joint_law(testing::ou_euler_chain(effective(theta, c), kappa, kTMax, kTMin, kSteps, true)),
        joint_law(testing::ou_euler_chain(effective(theta_ref, c), kappa_ref, kTMax, kTMin, kSteps,
                                          true)));
    const auto kl = sampled.kl.narrow(0, c * half, half);
    const double estimate = kl.mean().item<double>();
    const double tolerance = kStandardErrors * kl.std().item<double>() / std::sqrt(double(half));
    EXPECT_NEAR(estimate, closed_form, tolerance)
        << "class " << c << ": Girsanov " << estimate << " vs closed form " << closed_form;
    EXPECT_GT(closed_form, 0.05);
  }
  // And the path itself: each half's mean at the end is the guided chain's (θ_eff).
  for (int c : {0, 1}) {
    const auto moments = testing::chain_moments(
        testing::ou_euler_chain(effective(theta, c), kappa, kTMax, kTMin, kSteps, true));
    const auto end = sampled.final_state.narrow(0, c * half, half);
    EXPECT_NEAR(end.mean().item<double>(), moments.mean,
                kStandardErrors * std::sqrt(moments.variance / double(half)))
        << "class " << c;
  }
}

}  // namespace
}  // namespace idtune
