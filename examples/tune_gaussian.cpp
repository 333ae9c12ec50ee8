// Tuning through the library: the paper's 1-D problem (spec §7) with the queue (M = 4), the
// exact adjoint and Adam. A sampler of N(cθ, 1) is tuned so that its samples maximise
// R(x) = −(x − target)². Everything here is public API from <idtune/idtune.h>.
//
//   tune_gaussian [iterations] [target]

#include <idtune/idtune.h>

#include <ATen/ATen.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <stdexcept>

int main(int argc, char** argv) try {
  idtune::configure_runtime();  // threads (IDTUNE_NUM_THREADS), allocator
  const int64_t iterations = argc > 1 ? std::atoll(argv[1]) : 200;
  const double target = argc > 2 ? std::atof(argv[2]) : 2.0;

  idtune::TrainerOptions options;
  options.sampler.steps = 40;      // K
  options.queue_slots = 4;         // M
  options.batch = 256;             // B, samples per slot
  options.objective = {1.0, 0.0};  // λ, β: F = −λ E[R] + β KL, reward only
  options.optimiser.lr = 0.05;
  options.optimiser.tune = {"^theta$"};  // parameter names to tune (regular expressions)
  const auto reward = [target](const at::Tensor& x) {
    return -(x - target).pow(2).flatten(1).sum(1);  // [B, 1, 1, 1] -> [B]
  };
  // s(x, t) = −(x − θ e^{−t}): the exact score of N(θ, 1) under the OU schedule, θ = 0.
  idtune::Trainer trainer(options, idtune::make_ou_gaussian_model({}), reward);

  const auto theta = [&] {
    for (const auto& [name, value] : trainer.model().named_parameters())
      if (name == "theta") return value.item<double>();
    throw std::logic_error("the model has no parameter theta");
  };
  for (int64_t it = 0; it < iterations; ++it) {
    const idtune::IterationReport r = trainer.step();
    if (it % 25 == 0 || it + 1 == iterations)
      std::printf("iter %4lld  theta %+.4f  reward %+.4f  KL %.4f\n", static_cast<long long>(it),
                  theta(), r.reward_mean, r.kl);
  }
  const double c = 1 - std::exp(-2.0);  // π*(θ) = N(cθ, 1) in continuous time, T = 1
  std::printf("mean of the tuned sampler c*theta = %.4f (target %.4f)\n", c * theta(), target);
  return std::abs(c * theta() - target) < 0.1 ? 0 : 1;
} catch (const std::exception& e) {
  std::fprintf(stderr, "error: %s\n", e.what());
  return 1;
}
