#include "idtune/run/langevin_run.h"
#include "idtune/core/atomic_file.h"
#include "idtune/core/device.h"

#include "idtune/core/error.h"
#include "idtune/core/file_lock.h"
#include "idtune/core/interrupt.h"
#include "idtune/core/json_reader.h"

#include <spdlog/spdlog.h>
#include <torch/torch.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace idtune {

namespace fs = std::filesystem;

namespace {

at::Tensor to_tensor(const std::vector<double>& v, const c10::TensorOptions& options) {
  return torch::tensor(v, torch::kFloat64).to(options);
}

at::Tensor to_tensor(const Matrix& rows, const c10::TensorOptions& options) {
  std::vector<double> flat;
  for (const auto& row : rows) flat.insert(flat.end(), row.begin(), row.end());
  return to_tensor(flat, options).view({int64_t(rows.size()), -1});
}

/// Σ [m, d, d], or undefined when the spec leaves covariances out (identities).
at::Tensor covariances(const MixtureSpec& m, const c10::TensorOptions& options) {
  if (m.covariances.empty()) return {};
  std::vector<at::Tensor> sigma;
  for (const auto& s : m.covariances) sigma.push_back(to_tensor(s, options));
  return torch::stack(sigma);
}

std::shared_ptr<const GaussianMixture> make_mixture(const MixtureSpec& m,
                                                    MixtureParameters parameters,
                                                    const c10::TensorOptions& options) {
  return std::make_shared<GaussianMixture>(
      GaussianMixtureOptions{to_tensor(m.means, options), covariances(m, options), parameters});
}

PointReward make_reward(const PointRewardConfig& r, int64_t dim,
                        const c10::TensorOptions& options) {
  switch (r.kind) {
    case PointRewardKind::None:
      return {};
    case PointRewardKind::GatedGaussian:
      check(int64_t(r.gated.center.size()) == dim, "center has ", r.gated.center.size(),
            " coordinates, but the potential lives in R^", dim);
      return gated_gaussian_reward(r.gated);
    case PointRewardKind::TorchScript:
      return torchscript_point_reward(r.file, dim, options.device(),
                                      options.dtype().toScalarType());
  }
  return {};
}

std::shared_ptr<const ReferenceSamples> make_reference(const LangevinConfig& c, int64_t dim,
                                                       const c10::TensorOptions& options) {
  const auto& r = c.reference;
  if (r.kind == ReferenceKind::None) return nullptr;
  if (r.kind == ReferenceKind::File)
    return std::make_shared<FileReference>(read_samples(r.file, dim, options), r.file, r.batch,
                                           c.trainer.seed);
  const auto mixture = make_mixture(r.mixture, MixtureParameters::Logits, options);
  check(mixture->dim() == dim, "the mixture lives in R^", mixture->dim(), ", the potential in R^",
        dim);
  return std::make_shared<MixtureReference>(mixture, to_tensor(r.mixture.logits, options), r.batch,
                                            c.trainer.seed);
}

}  // namespace

LangevinProblem build_langevin_problem(const LangevinConfig& c) {
  // Errors name the config and the section whose values or files failed.
  const auto options = at_json_path(c.source, "/device", [&] {
    return torch::dtype(parse_dtype(c.dtype)).device(parse_device(c.device));
  });
  LangevinProblem problem;
  const auto& p = c.potential;
  at_json_path(c.source, "/potential", [&] {
    if (p.kind == PotentialKind::GaussianMixture) {
      const auto mixture = make_mixture(p.mixture, p.parameters, options);
      // π*(θ₀) of the log-likelihood metric is the configured mixture even when `theta0`
      // starts the run elsewhere (sampling with a θ that another run found).
      problem.theta_pretrained = mixture->pack(to_tensor(p.mixture.logits, options));
      problem.theta0 = c.theta0.empty() ? problem.theta_pretrained : to_tensor(c.theta0, options);
      problem.potential = mixture;
    } else {
      problem.theta0 = to_tensor(c.theta0, options);
      problem.potential = std::make_shared<TorchScriptPotential>(
          p.file, p.dim, problem.theta0.size(0), options.device(), options.dtype().toScalarType());
    }
  });
  const int64_t dim = problem.potential->dim();
  problem.reward =
      at_json_path(c.source, "/reward", [&] { return make_reward(c.reward, dim, options); });
  problem.guide = at_json_path(c.source, "/algorithm/guide",
                               [&] { return make_reward(c.guide, dim, options); });
  problem.reference =
      at_json_path(c.source, "/reference", [&] { return make_reference(c, dim, options); });
  return problem;
}

LangevinRun::LangevinRun(LangevinConfig config) : config_(std::move(config)) {
  at_json_path(config_.source, "/output/run_dir",
               [&] { check_directory_path(config_.output.run_dir); });
  auto problem = build_langevin_problem(config_);
  mixture_ = std::dynamic_pointer_cast<const GaussianMixture>(problem.potential);
  const auto& ref = config_.reference;
  if (mixture_ && ref.kind == ReferenceKind::GaussianMixture &&
      int64_t(ref.mixture.means.size()) == mixture_->components()) {
    const auto options = problem.theta0.options();
    target_ = mixture_->canonical(mixture_->pack(to_tensor(ref.mixture.logits, options),
                                                 to_tensor(ref.mixture.means, options),
                                                 covariances(ref.mixture, options)));
  }
  try {
    trainer_ = std::make_unique<LangevinTrainer>(config_.trainer, std::move(problem));
  } catch (const InvalidOption& e) {
    throw with_json_path(e, config_.source);
  } catch (const Error& e) {  // the options and the problem together (e.g. θ₀'s length)
    throw Error(config_.source + ": " + e.what());
  }
}

LangevinRun::~LangevinRun() = default;

std::string LangevinRun::summary() const {
  const auto& t = config_.trainer;
  return fmt::format("{} on {}, {} particles, γ = {}, {} steps, run directory '{}'",
                     name_of(t.method, langevin_method_names()), trainer_->potential().describe(),
                     t.particles, t.gamma, config_.steps, config_.output.run_dir);
}

std::string LangevinRun::path(const std::string& name) const {
  return (fs::path(config_.output.run_dir) / name).string();
}

bool LangevinRun::run() {
  fs::create_directories(config_.output.run_dir);
  const FileLock lock(path(".lock"), "run directory '" + config_.output.run_dir + "'");
  remove_stale_temporaries(config_.output.run_dir);  // a killed run's
  write_json_file(path("config.json"), to_json(config_));
  write_bytes_atomically(path("metrics.jsonl"), "");
  spdlog::info("langevin: {}", summary());
  const auto start = std::chrono::steady_clock::now();
  bool finished = true;
  while (trainer_->iteration() < config_.steps) {
    if (interrupt_requested()) {
      spdlog::warn("interrupted at step {}: writing θ and the particles", trainer_->iteration());
      finished = false;
      break;
    }
    fair_share_.rebalance();
    const auto report = trainer_->step();
    log_step(report,
             std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  }
  write_results();
  return finished;
}

namespace {

/// The values of a tensor as a JSON list of doubles, in order.
std::vector<double> values_of(const at::Tensor& t) {
  const auto cpu = t.detach().to(torch::kCPU, torch::kFloat64).contiguous();
  return {cpu.data_ptr<double>(), cpu.data_ptr<double>() + cpu.numel()};
}

}  // namespace

void LangevinRun::log_step(const LangevinReport& r, double wall_time) {
  const auto theta = trainer_->theta().detach();
  nlohmann::json line = {{"step", r.step},
                         {"sampling_steps", r.sampling_steps},
                         {"updated", r.updated},
                         {"reward_mean", r.reward_mean},
                         {"log_likelihood_ref", r.log_likelihood_ref},
                         {"grad_norm", r.grad_norm},
                         {"lr", r.lr},
                         {"wall_time_s", wall_time}};
  line["theta"] = values_of(theta);
  double distance = 0;
  if (mixture_) line["weights"] = values_of(mixture_->weights(theta));
  if (target_.defined()) {
    distance = (mixture_->canonical(theta) - target_).norm().item<double>();
    line["target_distance"] = distance;
  }
  std::ofstream metrics(path("metrics.jsonl"), std::ios::app);
  metrics << dump_json(line) << "\n";
  check(metrics.good(), "cannot append to '", path("metrics.jsonl"), "'");
  const int64_t n = config_.output.log_every, done = r.step + 1;
  if (n <= 0 || (done % n != 0 && done != config_.steps)) return;
  spdlog::info("[{:>6}/{}] reward {:.4f}  log-lik(θ₀) {:.4f}  |Γ| {:.3g}{}  eta {:.0f}s", done,
               config_.steps, r.reward_mean, r.log_likelihood_ref, r.grad_norm,
               target_.defined() ? fmt::format("  |θ − θ*| {:.4f}", distance) : "",
               wall_time / done * double(config_.steps - done));
}

void LangevinRun::write_results() const {
  const auto theta = trainer_->theta().detach();
  nlohmann::json result = {{"steps", trainer_->iteration()}, {"theta", values_of(theta)}};
  if (mixture_) result["weights"] = values_of(mixture_->weights(theta));
  write_json_file(path("theta.json"), result);
  if (!config_.output.save_particles) return;
  const auto x = trainer_->particles().to(torch::kCPU, torch::kFloat64).contiguous();
  std::ostringstream out;
  out.precision(17);
  const auto a = x.accessor<double, 2>();
  for (int64_t i = 0; i < a.size(0); ++i) {
    for (int64_t j = 0; j < a.size(1); ++j) out << (j ? "," : "") << a[i][j];
    out << "\n";
  }
  write_bytes_atomically(path("particles.csv"), out.str());
}

}  // namespace idtune
