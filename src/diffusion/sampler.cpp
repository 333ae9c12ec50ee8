#include "idtune/diffusion/sampler.h"

#include "idtune/core/error.h"
#include "idtune/core/json_reader.h"

#include <torch/torch.h>

#include <cmath>

namespace idtune {

const NameTable<SamplerKind>& sampler_names() {
  static const NameTable<SamplerKind> table = {{"sde-euler", SamplerKind::SdeEuler},
                                               {"ode-euler", SamplerKind::OdeEuler},
                                               {"ddpm", SamplerKind::Ddpm},
                                               {"ddim", SamplerKind::Ddim}};
  return table;
}

const NameTable<DdpmVariance>& ddpm_variance_names() {
  static const NameTable<DdpmVariance> table = {{"posterior", DdpmVariance::Posterior},
                                                {"beta", DdpmVariance::Beta}};
  return table;
}

const NameTable<TimeSpacing>& time_spacing_names() {
  static const NameTable<TimeSpacing> table = {{"uniform", TimeSpacing::Uniform},
                                               {"quadratic", TimeSpacing::Quadratic}};
  return table;
}

namespace {

/// τ_0 = t_max > τ_1 > … > τ_K: uniform or quadratic in continuous time, or K+1 distinct training
/// indices from N−1 down to 0 for a discrete schedule (DDPM respacing).
std::vector<double> time_grid(const SamplerOptions& o, const Schedule& schedule) {
  const int64_t K = o.steps;
  std::vector<double> grid(K + 1);
  if (schedule.is_discrete()) {
    const double last = schedule.t_max();
    check_option(K <= last, "sampler.steps", K, "is more than the ", int64_t(last) + 1,
                 " training steps of the ddpm-discrete schedule allow (at most ", int64_t(last),
                 ")");
    // i_k = round(N_last (K − k) / K), halves up, in exact integer arithmetic (std::round of
    // the floating-point quotient rounds 1.5 down when it comes out as 1.4999…).
    const auto n_last = static_cast<int64_t>(last);
    for (int64_t k = 0; k <= K; ++k) grid[k] = double((2 * n_last * (K - k) + K) / (2 * K));
  } else {
    check_option(o.t_min > 0 && o.t_min < schedule.t_max(), "sampler.t_min", o.t_min,
                 "must lie in (0, t_max = ", schedule.t_max(), ") of the model's schedule");
    for (int64_t k = 0; k <= K; ++k) {
      const double u = 1.0 - double(k) / K;  // 1 at t_max, 0 at t_min
      grid[k] =
          o.t_min + (schedule.t_max() - o.t_min) * (o.spacing == TimeSpacing::Uniform ? u : u * u);
    }
  }
  return grid;
}

/// Euler steps of the reverse SDE / probability-flow ODE (spec §2):
/// μ_SDE = ½β y + β s, g = √β;  μ_ODE = ½β y + ½β s.
ChainStep euler_step(const Schedule& schedule, double tau, double h, bool stochastic) {
  const double beta = schedule.beta(tau);
  const double b = stochastic ? h * beta : 0.5 * h * beta;
  return {tau, 1 + 0.5 * h * beta, b, stochastic ? std::sqrt(h * beta) : 0.0};
}

/// DDPM ancestral step from ᾱ to ᾱ' (b = 1 − ᾱ/ᾱ'), with ε̂ = −σ s:
/// m = (y − b/√(1−ᾱ) ε̂)/√(1−b) = (y + b s)/√(1−b).
ChainStep ddpm_step(double tau, double abar, double abar_next, DdpmVariance variance) {
  const double b = 1 - abar / abar_next;
  const double var = variance == DdpmVariance::Beta ? b : b * (1 - abar_next) / (1 - abar);
  return {tau, 1 / std::sqrt(1 - b), b / std::sqrt(1 - b), std::sqrt(var)};
}

/// DDIM (η = 0): x̂₀ = (y + σ² s)/α, m = α' x̂₀ + σ' ε̂ with ε̂ = −σ s.
ChainStep ddim_step(double tau, double abar, double abar_next) {
  const double alpha = std::sqrt(abar), sigma = std::sqrt(1 - abar);
  const double alpha_next = std::sqrt(abar_next), sigma_next = std::sqrt(1 - abar_next);
  return {tau, alpha_next / alpha, alpha_next * sigma * sigma / alpha - sigma_next * sigma, 0.0};
}

}  // namespace

SamplerOptions parse_sampler_options(JsonReader& reader) {
  SamplerOptions o;
  reader.read_enum("kind", o.kind, sampler_names());
  reader.read("steps", o.steps);
  reader.read("t_min", o.t_min);
  reader.read_enum("ddpm_variance", o.ddpm_variance, ddpm_variance_names());
  reader.read_enum("spacing", o.spacing, time_spacing_names());
  reader.read("guidance_scale", o.guidance_scale);
  reader.finish();
  return o;
}

nlohmann::json to_json(const SamplerOptions& o) {
  return {{"kind", name_of(o.kind, sampler_names())},
          {"steps", o.steps},
          {"t_min", o.t_min},
          {"ddpm_variance", name_of(o.ddpm_variance, ddpm_variance_names())},
          {"spacing", name_of(o.spacing, time_spacing_names())},
          {"guidance_scale", o.guidance_scale}};
}

Sampler::Sampler(const SamplerOptions& options, const ScoreModel& model) : options_(options) {
  const Schedule& schedule = model.schedule();
  const auto& kind_name = name_of(options.kind, sampler_names());
  check_option(options.steps >= 1 && options.steps <= 100000, "sampler.steps", options.steps,
               "must be in [1, 100000]");
  const auto& condition = model.card().condition;
  check_option(std::isfinite(options.guidance_scale) &&
                   (options.guidance_scale == 0 || (condition && condition->has_null())),
               "sampler.guidance_scale", options.guidance_scale,
               "needs a conditional model whose card has a null condition (condition.null_class ",
               "or condition.null_file); '", model.name(), "' has ",
               condition ? "no null condition" : "no condition");
  check_option(
      !schedule.is_discrete() || options.spacing == TimeSpacing::Uniform, "sampler.spacing",
      name_of(options.spacing, time_spacing_names()),
      "applies to continuous schedules only: a ddpm-discrete schedule is respaced to K + 1 ",
      "evenly spaced training indices (use uniform)");
  const bool euler = options.kind == SamplerKind::SdeEuler || options.kind == SamplerKind::OdeEuler;
  check_option(!(euler && schedule.is_discrete()), "sampler.kind", kind_name,
               "needs a continuous-time schedule (ou, vp-linear, cosine) but model '", model.name(),
               "' has ddpm-discrete: use sampler ddpm or ddim");
  const auto grid = time_grid(options, schedule);
  for (int64_t k = 0; k < options.steps; ++k) {
    const double tau = grid[k], h = grid[k] - grid[k + 1];
    const double abar = schedule.alpha_bar(tau), abar_next = schedule.alpha_bar(grid[k + 1]);
    switch (options.kind) {
      case SamplerKind::SdeEuler:
        steps_.push_back(euler_step(schedule, tau, h, true));
        break;
      case SamplerKind::OdeEuler:
        steps_.push_back(euler_step(schedule, tau, h, false));
        break;
      case SamplerKind::Ddpm:
        steps_.push_back(ddpm_step(tau, abar, abar_next, options.ddpm_variance));
        break;
      case SamplerKind::Ddim:
        steps_.push_back(ddim_step(tau, abar, abar_next));
        break;
    }
  }
  auto column = [&](auto field) {
    std::vector<double> values;
    for (const auto& s : steps_) values.push_back(s.*field);
    return torch::tensor(values, torch::kFloat64).to(model.device(), model.dtype());
  };
  tau_ = column(&ChainStep::tau);
  a_ = column(&ChainStep::a);
  b_ = column(&ChainStep::b);
  sigma_ = column(&ChainStep::sigma);
  tau_end_ = torch::tensor(std::vector<double>(grid.begin() + 1, grid.end()), torch::kFloat64)
                 .to(model.device(), model.dtype());
}

bool Sampler::stochastic() const {
  for (const auto& s : steps_)
    if (!(s.sigma > 0)) return false;
  return true;
}

bool Sampler::needs_noise() const {
  for (const auto& s : steps_)
    if (s.sigma > 0) return true;
  return false;
}

at::Tensor Sampler::indices(int64_t batch, int64_t k) const {
  return torch::full({batch}, k, torch::dtype(torch::kLong).device(tau_.device()));
}

at::Tensor Sampler::per_sample(const at::Tensor& table, const at::Tensor& k) const {
  return table.index_select(0, k).view({-1, 1, 1, 1});
}

at::Tensor Sampler::times(const at::Tensor& k) const { return tau_.index_select(0, k); }

at::Tensor Sampler::sigma(const at::Tensor& k) const { return per_sample(sigma_, k); }

at::Tensor Sampler::mean(const ScoreModel& model, const at::Tensor& y, const at::Tensor& k,
                         const at::Tensor& c) const {
  const auto score = model.guided_score(y, times(k), c, options_.guidance_scale);
  return per_sample(a_, k) * y + per_sample(b_, k) * score;
}

at::Tensor Sampler::advance(const ScoreModel& model, const at::Tensor& y, const at::Tensor& k,
                            const at::Tensor& xi, const at::Tensor& c) const {
  return xi.defined() ? mean(model, y, k, c) + sigma(k) * xi : mean(model, y, k, c);
}

at::Tensor Sampler::reconstruct_previous(const ScoreModel& model, const at::Tensor& y_next,
                                         const at::Tensor& k) const {
  const auto tau_next = tau_end_.index_select(0, k);
  return (y_next - per_sample(b_, k) * model.score(y_next, tau_next)) / per_sample(a_, k);
}

}  // namespace idtune
