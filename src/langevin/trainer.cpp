#include "idtune/langevin/trainer.h"

#include "idtune/core/error.h"

#include <torch/torch.h>

#include <cmath>
#include <limits>

namespace idtune {

const NameTable<LangevinMethod>& langevin_method_names() {
  static const NameTable<LangevinMethod> table = {{"implicit", LangevinMethod::Implicit},
                                                  {"nested", LangevinMethod::Nested},
                                                  {"unrolled", LangevinMethod::Unrolled},
                                                  {"guidance", LangevinMethod::Guidance},
                                                  {"langevin", LangevinMethod::Fixed}};
  return table;
}

const NameTable<ThetaOptimiser>& theta_optimiser_names() {
  static const NameTable<ThetaOptimiser> table = {{"sgd", ThetaOptimiser::Sgd},
                                                  {"adam", ThetaOptimiser::Adam}};
  return table;
}

const NameTable<StepRule>& step_rule_names() {
  static const NameTable<StepRule> table = {{"constant", StepRule::Constant},
                                            {"inverse-sqrt", StepRule::InverseSqrt}};
  return table;
}

namespace {

// Particles beyond this are a diverged chain: every shipped potential lives within |x| < 100.
constexpr double kDivergedParticle = 1e8;

bool updates_theta(LangevinMethod m) {
  return m == LangevinMethod::Implicit || m == LangevinMethod::Nested ||
         m == LangevinMethod::Unrolled;
}

/// `p`, once checked against the options.
LangevinProblem validated(const LangevinTrainerOptions& o, LangevinProblem p) {
  const auto method = name_of(o.method, langevin_method_names());
  check(p.potential != nullptr, "Langevin trainer: no potential");
  check(p.theta0.defined() && p.theta0.dim() == 1 &&
            p.theta0.size(0) == p.potential->parameter_count(),
        "Langevin trainer: θ₀ must have ", p.potential->parameter_count(), " entries for ",
        p.potential->describe());
  check(!p.theta_pretrained.defined() || p.theta_pretrained.sizes() == p.theta0.sizes(),
        "Langevin trainer: the pretrained θ must have the shape of θ₀");
  check_option(o.inner_steps >= 1 && o.inner_steps <= 1000000, "algorithm.inner_steps",
               o.inner_steps, "must be in [1, 1000000]");
  check_option(o.inner_steps == 1 || o.method == LangevinMethod::Nested ||
                   o.method == LangevinMethod::Unrolled,
               "algorithm.inner_steps", o.inner_steps,
               "applies to the nested and unrolled methods only (method ", method,
               " takes one Langevin step per outer step)");
  check_option(std::isfinite(o.lr) && o.lr > 0, "optimiser.lr", o.lr, "must be > 0");
  for (double b : o.betas)
    check_option(b >= 0 && b < 1, "optimiser.betas", b, "must each be in [0, 1)");
  check_option(std::isfinite(o.eps) && o.eps > 0 && o.eps <= 1, "optimiser.eps", o.eps,
               "must be in (0, 1]");
  check_option(std::isfinite(o.guidance_weight) && o.guidance_weight >= 0,
               "algorithm.guidance_weight", o.guidance_weight, "must be >= 0");
  if (updates_theta(o.method)) {
    validate(o.objective);
    check_option(o.objective.lambda == 0 || p.reward, "objective.lambda", o.objective.lambda,
                 "needs a reward (method ", method, "; or set lambda to 0)");
    check_option(o.objective.beta == 0 || p.reference, "objective.beta", o.objective.beta,
                 "needs reference samples (method ", method, ")");
  }
  check_option(o.method != LangevinMethod::Guidance || p.guide, "algorithm.method", method,
               "needs a differentiable guidance reward (algorithm.guide)");
  return p;
}

std::unique_ptr<torch::optim::Optimizer> make_optimiser(const LangevinTrainerOptions& o,
                                                        const at::Tensor& theta) {
  if (o.optimiser == ThetaOptimiser::Sgd)
    return std::make_unique<torch::optim::SGD>(std::vector<at::Tensor>{theta},
                                               torch::optim::SGDOptions(o.lr));
  return std::make_unique<torch::optim::Adam>(
      std::vector<at::Tensor>{theta},
      torch::optim::AdamOptions(o.lr).betas({o.betas[0], o.betas[1]}).eps(o.eps));
}

}  // namespace

LangevinTrainer::LangevinTrainer(LangevinTrainerOptions options, LangevinProblem problem)
    : options_(options),
      problem_(validated(options, std::move(problem))),
      chain_(options.particles, problem_.potential->dim(), options.gamma, options.seed,
             problem_.theta0.options()),
      theta_(problem_.theta0.detach().clone().requires_grad_(true)),
      optimiser_(make_optimiser(options_, theta_)) {
  problem_.theta0 = problem_.theta0.detach();
  if (!problem_.theta_pretrained.defined()) problem_.theta_pretrained = problem_.theta0;
}

LangevinTrainer::~LangevinTrainer() = default;

LangevinReport LangevinTrainer::step() {
  LangevinReport report;
  report.step = iteration_;
  const auto theta = theta_.detach();
  switch (options_.method) {
    case LangevinMethod::Implicit:
    case LangevinMethod::Nested:
      for (int64_t t = 0; t < options_.inner_steps; ++t) sample(theta);
      update(implicit_direction(), report);
      break;
    case LangevinMethod::Unrolled:
      for (int64_t t = 0; t + 1 < options_.inner_steps; ++t) sample(theta);
      update(unrolled_direction(), report);
      break;
    case LangevinMethod::Guidance: {
      // ∇ₓ(V(x, θ₀) − w R_guide(x)).
      torch::AutoGradMode enable(true);
      auto x = chain_.particles().detach().requires_grad_(true);
      const auto grad_r = torch::autograd::grad({problem_.guide(x).sum()}, {x})[0];
      chain_.advance(potential().grad_x(x.detach(), theta) - options_.guidance_weight * grad_r);
      break;
    }
    case LangevinMethod::Fixed:
      sample(theta);
      break;
  }
  // Metrics of the particles after the step (the only .item() calls of the step).
  torch::NoGradGuard no_grad;
  const auto& x = chain_.particles();
  const double largest = x.abs().max().item<double>();
  check(std::isfinite(largest) && largest <= kDivergedParticle,
        "langevin: the particles diverged at step ", iteration_ + 1, " (largest |x| = ", largest,
        "): the step size sampler.gamma = ", options_.gamma,
        " is too large for this potential: lower it and start again");
  report.sampling_steps = chain_.steps();
  report.reward_mean = problem_.reward ? problem_.reward(x).mean().item<double>()
                                       : std::numeric_limits<double>::quiet_NaN();
  report.log_likelihood_ref =
      potential().log_likelihood(x, problem_.theta_pretrained).mean().item<double>();
  ++iteration_;
  return report;
}

void LangevinTrainer::sample(const at::Tensor& theta) {
  torch::NoGradGuard no_grad;
  chain_.advance(potential().grad_x(chain_.particles(), theta));
}

at::Tensor LangevinTrainer::rewards(const at::Tensor& x) const {
  if (options_.objective.lambda == 0) return {};
  torch::NoGradGuard no_grad;
  return problem_.reward(x);
}

at::Tensor LangevinTrainer::implicit_direction() {
  const auto& x = chain_.particles();
  const auto reference =
      options_.objective.beta > 0 ? problem_.reference->draw(iteration_) : at::Tensor();
  return descent_direction(potential(), x, theta_.detach(), rewards(x), reference,
                           options_.objective);
}

at::Tensor LangevinTrainer::unrolled_direction() {
  // The last step as a function of θ: X(θ) = X − γ∇ₓV(X, θ) + √(2γ)ξ, then autograd.
  torch::AutoGradMode enable(true);
  auto theta = theta_.detach().requires_grad_(true);
  const auto& x = chain_.particles();
  const auto x_next =
      langevin_step(x, potential().grad_x(x, theta), chain_.gamma(), chain_.next_noise());
  auto direction = torch::zeros_like(theta_.detach());
  if (options_.objective.lambda > 0) {
    const auto loss = -options_.objective.lambda * problem_.reward(x_next).mean();
    check(loss.requires_grad(),
          "method unrolled differentiates the reward, but it does not depend differentiably on "
          "x (use implicit, which only evaluates it)");
    direction += torch::autograd::grad({loss}, {theta})[0];
  }
  chain_.set_particles(x_next.detach());
  if (options_.objective.beta > 0)
    direction += options_.objective.beta * reference_gradient(potential(), chain_.particles(),
                                                              theta_.detach(),
                                                              problem_.reference->draw(iteration_));
  return direction;
}

void LangevinTrainer::update(const at::Tensor& direction, LangevinReport& report) {
  double lr = options_.lr;  // η_k
  if (options_.step_rule == StepRule::InverseSqrt) lr /= std::sqrt(double(updates_ + 1));
  for (auto& group : optimiser_->param_groups()) group.options().set_lr(lr);
  theta_.mutable_grad() = direction.detach().clone();
  optimiser_->step();
  ++updates_;
  report.updated = true;
  report.lr = lr;
  report.grad_norm = direction.norm().item<double>();
}

}  // namespace idtune
