// Engine benchmark (docs/benchmarks.md, "Engine"). Not a test: it prints figures.
//
//   bench_engine --timing [options]
//       Cost of one tuned sample-step (one sampling step + one adjoint step) against its
//       parts, all timed in one run by interleaving repetitions: (a) an inference forward,
//       (b) a VJP through θ's model for input and parameters, (c) an input-only VJP through
//       the frozen reference (β > 0 only). --retain-heap first stops glibc from handing freed
//       heap back to the OS (idtune::retain_freed_memory, as the CLI does), to show what page
//       faults cost.
//   bench_engine --memory adjoint|autograd --steps K [options]
//       Peak RSS of one gradient over K steps: the adjoint (stored path + AdjointSolver) or
//       autograd through the unrolled sampler. One (method, K) per process: ru_maxrss only
//       ever grows. bench/run_engine_bench.sh runs every case.
//
// Options: --batch B (64) --size S (28) --width W (32) --steps K (64) --beta β (0.1, the β>0
// case of --timing; --memory uses it only when given) --reps N (30) --warmup N (3).

#include "idtune/core/runtime.h"
#include "idtune/diffusion/adjoint.h"
#include "idtune/diffusion/backprop_through_sampler.h"
#include "idtune/diffusion/sampler.h"
#include "idtune/diffusion/sampling.h"
#include "idtune/diffusion/toy_models.h"

#include <torch/torch.h>

#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <functional>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

using idtune::AdjointSolver;
using idtune::Noise;
using idtune::Sampler;
using idtune::ScoreModel;

struct Config {
  std::string mode;    // "timing" or "memory"
  std::string method;  // memory: "adjoint" or "autograd"
  int64_t batch = 64, size = 28, width = 32, steps = 64, reps = 30, warmup = 3;
  double beta = 0.1;
  bool beta_given = false, retain_heap = false;
};

Config parse_args(int argc, char** argv) {
  Config c;
  const std::map<std::string, int64_t*> integers{{"--batch", &c.batch}, {"--size", &c.size},
                                                 {"--width", &c.width}, {"--steps", &c.steps},
                                                 {"--reps", &c.reps},   {"--warmup", &c.warmup}};
  auto value = [&](int& i) -> std::string {
    if (i + 1 >= argc) throw std::invalid_argument(std::string(argv[i]) + " needs a value");
    return argv[++i];
  };
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (auto it = integers.find(arg); it != integers.end()) {
      *it->second = std::stoll(value(i));
    } else if (arg == "--timing") {
      c.mode = "timing";
    } else if (arg == "--memory") {
      c.mode = "memory";
      c.method = value(i);
    } else if (arg == "--beta") {
      c.beta = std::stod(value(i));
      c.beta_given = true;
    } else if (arg == "--retain-heap") {
      c.retain_heap = true;
    } else {
      throw std::invalid_argument("unknown argument '" + arg + "'");
    }
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

long minor_faults() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return usage.ru_minflt;
}

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
  std::vector<double> ms = {};      // one per measured repetition
  std::vector<double> faults = {};  // minor page faults, one per measured repetition
  double median() const { return quantile(ms, 0.5); }
};

/// Runs the quantities interleaved (A B C … A B C …) so that drift in the machine's speed
/// hits all of them alike; the first `warmup` rounds (JIT profiling runs, allocator) are
/// not recorded.
void time_interleaved(std::vector<Timed>& quantities, int64_t warmup, int64_t reps) {
  for (int64_t round = 0; round < warmup + reps; ++round)
    for (auto& q : quantities) {
      const long faults_before = minor_faults();
      const auto start = std::chrono::steady_clock::now();
      q.run();
      const double ms = 1e3 * seconds_since(start);
      if (round < warmup) continue;
      q.ms.push_back(ms);
      q.faults.push_back(double(minor_faults() - faults_before));
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
  std::printf("%-44s %10s %10s %10s %13s\n", "quantity", "median ms", "p25 ms", "p75 ms",
              "page faults");
  for (const auto& q : quantities)
    std::printf("%-44s %10.2f %10.2f %10.2f %13.0f\n", q.name.c_str(), q.median(),
                quantile(q.ms, 0.25), quantile(q.ms, 0.75), quantile(q.faults, 0.5));
}

int run_timing(const Config& c) {
  const auto model = make_model(c);
  const auto reference = model.frozen_copy();
  const auto params = model.trainable_parameters();
  const Sampler sampler({idtune::SamplerKind::SdeEuler, c.steps}, model);
  const AdjointSolver plain(sampler, {1.0, 0.0});
  const AdjointSolver with_kl(sampler, {1.0, c.beta});
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
         plain.step({model, params}, y, a, k);
       }},
      {"tuned step, beta > 0",
       [&] {
         sample_step();
         with_kl.step({model, params, &reference}, y, a, k);
       }},
  };
  time_interleaved(q, c.warmup, c.reps);

  std::printf(
      "Tuned sample-step vs its parts: tiny U-Net 1x%lldx%lld width %lld, float32, "
      "ou, sde-euler, batch %lld, %d threads, %lld reps (+%lld warm-up), beta>0 = %g, "
      "allocator: glibc %s\n\n",
      (long long)c.size, (long long)c.size, (long long)c.width, (long long)c.batch,
      at::get_num_threads(), (long long)c.reps, (long long)c.warmup, c.beta,
      c.retain_heap ? "with heap retained (--retain-heap)" : "default");
  print_timing_table(q);
  const double fwd = q[0].median(), vjp_theta = q[1].median(), vjp_ref = q[2].median();
  const double tuned0 = q[4].median(), tuned1 = q[5].median();
  // The floor of tuned / (a) is the sum of the parts in forwards: 1 + (b)/(a) [+ (c)/(a)].
  const double floor0 = (fwd + vjp_theta) / fwd, floor1 = (fwd + vjp_theta + vjp_ref) / fwd;
  std::printf("\n%-44s %10s   %s\n", "ratio (of medians)", "measured", "target");
  std::printf("%-44s %10.3f   %s\n", "beta = 0: tuned / (a + b)", tuned0 / (fwd + vjp_theta),
              "<= 1.10");
  std::printf("%-44s %10.3f   %s\n", "beta > 0: tuned / (a + b + c)",
              tuned1 / (fwd + vjp_theta + vjp_ref), "<= 1.10");
  std::printf("%-44s %10.3f   floor 1 + b/a = %.3f\n", "beta = 0: tuned / (a)", tuned0 / fwd,
              floor0);
  std::printf("%-44s %10.3f   floor 1 + (b + c)/a = %.3f\n", "beta > 0: tuned / (a)", tuned1 / fwd,
              floor1);
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
    return AdjointSolver(sampler, {1.0, beta})
        .gradient({model, params, reference}, path, reward)
        .grad;
  }
  // Autograd keeps every step's activations until the backward pass.
  const auto unrolled = idtune::unrolled_objective(sampler, {model, params, reference}, y0,
                                                   {noise, 0}, reward, {{1.0, beta}});
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
    const auto params = model.trainable_parameters();
    AdjointSolver(sampler, {1.0, with_kl ? c.beta : 0.0})
        .step({model, params, &reference}, y0, y1, k);
  }
  const double rss_before = current_rss_mib(), peak_before = peak_rss_mib();
  const auto start = std::chrono::steady_clock::now();
  const auto grad = gradient(c, sampler, model, with_kl ? &reference : nullptr, y0, noise);
  const double seconds = seconds_since(start), peak = peak_rss_mib();
  // One line of key=value pairs: bench/run_engine_bench.sh builds its table from these.
  std::printf(
      "method=%s steps=%lld batch=%lld beta=%g rss_before_mib=%.1f peak_before_mib=%.1f "
      "peak_mib=%.1f increase_mib=%.1f seconds=%.1f grad_norm=%.6e\n",
      c.method.c_str(), (long long)c.steps, (long long)c.batch, with_kl ? c.beta : 0.0, rss_before,
      peak_before, peak, peak - rss_before, seconds, norm(grad));
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const Config config = parse_args(argc, argv);
    idtune::use_all_cores();
    if (config.retain_heap) idtune::retain_freed_memory();  // what the idtune CLI does
    return config.mode == "timing" ? run_timing(config) : run_memory(config);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_engine: %s\n", e.what());
    return 1;
  }
}
