// Engine benchmark (docs/benchmarks.md, "Engine"). Not a test: it prints figures.
//
//   bench_engine --timing [options]
//       Cost of one tuned sample-step (one sampling step + one adjoint step) against its
//       parts, all timed in one run by interleaving repetitions: (a) an inference forward,
//       (b) a VJP through θ's model for input and parameters, (c) an input-only VJP through
//       the frozen reference (β > 0 only).
//   bench_engine --memory adjoint|autograd --steps K [options]
//       Peak RSS of one gradient over K steps: the adjoint (stored path + AdjointSolver) or
//       autograd through the unrolled sampler. One (method, K) per process: ru_maxrss only
//       ever grows. bench/run_engine_bench.sh runs every case.
//
// Options: --batch B (64) --size S (28) --width W (32) --steps K (64) --beta β (0.1, the β>0
// case of --timing; --memory uses it only when given) --reps N (20) --warmup N (3).

#include "idtune/adjoint.h"
#include "idtune/backprop_through_sampler.h"
#include "idtune/parallelism.h"
#include "idtune/sampler.h"
#include "idtune/sampling.h"
#include "idtune/toy_models.h"

#include <torch/torch.h>

#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <functional>
#include <iostream>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

using idtune::AdjointOptions;
using idtune::AdjointSolver;
using idtune::Noise;
using idtune::Sampler;
using idtune::ScoreModel;

struct Config {
  std::string mode;    // "timing" or "memory"
  std::string method;  // memory: "adjoint" or "autograd"
  int64_t batch = 64, size = 28, width = 32, steps = 64, reps = 20, warmup = 3;
  double beta = 0.1;
  bool beta_given = false;
};

Config parse_args(int argc, char** argv) {
  Config c;
  auto value = [&](int& i) -> std::string {
    if (i + 1 >= argc) throw std::invalid_argument(std::string(argv[i]) + " needs a value");
    return argv[++i];
  };
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--timing") c.mode = "timing";
    else if (arg == "--memory") c.mode = "memory", c.method = value(i);
    else if (arg == "--batch") c.batch = std::stoll(value(i));
    else if (arg == "--size") c.size = std::stoll(value(i));
    else if (arg == "--width") c.width = std::stoll(value(i));
    else if (arg == "--steps") c.steps = std::stoll(value(i));
    else if (arg == "--reps") c.reps = std::stoll(value(i));
    else if (arg == "--warmup") c.warmup = std::stoll(value(i));
    else if (arg == "--beta") c.beta = std::stod(value(i)), c.beta_given = true;
    else throw std::invalid_argument("unknown argument '" + arg + "'");
  }
  if (c.mode.empty()) throw std::invalid_argument("give --timing or --memory adjoint|autograd");
  if (c.mode == "memory" && c.method != "adjoint" && c.method != "autograd")
    throw std::invalid_argument("--memory takes adjoint or autograd, got '" + c.method + "'");
  return c;
}

/// The benchmark's model: a float32 tiny U-Net on 1×size×size images, `ou` schedule.
ScoreModel make_model(const Config& c) {
  idtune::TinyUNetOptions o;
  o.channels = 1;
  o.size = c.size;
  o.width = c.width;
  o.model = {c10::kCPU, c10::kFloat};
  return idtune::make_tiny_unet(o);
}

/// A smooth reward with a nonzero gradient everywhere: R(y) = −mean(y²) per sample.
at::Tensor reward(const at::Tensor& y) { return -(y * y).flatten(1).mean(1); }

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

double quantile(std::vector<double> v, double q) {
  std::sort(v.begin(), v.end());
  const double pos = q * double(v.size() - 1);
  const size_t lo = size_t(pos), hi = std::min(lo + 1, v.size() - 1);
  return v[lo] + (pos - double(lo)) * (v[hi] - v[lo]);
}

// ---------------------------------------------------------------------------------------
// Timing

struct Timed {
  std::string name;
  std::function<void()> run;
  std::vector<double> ms = {}; std::vector<double> flt = {};  // one per measured repetition
  double median() const { return quantile(ms, 0.5); }
};

/// Runs the quantities interleaved (A B C … A B C …) so that drift in the machine's speed
/// hits all of them alike; the first `warmup` rounds (JIT profiling runs, allocator) are
/// not recorded.
void time_interleaved(std::vector<Timed>& quantities, int64_t warmup, int64_t reps) {
  for (int64_t round = 0; round < warmup + reps; ++round)
    for (auto& q : quantities) {
      rusage u0{}, u1{}; getrusage(RUSAGE_SELF, &u0);
      const auto start = std::chrono::steady_clock::now();
      q.run();
      if (round >= warmup) q.ms.push_back(1e3 * seconds_since(start));
      getrusage(RUSAGE_SELF, &u1); if (round >= warmup) q.flt.push_back(u1.ru_minflt - u0.ru_minflt);
    }
}

/// ∇ of ⟨a, m_k(y)⟩ w.r.t. y and `params` (empty: input only): what one adjoint step costs
/// without its bookkeeping.
void vjp(const Sampler& sampler, const ScoreModel& model, const std::vector<at::Tensor>& params,
         const at::Tensor& y, const at::Tensor& a, const at::Tensor& k) {
  torch::AutoGradMode grad_mode(true);
  auto input = y.detach().requires_grad_(true);
  auto inner = (a * sampler.mean(model, input, k)).sum();
  std::vector<at::Tensor> wrt{input};
  wrt.insert(wrt.end(), params.begin(), params.end());
  torch::autograd::grad({inner}, wrt);
}

void print_timing_table(const std::vector<Timed>& quantities) {
  std::printf("%-44s %10s %10s %10s\n", "quantity", "median ms", "p25 ms", "p75 ms");
  for (const auto& q : quantities)
    std::printf("%-44s %10.2f %10.2f %10.2f %10.0f\n", q.name.c_str(), q.median(),
                quantile(q.ms, 0.25), quantile(q.ms, 0.75), quantile(q.flt, 0.5));
}

int run_timing(const Config& c) {
  const auto model = make_model(c);
  const auto reference = model.frozen_copy();
  const auto params = model.trainable_parameters();
  const Sampler sampler({idtune::SamplerKind::SdeEuler, c.steps}, model);
  const AdjointSolver plain(sampler, AdjointOptions{1.0, 0.0});
  const AdjointSolver with_kl(sampler, AdjointOptions{1.0, c.beta});
  const Noise noise(1);
  const int64_t step = c.steps / 2;  // the step's time does not change its cost
  const auto k = sampler.indices(c.batch, step);
  const auto y = idtune::initial_state(model, c.batch, noise, 0);
  const auto a = torch::randn_like(y);  // a stand-in adjoint state a_{k+1}

  // One sampling step as the tuning loop runs it: its noise, then Y_{k+1} = m_k + σ_k ξ_k.
  auto sample_step = [&] {
    torch::NoGradGuard no_grad;
    sampler.advance(model, y, k, idtune::step_noise(model, noise, 0, step, c.batch));
  };
  std::vector<Timed> q = {
      {"(a) inference forward (mean, no grad)",
       [&] {
         torch::NoGradGuard no_grad;
         sampler.mean(model, y, k);
       }},
      {"(b) VJP through theta (input + params)", [&] { vjp(sampler, model, params, y, a, k); }},
      {"(c) VJP through reference (input only)", [&] { vjp(sampler, reference, {}, y, a, k); }},
      {"    step noise xi_k (part of the sample step)",
       [&] { idtune::step_noise(model, noise, 0, step, c.batch); }},
      {"tuned step, beta = 0",
       [&] {
         sample_step();
         plain.step(model, nullptr, params, y, a, k);
       }},
      {"tuned step, beta > 0",
       [&] {
         sample_step();
         with_kl.step(model, &reference, params, y, a, k);
       }},
      {"X adjoint step b>0 alone", [&] { with_kl.step(model, &reference, params, y, a, k); }},
      {"X adjoint step b=0 alone", [&] { plain.step(model, nullptr, params, y, a, k); }},
      {"X sample step alone", [&] { sample_step(); }},
      {"X b then c", [&] { vjp(sampler, model, params, y, a, k); vjp(sampler, reference, {}, y, a, k); }},
      {"X b+c one grad", [&] {
         torch::AutoGradMode grad_mode(true);
         auto input = y.detach().requires_grad_(true);
         auto inner = (a * sampler.mean(model, input, k)).sum() + (a * sampler.mean(reference, input, k)).sum();
         std::vector<at::Tensor> wrt{input};
         wrt.insert(wrt.end(), params.begin(), params.end());
         torch::autograd::grad({inner}, wrt); }},
  };
  time_interleaved(q, c.warmup, c.reps);

  std::printf("Tuned sample-step vs its parts: tiny U-Net 1x%lldx%lld width %lld, float32, "
              "ou, sde-euler, batch %lld, %d threads, %lld reps (+%lld warm-up), beta>0 = %g\n\n",
              (long long)c.size, (long long)c.size, (long long)c.width, (long long)c.batch,
              at::get_num_threads(), (long long)c.reps, (long long)c.warmup, c.beta);
  print_timing_table(q); if (getenv("X")) return 0;
  const double fwd = q[0].median(), vjp_theta = q[1].median(), vjp_ref = q[2].median();
  const double tuned0 = q[4].median(), tuned1 = q[5].median();
  std::printf("\n%-44s %10s %10s\n", "ratio (of medians)", "measured", "target");
  std::printf("%-44s %10.3f %10s\n", "beta = 0: tuned / (a + b)", tuned0 / (fwd + vjp_theta),
              "<= 1.10");
  std::printf("%-44s %10.3f %10s\n", "beta > 0: tuned / (a + b + c)",
              tuned1 / (fwd + vjp_theta + vjp_ref), "<= 1.10");
  std::printf("%-44s %10.3f %10s\n", "beta = 0: tuned / (a)", tuned0 / fwd, "~3.4 floor");
  std::printf("%-44s %10.3f %10s\n", "beta > 0: tuned / (a)", tuned1 / fwd, "");
  std::printf("%-44s %10.3f %10s\n", "(b) / (a): VJP in forwards", vjp_theta / fwd, "");
  std::printf("%-44s %10.3f %10s\n", "(c) / (a): input-only VJP in forwards", vjp_ref / fwd, "");
  return 0;
}

// ---------------------------------------------------------------------------------------
// Memory

double current_rss_mib() {
  std::ifstream statm("/proc/self/statm");
  long pages_total = 0, pages_resident = 0;
  statm >> pages_total >> pages_resident;
  return double(pages_resident) * double(sysconf(_SC_PAGESIZE)) / (1024.0 * 1024.0);
}

double peak_rss_mib() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return double(usage.ru_maxrss) / 1024.0;  // ru_maxrss is in KiB on Linux
}

double norm(const std::vector<at::Tensor>& grad) {
  double sum = 0;
  for (const auto& g : grad) sum += g.to(torch::kFloat64).pow(2).sum().item<double>();
  return std::sqrt(sum);
}

/// The gradient of the batch mean of J, by the chosen method.
std::vector<at::Tensor> gradient(const Config& c, const Sampler& sampler, const ScoreModel& model,
                                 const ScoreModel* reference, const at::Tensor& y0,
                                 const Noise& noise) {
  const double beta = c.beta_given ? c.beta : 0.0;
  const auto params = model.trainable_parameters();
  if (c.method == "adjoint") {
    const auto path = idtune::sample_path(sampler, model, y0, noise, 0);  // stores Y_0 … Y_K
    return AdjointSolver(sampler, {1.0, beta}).gradient(model, reference, params, path, reward)
        .grad;
  }
  // Autograd keeps every step's activations until the backward pass.
  const auto unrolled =
      idtune::unrolled_objective(sampler, model, reference, y0, noise, 0, reward, 1.0, beta);
  return torch::autograd::grad({unrolled.objective.mean()}, params);
}

int run_memory(const Config& c) {
  const auto model = make_model(c);
  const bool with_kl = c.beta_given && c.beta > 0;
  const auto reference = model.frozen_copy();
  const Sampler sampler({idtune::SamplerKind::SdeEuler, c.steps}, model);
  const Noise noise(1);
  const auto y0 = idtune::initial_state(model, c.batch, noise, 0);

  // Warm-up shared by both methods: one sampling step and one adjoint step (the same ops a
  // K = 1 autograd gradient runs), so the baseline already holds the JIT plans and libraries.
  {
    const auto k = sampler.indices(c.batch, 0);
    torch::NoGradGuard no_grad;
    const auto y1 = sampler.advance(model, y0, k, idtune::step_noise(model, noise, 0, 0, c.batch));
    AdjointSolver(sampler, {1.0, with_kl ? c.beta : 0.0})
        .step(model, &reference, model.trainable_parameters(), y0, y1, k);
  }
  const double rss_before = current_rss_mib(), peak_before = peak_rss_mib();
  const auto start = std::chrono::steady_clock::now();
  const auto grad = gradient(c, sampler, model, with_kl ? &reference : nullptr, y0, noise);
  const double seconds = seconds_since(start), peak = peak_rss_mib();
  // One line of key=value pairs: bench/run_engine_bench.sh builds its table from these.
  std::printf("method=%s steps=%lld batch=%lld beta=%g rss_before_mib=%.1f peak_before_mib=%.1f "
              "peak_mib=%.1f increase_mib=%.1f seconds=%.1f grad_norm=%.6e\n",
              c.method.c_str(), (long long)c.steps, (long long)c.batch, with_kl ? c.beta : 0.0,
              rss_before, peak_before, peak, peak - rss_before, seconds, norm(grad));
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const Config config = parse_args(argc, argv);
    idtune::use_all_cores();
    return config.mode == "timing" ? run_timing(config) : run_memory(config);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_engine: %s\n", e.what());
    return 1;
  }
}
