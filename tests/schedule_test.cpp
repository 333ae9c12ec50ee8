// Schedules against closed forms, and the ddpm / ddim chain steps against the exact
// posterior of a point-mass data distribution.

#include "idtune/diffusion/schedule.h"
#include "idtune/core/error.h"
#include "idtune/diffusion/sampler.h"
#include "idtune/diffusion/toy_models.h"
#include "test_helpers.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

namespace idtune {
namespace {

constexpr double kClosedFormTolerance = 1e-12;
// Central differences with step 1e-6 in float64: truncation ~1e-12 |d³/dt³ log ᾱ|, rounding
// ~1e-10; relative to max(1, β).
constexpr double kFiniteDifferenceStep = 1e-6;
constexpr double kFiniteDifferenceTolerance = 1e-7;

ScheduleOptions continuous(ScheduleKind kind) {
  ScheduleOptions o;
  o.kind = kind;
  return o;
}

TEST(Schedules, BetaIsMinusDerivativeOfLogAlphaBar) {
  for (auto kind : {ScheduleKind::Ou, ScheduleKind::VpLinear, ScheduleKind::Cosine}) {
    Schedule s(continuous(kind));
    for (double t : {0.05, 0.3, 0.7, 0.95}) {
      const double eps = kFiniteDifferenceStep;
      const double fd =
          -(std::log(s.alpha_bar(t + eps)) - std::log(s.alpha_bar(t - eps))) / (2 * eps);
      EXPECT_NEAR(s.beta(t), fd, kFiniteDifferenceTolerance * std::max(1.0, fd))
          << name_of(kind, schedule_names()) << " t = " << t;
    }
    EXPECT_NEAR(s.alpha_bar(0.0), 1.0, kClosedFormTolerance) << name_of(kind, schedule_names());
  }
}

TEST(Schedules, ClosedForms) {
  Schedule ou(continuous(ScheduleKind::Ou)), vp(continuous(ScheduleKind::VpLinear));
  EXPECT_NEAR(ou.alpha_bar(0.4), std::exp(-0.8), kClosedFormTolerance);
  EXPECT_NEAR(ou.beta(0.4), 2.0, kClosedFormTolerance);
  // vp-linear at t = 1: exp(−β_min − ½(β_max − β_min)) = exp(−10.05).
  EXPECT_NEAR(vp.alpha_bar(1.0), std::exp(-10.05), kClosedFormTolerance);
  auto t = torch::rand({10}, torch::kFloat64);
  for (const Schedule* s : {&ou, &vp}) {
    auto unit = s->alpha(t).pow(2) + s->sigma(t).pow(2);
    EXPECT_LT((unit - 1).abs().max().item<double>(), kClosedFormTolerance);
  }
}

TEST(Schedules, DdpmDiscreteIsCumulativeProductOfOneMinusBeta) {
  ScheduleOptions o;
  o.kind = ScheduleKind::DdpmDiscrete;
  o.betas = {0.1, 0.2, 0.3, 0.4};
  Schedule s(o);
  double product = 1;
  for (int i = 0; i < 4; ++i) {
    product *= 1 - o.betas[i];
    EXPECT_NEAR(s.alpha_bar(double(i)), product, kClosedFormTolerance);
  }
  EXPECT_EQ(s.t_max(), 3.0);
  EXPECT_THROW(s.beta(1.0), Error);
  o.betas = {0.1, 1.5};
  EXPECT_THROW(Schedule{o}, Error);
}

/// For data concentrated at x₀, the exact score at time t is s(x) = −(x − α x₀)/σ².
/// A DDIM step from x_t = α x₀ + σ ε must land exactly on α' x₀ + σ' ε, and a DDPM step's mean
/// is the posterior mean of q(x_{t'} | x_t, x₀).
class PointMassScore {
 public:
  PointMassScore(const Schedule& s, double x0) : schedule_(s), x0_(x0) {}
  at::Tensor operator()(const at::Tensor& x, double t) const {
    const double abar = schedule_.alpha_bar(t);
    return -(x - std::sqrt(abar) * x0_) / (1 - abar);
  }

 private:
  const Schedule& schedule_;
  double x0_;
};

/// A tiny model on a linear ddpm-discrete schedule of N steps (the samplers use only its
/// schedule, device and dtype).
ScoreModel discrete_model(int64_t num_train_steps) {
  TinyUNetOptions o;
  o.schedule.kind = ScheduleKind::DdpmDiscrete;
  o.schedule.num_train_steps = num_train_steps;
  o.size = 4;
  o.width = 4;
  return make_tiny_unet(o);
}

TEST(ChainSteps, DdimAndDdpmAreExactForAPointMass) {
  auto model = discrete_model(100);
  const Schedule& schedule = model.schedule();
  const double x0 = 0.7;
  PointMassScore score(schedule, x0);
  Sampler ddim({SamplerKind::Ddim, 10}, model), ddpm({SamplerKind::Ddpm, 10}, model);
  const auto eps = torch::randn({6}, torch::kFloat64);
  for (int64_t k = 0; k < 10; ++k) {
    const double t = ddim.coefficients(k).tau,
                 t_next = k + 1 < 10 ? ddim.coefficients(k + 1).tau : 0.0;
    const double abar = schedule.alpha_bar(t), abar_next = schedule.alpha_bar(t_next);
    const auto x = std::sqrt(abar) * x0 + std::sqrt(1 - abar) * eps;
    const auto& d = ddim.coefficients(k);
    const auto ddim_next = d.a * x + d.b * score(x, t);
    const auto expected = std::sqrt(abar_next) * x0 + std::sqrt(1 - abar_next) * eps;
    EXPECT_LT((ddim_next - expected).abs().max().item<double>(), 1e-10) << "k = " << k;

    const double b = 1 - abar / abar_next;  // respaced β
    const auto posterior_mean = std::sqrt(abar_next) * b / (1 - abar) * x0 +
                                std::sqrt(1 - b) * (1 - abar_next) / (1 - abar) * x;
    const auto& p = ddpm.coefficients(k);
    EXPECT_LT((p.a * x + p.b * score(x, t) - posterior_mean).abs().max().item<double>(), 1e-10);
    EXPECT_NEAR(p.sigma * p.sigma, b * (1 - abar_next) / (1 - abar), kClosedFormTolerance);
  }
}

TEST(ChainSteps, QuadraticSpacingTakesShrinkingStepsTowardsTheData) {
  auto model = make_ou_gaussian_model({});
  SamplerOptions o{SamplerKind::SdeEuler, 10, 1e-3};
  o.spacing = TimeSpacing::Quadratic;
  Sampler sampler(o, model);
  EXPECT_NEAR(sampler.coefficients(0).tau, 1.0, kClosedFormTolerance);
  for (int64_t k = 0; k < 10; ++k) {
    const double u = 1.0 - k / 10.0;  // τ_k = t_min + (t_max − t_min)(1 − k/K)²
    EXPECT_NEAR(sampler.coefficients(k).tau, 1e-3 + (1 - 1e-3) * u * u, kClosedFormTolerance);
    if (k > 0) {
      EXPECT_LT(sampler.coefficients(k).sigma,
                sampler.coefficients(k - 1).sigma);  // σ_k = √(2 h_k)
    }
  }
}

TEST(ChainSteps, RespacedGridRunsFromLastTrainingStepToZero) {
  auto model = discrete_model(1000);
  Sampler sampler({SamplerKind::Ddpm, 10}, model);
  EXPECT_EQ(sampler.coefficients(0).tau, 999.0);
  for (int64_t k = 1; k < 10; ++k)
    EXPECT_LT(sampler.coefficients(k).tau, sampler.coefficients(k - 1).tau);
  EXPECT_TRUE(sampler.stochastic());
  EXPECT_THROW(Sampler({SamplerKind::Ddpm, 1000}, model), Error);  // more steps than N − 1
  testing::expect_error(
      [&] {
        Sampler({SamplerKind::SdeEuler, 10}, model);
      },
      {"sampler.kind = sde-euler", "use sampler ddpm or ddim"});
}

}  // namespace
}  // namespace idtune
