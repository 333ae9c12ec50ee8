// The Langevin family (spec §6, §7): the chain against the exact Gaussian recursion, Γ_rew and
// Γ_ref against finite differences of quadratures of E_π[R] and KL(p_ref ‖ π_θ) (both signs),
// short seeded runs that must move the reward and θ the right way, the strict config and the
// `idtune langevin` command.

#include "idtune/core/json_reader.h"
#include "idtune/langevin/chain.h"
#include "idtune/langevin/config.h"
#include "idtune/langevin/gaussian_mixture.h"
#include "idtune/langevin/gradient.h"
#include "idtune/langevin/trainer.h"
#include "idtune/run/langevin_run.h"
#include "test_helpers.h"

#include <gtest/gtest.h>
#include <torch/script.h>
#include <torch/torch.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>

namespace idtune {
namespace {

const auto kF64 = torch::dtype(torch::kFloat64);

// Monte Carlo tolerances: n exact samples give a standard error of about sd/√n.
constexpr double kMeanSigmas = 5.0;             // chain mean within 5 standard errors
constexpr double kVarianceRelTolerance = 0.04;  // sample variance of 20000 particles
constexpr double kGradientRelTolerance = 0.04;  // Γ from 400000 exact samples vs quadrature
constexpr double kClosedFormTolerance = 1e-10;  // closed form vs autograd, float64

/// A small mixture in R²: three wells, unit or given covariances.
at::Tensor three_means() { return torch::tensor({{2.0, 0.0}, {-1.0, 1.7}, {-1.0, -1.7}}, kF64); }
at::Tensor three_covariances() {
  return torch::tensor(
      {{{1.0, 0.3}, {0.3, 0.6}}, {{0.8, 0.0}, {0.0, 1.2}}, {{1.0, -0.4}, {-0.4, 0.9}}}, kF64);
}

GaussianMixture small_mixture(MixtureParameters parameters) {
  return GaussianMixture({three_means(), three_covariances(), parameters});
}

/// Cell centres of a uniform grid on [−L, L]² (none on x₁ = 0: the indicator integrates
/// exactly cell by cell) and the cell area.
std::pair<at::Tensor, double> grid(double half_width, int64_t cells) {
  const double h = 2 * half_width / double(cells);
  const auto axis = torch::arange(cells, kF64) * h - half_width + h / 2;
  const auto mesh = torch::meshgrid({axis, axis}, "ij");
  return {torch::stack({mesh[0].flatten(), mesh[1].flatten()}, 1), h * h};
}

/// Central finite differences of a scalar function of θ.
at::Tensor finite_difference(const std::function<double(const at::Tensor&)>& f,
                             const at::Tensor& theta, double step) {
  auto gradient = torch::zeros_like(theta);
  for (int64_t i = 0; i < theta.size(0); ++i) {
    auto plus = theta.clone(), minus = theta.clone();
    plus[i] += step;
    minus[i] -= step;
    gradient[i] = (f(plus) - f(minus)) / (2 * step);
  }
  return gradient;
}

double relative_norm_error(const at::Tensor& a, const at::Tensor& b) {
  return (a - b).norm().item<double>() / b.norm().item<double>();
}

PointReward indicator_reward() {
  GatedGaussianRewardOptions o;
  o.center = {1.5, 1.0};
  o.tau = 4.0;
  o.alpha = 1.0;
  return gated_gaussian_reward(o);
}

// ---- the chain -------------------------------------------------------------------------------

TEST(LangevinChain, GaussianPotentialMatchesTheExactMeanAndVariance) {
  // V = ½‖x − θ‖² as a user TorchScript potential: X_{k+1} = (1−γ)X_k + γθ + √(2γ)ξ, so
  // m_k = θ + (1−γ)^k (m₀ − θ), v_{k+1} = (1−γ)² v_k + 2γ → 1/(1 − γ/2) (spec §7).
  torch::jit::Module module("Quadratic");
  module.define("def forward(self, x, theta):\n    return 0.5 * ((x - theta) ** 2).sum(1)\n");
  const TorchScriptPotential potential(module, "quadratic", 2, 2, torch::kCPU, torch::kFloat64);
  const auto theta = torch::tensor({1.0, -2.0}, kF64);
  const double gamma = 0.2;
  const int64_t n = 20000;
  LangevinChain chain(n, 2, gamma, /*seed=*/7, kF64);
  double variance = 1.0;
  for (int64_t k = 1; k <= 60; ++k) {
    chain.advance(potential.grad_x(chain.particles(), theta));
    variance = (1 - gamma) * (1 - gamma) * variance + 2 * gamma;
    const auto exact_mean = theta * (1 - std::pow(1 - gamma, double(k)));  // m₀ = 0
    const double mean_error = (chain.particles().mean(0) - exact_mean).abs().max().item<double>();
    ASSERT_LT(mean_error, kMeanSigmas * std::sqrt(variance / n))
        << "step " << k << ": mean " << chain.particles().mean(0) << " vs " << exact_mean;
    const auto sample_variance = chain.particles().var(0);
    ASSERT_LT((sample_variance / variance - 1).abs().max().item<double>(), kVarianceRelTolerance)
        << "step " << k << ": variance " << sample_variance << " vs " << variance;
  }
  EXPECT_NEAR(variance, 1 / (1 - gamma / 2), 1e-9);  // the recursion's limit
}

// ---- the mixture -----------------------------------------------------------------------------

TEST(LangevinMixture, ClosedFormGradientsMatchAutogradAndTheDensityIsNormalised) {
  for (auto parameters : {MixtureParameters::Logits, MixtureParameters::Full}) {
    const auto mixture = small_mixture(parameters);
    const auto theta = mixture.pack(torch::tensor({0.3, -0.5, 1.0}, kF64));
    torch::manual_seed(0);
    const auto x = torch::randn({50, 2}, kF64) * 2;
    const auto w = torch::randn({50}, kF64);
    EXPECT_LT(relative_norm_error(mixture.grad_x(x, theta), mixture.Potential::grad_x(x, theta)),
              kClosedFormTolerance);
    EXPECT_LT(relative_norm_error(mixture.weighted_grad_theta(x, theta, w),
                                  mixture.Potential::weighted_grad_theta(x, theta, w)),
              kClosedFormTolerance);
    const auto [points, area] = grid(9.0, 300);
    EXPECT_NEAR(mixture.log_likelihood(points, theta).exp().sum().item<double>() * area, 1.0, 1e-6);
    // pack() round trip: the canonical form gives back the covariances.
    if (parameters == MixtureParameters::Full) {
      EXPECT_TRUE(torch::allclose(mixture.canonical(theta).slice(0, 9).view({3, 2, 2}),
                                  three_covariances(), 1e-12, 1e-12));
    }
  }
}

// ---- Γ against quadrature --------------------------------------------------------------------

TEST(LangevinGradient, RewardGradientIsMinusTheDerivativeOfTheMeanReward) {
  // ∇θ E_π[R] = −Cov_π[R, ∇θV]: Γ_rew from exact samples vs central differences of E_π[R] by
  // quadrature, with an indicator reward (never differentiated). Descending Γ raises E_π[R].
  const auto reward = indicator_reward();
  const auto points = grid(9.0, 360).first;  // not a structured binding: a lambda captures it
  const auto rewards_on_grid = reward(points);
  for (auto parameters : {MixtureParameters::Logits, MixtureParameters::Full}) {
    const auto mixture = small_mixture(parameters);
    const auto theta = mixture.pack(torch::tensor({0.3, -0.5, 1.0}, kF64));
    const auto mean_reward = [&](const at::Tensor& th) {
      const auto p = mixture.log_likelihood(points, th).exp();
      return ((rewards_on_grid * p).sum() / p.sum()).item<double>();
    };
    const auto expected = -finite_difference(mean_reward, theta, 1e-5);
    const auto x = mixture.sample(400000, theta, Noise(11), 0, 0);
    const auto gamma = reward_gradient(mixture, x, theta, reward(x));
    const double error = relative_norm_error(gamma, expected);
    EXPECT_LT(error, kGradientRelTolerance) << name_of(parameters, mixture_parameter_names())
                                            << ": Γ_rew = " << gamma << "\n−∇E[R] = " << expected;
    const auto descended = theta - 0.05 * gamma / gamma.norm();
    EXPECT_GT(mean_reward(descended), mean_reward(theta));
  }
}

TEST(LangevinGradient, ReferenceGradientIsTheDerivativeOfTheKl) {
  // ∇θ KL(p_ref ‖ π_θ) = E_ref[∇θV] − E_π[∇θV]: Γ_ref from exact samples of both vs central
  // differences of the KL by quadrature. Descending Γ_ref lowers the KL.
  const auto quadrature = grid(10.0, 360);  // no structured binding: C++17 lambdas can't
  const auto& points = quadrature.first;    // capture one (clang refuses it)
  const double area = quadrature.second;
  for (auto parameters : {MixtureParameters::Logits, MixtureParameters::Full}) {
    const auto mixture = small_mixture(parameters);
    const auto theta = mixture.pack(torch::tensor({0.3, -0.5, 1.0}, kF64));
    const auto target = mixture.pack(torch::tensor({-0.4, 0.6, 0.0}, kF64), three_means() + 0.5,
                                     three_covariances() * 1.3);
    const auto log_ref = mixture.log_likelihood(points, target);
    const auto kl = [&](const at::Tensor& th) {
      return (log_ref.exp() * (log_ref - mixture.log_likelihood(points, th))).sum().item<double>() *
             area;
    };
    const auto expected = finite_difference(kl, theta, 1e-5);
    const auto x = mixture.sample(400000, theta, Noise(12), 0, 0);
    const auto reference = mixture.sample(400000, target, Noise(13), 0, 0);
    const auto gamma = reference_gradient(mixture, x, theta, reference);
    EXPECT_LT(relative_norm_error(gamma, expected), kGradientRelTolerance)
        << name_of(parameters, mixture_parameter_names()) << ": Γ_ref = " << gamma
        << "\n∇KL = " << expected;
    EXPECT_LT(kl(theta - 0.05 * gamma / gamma.norm()), kl(theta));
  }
}

// ---- short runs ------------------------------------------------------------------------------

/// The hexagon experiment (App. C.1.1) scaled down: 300 particles.
LangevinProblem hexagon_problem() {
  std::vector<at::Tensor> means;
  for (int i = 0; i < 6; ++i)
    means.push_back(4 * torch::tensor({std::cos(i * M_PI / 3), std::sin(i * M_PI / 3)}, kF64));
  auto mixture = std::make_shared<GaussianMixture>(GaussianMixtureOptions{torch::stack(means), {}});
  return {mixture,
          torch::tensor({1.5, 0.0, 1.5, 0.0, 1.5, 0.0}, kF64),
          gated_gaussian_reward({}),
          nullptr,
          {},
          {}};
}

/// Mean reward over the last `window` of `steps` outer steps.
double final_reward(LangevinTrainer& trainer, int64_t steps, int64_t window) {
  double sum = 0;
  for (int64_t k = 0; k < steps; ++k) {
    const auto report = trainer.step();
    if (k >= steps - window) sum += report.reward_mean;
  }
  return sum / double(window);
}

TEST(LangevinTrainer, ImplicitDiffusionRaisesTheHexagonReward) {
  LangevinTrainerOptions o;
  o.particles = 300;
  o.lr = 1.0;
  o.seed = 3;
  o.method = LangevinMethod::Fixed;
  LangevinTrainer fixed(o, hexagon_problem());
  o.method = LangevinMethod::Implicit;
  LangevinTrainer implicit(o, hexagon_problem());
  const double baseline = final_reward(fixed, 400, 100);
  const double tuned = final_reward(implicit, 400, 100);
  EXPECT_GT(tuned, baseline + 0.05) << "Langevin θ₀: " << baseline << ", implicit: " << tuned;
  // The well nearest the reward's centre (μ₁ = 4(cos 60°, sin 60°)) gains weight.
  const auto w = torch::softmax(implicit.theta(), 0);
  EXPECT_GT(w[1].item<double>(), 0.3) << w;
}

TEST(LangevinTrainer, NestedWithOneInnerStepIsImplicitDiffusion) {
  LangevinTrainerOptions o;
  o.particles = 100;
  LangevinTrainer implicit(o, hexagon_problem());
  o.method = LangevinMethod::Nested;
  LangevinTrainer nested(o, hexagon_problem());
  for (int k = 0; k < 20; ++k) {
    implicit.step();
    nested.step();
  }
  EXPECT_TRUE(torch::equal(implicit.theta(), nested.theta()));
}

TEST(LangevinTrainer, KlRunMovesThetaTowardsTheTarget) {
  // F = KL(p_ref ‖ π_θ) with p_ref = π*(θ*) of the same mixture: the weights approach θ*'s
  // (up to the chain's O(γ) bias and the noise of 1000 particles).
  auto mixture = std::make_shared<GaussianMixture>(small_mixture(MixtureParameters::Logits));
  const auto target = torch::tensor({1.0, -1.0, 0.0}, kF64);
  LangevinProblem problem{mixture, torch::zeros({3}, kF64),
                          {},      std::make_shared<MixtureReference>(mixture, target, 1000, 5),
                          {},      {}};
  LangevinTrainerOptions o;
  o.particles = 1000;
  o.gamma = 0.1;
  o.objective = {0.0, 1.0};
  o.lr = 0.2;
  LangevinTrainer trainer(o, problem);
  const auto distance = [&] {
    const auto w = mixture->weights(trainer.theta().detach());
    return (w - mixture->weights(target)).norm().item<double>();
  };
  const double before = distance();
  double late = 0;  // mean distance over the last 100 of 600 steps
  for (int k = 0; k < 600; ++k) {
    trainer.step();
    if (k >= 500) late += distance() / 100;
  }
  EXPECT_LT(late, 0.25 * before) << "weights " << mixture->weights(trainer.theta().detach())
                                 << " target " << mixture->weights(target);
}

// ---- config and command line -----------------------------------------------------------------

nlohmann::json hexagon_config(const std::string& run_dir) {
  nlohmann::json means = nlohmann::json::array();
  for (int i = 0; i < 6; ++i)
    means.push_back({4 * std::cos(i * M_PI / 3), 4 * std::sin(i * M_PI / 3)});
  return {{"steps", 20},
          {"potential", {{"means", means}, {"logits", {1.5, 0, 1.5, 0, 1.5, 0}}}},
          {"reward", {{"kind", "gated-gaussian"}}},
          {"sampler", {{"particles", 50}}},
          {"output", {{"run_dir", run_dir}, {"log_every", 10}}}};
}

TEST(LangevinConfig, UnknownKeysAndBadNamesAreRejectedWithTheirJsonPath) {
  auto config = hexagon_config("unused");
  config["potential"]["meens"] = 1;
  testing::expect_error([&] { parse_langevin_config(config, "hex.json"); },
                        {"hex.json: /potential/meens", "unknown key"});
  config = hexagon_config("unused");
  config["algorithm"] = {{"method", "nestd"}};
  testing::expect_error([&] { parse_langevin_config(config, "hex.json"); },
                        {"/algorithm/method", "nestd", "implicit, nested, unrolled"});
  // Rules the trainer owns are checked once, when the run builds it, with the file and path.
  config = hexagon_config("unused");
  config["objective"] = {{"beta", 1.0}};
  testing::expect_error([&] { LangevinRun run(parse_langevin_config(config, "hex.json")); },
                        {"hex.json: /objective/beta = 1", "needs reference samples"});
  config = hexagon_config("unused");
  config["algorithm"] = {{"inner_steps", 10}};
  testing::expect_error([&] { LangevinRun run(parse_langevin_config(config, "hex.json")); },
                        {"hex.json: /algorithm/inner_steps = 10", "nested and unrolled"});
  config = hexagon_config("unused");
  config["sampler"]["gamma"] = -0.1;
  testing::expect_error([&] { LangevinRun run(parse_langevin_config(config, "hex.json")); },
                        {"hex.json: /sampler/gamma = -0.1", "must be > 0"});
  const auto parsed = parse_langevin_config(hexagon_config("unused"), "hex.json");
  EXPECT_EQ(to_json(parse_langevin_config(to_json(parsed), "resolved")), to_json(parsed));
}

TEST(LangevinCli, ShortKlRunWritesTheRunDirectory) {
  testing::TempDir dir;
  // A reference from a CSV file of samples (KL) alongside the reward.
  {
    std::ofstream csv(dir.file("ref.csv"));
    csv << "# x1, x2\n4, 0\n2, 3.46\n-2, 3.46\n";
  }
  auto config = hexagon_config(dir.file("run"));
  config["reference"] = {{"kind", "file"}, {"file", dir.file("ref.csv")}, {"batch", 0}};
  config["objective"] = {{"lambda", 1.0}, {"beta", 0.5}};
  write_json_file(dir.file("hex.json"), config);
  const auto [status, output] =
      testing::run(std::string(IDTUNE_EXECUTABLE) + " langevin --config " + dir.file("hex.json") +
                   " --set algorithm.method=nested --set steps=12 "
                   "--set algorithm.inner_steps=3");
  ASSERT_EQ(status, 0) << output;
  for (const auto* f : {"config.json", "metrics.jsonl", "theta.json", "particles.csv"})
    EXPECT_TRUE(std::filesystem::exists(dir.file("run/") + f)) << f;
  EXPECT_EQ(read_json_file(dir.file("run/config.json"))["algorithm"]["method"], "nested");
  std::ifstream metrics(dir.file("run/metrics.jsonl"));
  std::vector<nlohmann::json> lines;
  for (std::string line; std::getline(metrics, line);) lines.push_back(nlohmann::json::parse(line));
  ASSERT_EQ(lines.size(), 12u);
  EXPECT_EQ(lines.back()["sampling_steps"], 36);  // T = 3 per outer step
  for (const auto* key : {"reward_mean", "log_likelihood_ref", "weights", "theta", "grad_norm"})
    EXPECT_TRUE(lines.back().contains(key)) << key;

  config["reward"]["gaet"] = "sigmoid";
  write_json_file(dir.file("bad.json"), config);
  const auto [bad_status, bad_output] =
      testing::run(std::string(IDTUNE_EXECUTABLE) + " langevin --config " + dir.file("bad.json"));
  EXPECT_NE(bad_status, 0);
  EXPECT_NE(bad_output.find("/reward/gaet"), std::string::npos) << bad_output;
}

}  // namespace
}  // namespace idtune
