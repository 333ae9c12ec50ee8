#include "idtune/diffusion/schedule.h"

#include "idtune/core/error.h"
#include "idtune/core/json_reader.h"

#include <torch/torch.h>

#include <cmath>

namespace idtune {

const NameTable<ScheduleKind>& schedule_names() {
  static const NameTable<ScheduleKind> table = {{"ou", ScheduleKind::Ou},
                                                {"vp-linear", ScheduleKind::VpLinear},
                                                {"cosine", ScheduleKind::Cosine},
                                                {"ddpm-discrete", ScheduleKind::DdpmDiscrete}};
  return table;
}

const NameTable<BetaSchedule>& beta_schedule_names() {
  static const NameTable<BetaSchedule> table = {
      {"linear", BetaSchedule::Linear},
      {"scaled_linear", BetaSchedule::ScaledLinear},
      {"squaredcos_cap_v2", BetaSchedule::SquaredcosCapV2},
      {"sigmoid", BetaSchedule::Sigmoid}};
  return table;
}

ScheduleOptions parse_schedule(JsonReader& reader) {
  ScheduleOptions o;
  reader.read_enum("kind", o.kind, schedule_names());
  switch (o.kind) {
    case ScheduleKind::Ou:
      reader.read_in_range("t_max", o.t_max, 0.0, 100.0, /*open_low=*/true);
      break;
    case ScheduleKind::VpLinear:
      reader.read_in_range("t_max", o.t_max, 0.0, 1.0, true);
      reader.read_in_range("beta_min", o.beta_min, 0.0, 1e3, true);
      reader.read_in_range("beta_max", o.beta_max, o.beta_min, 1e4);
      break;
    case ScheduleKind::Cosine:
      // ᾱ(1) = 0: β(t) and the score are infinite at t = 1, so t_max is required and < 1.
      reader.require("t_max", o.t_max);
      check(o.t_max > 0 && o.t_max < 1, reader.path_of("t_max"), ": ", o.t_max,
            " must lie in (0, 1): the cosine schedule's signal vanishes at t = 1, where beta(t) "
            "and the score are infinite (0.99 is usual)");
      reader.read_in_range("cosine_s", o.cosine_s, 0.0, 1.0, true);
      break;
    case ScheduleKind::DdpmDiscrete:
      reader.read("betas", o.betas);
      reader.read("alphas_cumprod", o.alphas_cumprod);
      check(o.betas.empty() || o.alphas_cumprod.empty(), reader.path_of("betas"),
            ": give betas or alphas_cumprod, not both");
      if (o.betas.empty() && o.alphas_cumprod.empty()) {
        reader.read_enum("beta_schedule", o.beta_schedule, beta_schedule_names());
        reader.read_in_range("beta_start", o.beta_start, 0.0, 1.0, true);
        reader.read_in_range("beta_end", o.beta_end, o.beta_start, 1.0);
        reader.read_in_range("num_train_steps", o.num_train_steps, 2, 100000);
      }
      break;
  }
  reader.finish();
  return o;
}

nlohmann::json to_json(const ScheduleOptions& o) {
  nlohmann::json j = {{"kind", name_of(o.kind, schedule_names())}};
  switch (o.kind) {
    case ScheduleKind::Ou:
      j["t_max"] = o.t_max;
      break;
    case ScheduleKind::VpLinear:
      j.update({{"t_max", o.t_max}, {"beta_min", o.beta_min}, {"beta_max", o.beta_max}});
      break;
    case ScheduleKind::Cosine:
      j.update({{"t_max", o.t_max}, {"cosine_s", o.cosine_s}});
      break;
    case ScheduleKind::DdpmDiscrete:
      if (!o.betas.empty())
        j["betas"] = o.betas;
      else if (!o.alphas_cumprod.empty())
        j["alphas_cumprod"] = o.alphas_cumprod;
      else
        j.update({{"beta_schedule", name_of(o.beta_schedule, beta_schedule_names())},
                  {"beta_start", o.beta_start},
                  {"beta_end", o.beta_end},
                  {"num_train_steps", o.num_train_steps}});
      break;
  }
  return j;
}

namespace {

/// b_0 … b_{N−1} of a named beta schedule (diffusers' DDPMScheduler formulas), float64.
at::Tensor named_betas(const ScheduleOptions& o) {
  const int64_t N = o.num_train_steps;
  const auto f64 = torch::kFloat64;
  switch (o.beta_schedule) {
    case BetaSchedule::Linear:
      return torch::linspace(o.beta_start, o.beta_end, N, f64);
    case BetaSchedule::ScaledLinear:
      return torch::linspace(std::sqrt(o.beta_start), std::sqrt(o.beta_end), N, f64).pow(2);
    case BetaSchedule::SquaredcosCapV2: {
      const auto abar = [](const at::Tensor& t) {
        return torch::cos((t + 0.008) / 1.008 * (M_PI / 2)).pow(2);
      };
      const auto t = torch::arange(N, f64) / double(N);
      return (1 - abar(t + 1.0 / N) / abar(t)).clamp_max(0.999);
    }
    case BetaSchedule::Sigmoid:
      return torch::sigmoid(torch::linspace(-6, 6, N, f64)) * (o.beta_end - o.beta_start) +
             o.beta_start;
  }
  throw std::logic_error("unhandled beta schedule");
}

}  // namespace

Schedule::Schedule(ScheduleOptions options) : options_(std::move(options)) {
  if (!is_discrete()) {
    check(options_.t_max > 0, "schedule: t_max must be > 0, got ", options_.t_max);
    return;
  }
  if (!options_.alphas_cumprod.empty()) {
    const auto abar = torch::tensor(options_.alphas_cumprod, torch::kFloat64);
    check(abar.numel() >= 2, "schedule ddpm-discrete: alphas_cumprod needs at least 2 values");
    const bool decreasing = (abar.slice(0, 1) < abar.slice(0, 0, -1)).all().item<bool>();
    check((abar > 0).all().item<bool>() && (abar <= 1).all().item<bool>() && decreasing,
          "schedule ddpm-discrete: alphas_cumprod must decrease strictly within (0, 1]");
    discrete_alpha_bar_ = abar;
    return;
  }
  const auto betas = options_.betas.empty() ? named_betas(options_)
                                            : torch::tensor(options_.betas, torch::kFloat64);
  check(betas.numel() >= 2, "schedule ddpm-discrete: needs at least 2 betas");
  check((betas > 0).all().item<bool>() && (betas < 1).all().item<bool>(),
        "schedule ddpm-discrete: every beta must lie in (0, 1)");
  discrete_alpha_bar_ = torch::cumprod(1 - betas, 0);
}

double Schedule::t_max() const {
  return is_discrete() ? double(discrete_alpha_bar_.size(0) - 1) : options_.t_max;
}

at::Tensor Schedule::alpha_bar(const at::Tensor& t) const {
  const auto& o = options_;
  switch (o.kind) {
    case ScheduleKind::Ou:
      return torch::exp(-2 * t);
    case ScheduleKind::VpLinear:
      return torch::exp(-o.beta_min * t - 0.5 * (o.beta_max - o.beta_min) * t * t);
    case ScheduleKind::Cosine: {
      const double half_pi = M_PI / 2, s = o.cosine_s;
      const double at_zero = std::pow(std::cos(s / (1 + s) * half_pi), 2);
      return torch::cos((t + s) / (1 + s) * half_pi).pow(2) / at_zero;
    }
    case ScheduleKind::DdpmDiscrete: {
      auto index = t.round().to(torch::kLong).clamp(0, discrete_alpha_bar_.size(0) - 1);
      auto table = discrete_alpha_bar_.to(t.device());
      return table.index_select(0, index.flatten()).view(t.sizes()).to(t.scalar_type());
    }
  }
  throw std::logic_error("unhandled schedule kind");
}

at::Tensor Schedule::alpha(const at::Tensor& t) const { return alpha_bar(t).sqrt(); }

at::Tensor Schedule::sigma(const at::Tensor& t) const { return (1 - alpha_bar(t)).sqrt(); }

at::Tensor Schedule::beta(const at::Tensor& t) const {
  const auto& o = options_;
  switch (o.kind) {
    case ScheduleKind::Ou:
      return torch::full_like(t, 2.0);
    case ScheduleKind::VpLinear:
      return o.beta_min + (o.beta_max - o.beta_min) * t;
    case ScheduleKind::Cosine: {
      // −d/dt log cos²(u) = 2 tan(u) du/dt, u = (t+s)/(1+s)·π/2.
      const double s = o.cosine_s, du_dt = M_PI / (2 * (1 + s));
      return 2 * du_dt * torch::tan((t + s) / (1 + s) * (M_PI / 2));
    }
    case ScheduleKind::DdpmDiscrete:
      throw Error(
          "schedule ddpm-discrete has no continuous-time beta(t): use the ddpm or ddim sampler");
  }
  throw std::logic_error("unhandled schedule kind");
}

double Schedule::alpha_bar(double t) const {
  return alpha_bar(torch::tensor(t, torch::kFloat64)).item<double>();
}

double Schedule::beta(double t) const {
  return beta(torch::tensor(t, torch::kFloat64)).item<double>();
}

}  // namespace idtune
