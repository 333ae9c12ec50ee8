// Spec §4: the discrete adjoint's gradient equals autograd through the unrolled sampler
// (same noise) to floating-point precision, for every sampler, with β = 0 and β > 0, on the
// analytic 1-D model and a tiny TorchScript U-Net. And Algorithm 4's reverse-ODE variant
// approaches it as K grows.

#include "idtune/diffusion/adjoint.h"
#include "idtune/diffusion/backprop_through_sampler.h"
#include "idtune/diffusion/sampling.h"
#include "idtune/diffusion/toy_models.h"
#include "test_helpers.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

namespace idtune {
namespace {

// float64 throughout; the two routes differ only by summation order.
constexpr double kAdjointTolerance = 1e-10;
constexpr int64_t kBatch = 3, kSteps = 5;
constexpr uint64_t kSeed = 11, kStream = 4;

enum class ModelKind { AnalyticOu, TinyUNet };

struct Case {
  SamplerKind sampler;
  double beta;
  ModelKind model;
};

/// How CTest and failure messages show a case.
void PrintTo(const Case& c, std::ostream* os) {
  *os << name_of(c.sampler, sampler_names()) << ", beta " << c.beta
      << (c.model == ModelKind::TinyUNet ? ", tiny U-Net" : ", analytic 1-D model");
}

std::string case_name(const ::testing::TestParamInfo<Case>& info) {
  std::string name = name_of(info.param.sampler, sampler_names()) +
                     (info.param.beta > 0 ? "_kl" : "_nokl") +
                     (info.param.model == ModelKind::TinyUNet ? "_unet" : "_analytic");
  std::replace(name.begin(), name.end(), '-', '_');
  return name;
}

ScoreModel make_model(const Case& c, uint64_t seed) {
  if (c.model == ModelKind::AnalyticOu) return make_ou_gaussian_model({0.4, 1.1, 1.0});
  TinyUNetOptions o;
  o.seed = seed;
  o.size = 4;
  o.width = 4;
  // DDPM and DDIM run on the discrete schedule they were made for (integer time input).
  const bool discrete = c.sampler == SamplerKind::Ddpm || c.sampler == SamplerKind::Ddim;
  o.schedule.kind = discrete ? ScheduleKind::DdpmDiscrete : ScheduleKind::VpLinear;
  o.schedule.num_train_steps = 50;
  return make_tiny_unet(o);
}

/// A smooth, non-linear reward, so that a_K varies with Y_K.
at::Tensor reward(const at::Tensor& x) {
  return torch::sin(2 * x).flatten(1).sum(1) - x.pow(2).flatten(1).mean(1);
}

class AdjointMatchesAutograd : public ::testing::TestWithParam<Case> {};

TEST_P(AdjointMatchesAutograd, GradientAndKl) {
  const Case c = GetParam();
  auto model = make_model(c, 1);
  // The reference differs from θ (another initialisation / other constants), so the KL and
  // its gradient are not zero.
  auto reference = c.model == ModelKind::AnalyticOu ? make_ou_gaussian_model({-0.3, 0.9, 1.0})
                                                    : make_model(c, 2).frozen_copy();
  Sampler sampler({c.sampler, kSteps, 1e-2}, model);
  const auto params = model.trainable_parameters();
  Noise noise(kSeed);
  const auto y0 = initial_state(model, kBatch, noise, kStream);
  const double lambda = 1.3;

  auto path = sample_path(sampler, model, y0, noise, kStream);
  auto adjoint =
      AdjointSolver(sampler, {lambda, c.beta}).gradient({model, params, &reference}, path, reward);

  auto unrolled = unrolled_objective(sampler, {model, params, &reference}, y0, {noise, kStream},
                                     reward, {{lambda, c.beta}});
  auto autograd = torch::autograd::grad({unrolled.objective.mean()}, params);

  const double error = testing::relative_error(adjoint.grad, autograd);
  EXPECT_LT(error, kAdjointTolerance) << "relative error " << error;
  EXPECT_LT(testing::relative_error({adjoint.reward, adjoint.kl}, {unrolled.reward, unrolled.kl}),
            kAdjointTolerance);
  if (c.beta > 0) {
    EXPECT_GT(adjoint.kl.min().item<double>(), 0.0);
  }
  double norm = 0;
  for (const auto& g : autograd) norm += g.pow(2).sum().item<double>();
  EXPECT_GT(norm, 1e-8);  // the comparison is not vacuous
}

std::vector<Case> all_cases() {
  std::vector<Case> cases;
  for (auto model : {ModelKind::AnalyticOu, ModelKind::TinyUNet})
    for (auto sampler :
         {SamplerKind::SdeEuler, SamplerKind::OdeEuler, SamplerKind::Ddpm, SamplerKind::Ddim}) {
      // The analytic model has the ou schedule: every sampler runs on it.
      cases.push_back({sampler, 0.0, model});
      if (sampler == SamplerKind::SdeEuler || sampler == SamplerKind::Ddpm)
        cases.push_back({sampler, 0.7, model});
    }
  return cases;
}

INSTANTIATE_TEST_SUITE_P(EverySampler, AdjointMatchesAutograd, ::testing::ValuesIn(all_cases()),
                         case_name);

TEST(TruncatedBackprop, LastStepOnlyEqualsOneAdjointStep) {
  // DRaFT-1: the gradient through the last step alone is the adjoint's k = K−1 term.
  auto model = make_ou_gaussian_model({0.4, 1.1, 1.0});
  Sampler sampler({SamplerKind::SdeEuler, kSteps, 1e-2}, model);
  const auto params = model.trainable_parameters();
  Noise noise(kSeed);
  const auto y0 = initial_state(model, kBatch, noise, kStream);
  auto path = sample_path(sampler, model, y0, noise, kStream);
  AdjointSolver solver(sampler, {1.0, 0.0});
  auto terminal = evaluate_terminal_reward(reward, path.final_state(), 1.0);
  auto last = solver.step({model, params}, path.states[kSteps - 1], terminal.cotangent,
                          sampler.indices(kBatch, kSteps - 1));
  for (auto& g : last.grad) g.div_(kBatch);
  auto unrolled =
      unrolled_objective(sampler, {model, params}, y0, {noise, kStream}, reward, {{1.0, 0.0}, 1});
  auto autograd = torch::autograd::grad({unrolled.objective.mean()}, params);
  EXPECT_LT(testing::relative_error(last.grad, autograd), kAdjointTolerance);
}

// Algorithm 4 reconstructs the states by running the ODE chain backwards: its error is the
// Euler step's, O(1/K).
TEST(ReverseOdeAdjoint, ApproachesExactAdjointAsStepsGrow) {
  auto model = make_ou_gaussian_model({0.8, 1.0, 1.0});
  const auto params = model.trainable_parameters();
  Noise noise(kSeed);
  const auto y0 = initial_state(model, 16, noise, 0);
  for (auto kind : {SamplerKind::OdeEuler, SamplerKind::Ddim}) {
    std::vector<double> errors;
    for (int64_t K : {10, 100, 1000}) {
      Sampler sampler({kind, K, 1e-2}, model);
      AdjointSolver solver(sampler, {1.0, 0.0});
      auto path = sample_path(sampler, model, y0, noise, 0);
      auto exact = solver.gradient({model, params}, path, reward);
      auto approx = solver.gradient_reverse_ode({model, params}, path.final_state(), reward);
      errors.push_back(testing::relative_error(approx.grad, exact.grad));
    }
    EXPECT_LT(errors[1], errors[0] / 5) << name_of(kind, sampler_names());
    EXPECT_LT(errors[2], errors[1] / 5) << name_of(kind, sampler_names());
    EXPECT_LT(errors[2], 1e-2) << name_of(kind, sampler_names());
  }
}

}  // namespace
}  // namespace idtune
