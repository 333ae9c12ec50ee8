// idtune demo: the engine on the paper's 1-D problem (spec §7).

#include "commands.h"
#include "idtune/toy_models.h"
#include "idtune/trainer.h"

#include <spdlog/spdlog.h>

#include <cmath>

namespace idtune::cli {

namespace {

/// A sampler of N(cθ, 1) is tuned so that its samples maximise R(x) = −(x − target)², with
/// the queue (M = 4), the exact adjoint and Adam.
int run_demo(const Flags& flags) {
  const double target = flags.number("target");
  TrainerOptions o;
  o.sampler.steps = flags.integer("steps");
  o.queue_slots = flags.integer("slots");
  o.batch = flags.integer("batch");
  o.beta = flags.number("beta");
  o.optimiser.lr = 0.05;
  o.optimiser.tune = {"^theta$"};
  Trainer trainer(o, make_ou_gaussian_model({}),
                  [target](const at::Tensor& x) { return -(x - target).pow(2).flatten(1).sum(1); });
  spdlog::info("demo: tune s(x,t) = -(x - theta e^-t) so that its samples maximise -(x - {})^2",
               target);
  spdlog::info("      sde-euler K = {}, queue M = {}, batch {}, beta = {}, Adam lr 0.05",
               o.sampler.steps, o.queue_slots, o.batch, o.beta);
  const auto theta = [&] {
    return trainer.model().module().attr("theta").toTensor().item<double>();
  };
  const int64_t iterations = flags.integer("iterations");
  for (int64_t it = 0; it < iterations; ++it) {
    const auto r = trainer.step();
    if (it % 25 == 0 || it + 1 == iterations)
      spdlog::info("iter {:4d}  theta {:+.4f}  reward {:+.4f}  KL {:.4f}", it, theta(),
                   r.reward_mean, r.kl);
  }
  const double c = 1 - std::exp(-2 * 1.0);  // π*(θ) = N(cθ, 1) in continuous time, T = 1
  spdlog::info("done: theta = {:.4f}; the sampler's mean c*theta = {:.4f} (target {})", theta(),
               c * theta(), target);
  return 0;
}

}  // namespace

Command demo_command() {
  return {"demo",
          "tune the paper's 1-D Gaussian sampler towards a target mean",
          {{"iterations", "200", "outer iterations"},
           {"target", "2.0", "target mean"},
           {"steps", "40", "sampling steps K"},
           {"slots", "4", "queue slots M (divides K)"},
           {"batch", "256", "samples per slot"},
           {"beta", "0", "KL weight (to the untuned model)"}},
          run_demo};
}

}  // namespace idtune::cli
