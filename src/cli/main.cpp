// idtune: command-line entry point. Thin: parses flags, calls the library, prints errors.

#include "idtune/adjoint.h"
#include "idtune/error.h"
#include "idtune/parallelism.h"
#include "idtune/sampling.h"
#include "idtune/toy_models.h"

#include <spdlog/spdlog.h>
#include <torch/torch.h>

#include <cstdio>
#include <functional>
#include <map>
#include <string>
#include <vector>

namespace {

using Args = std::vector<std::string>;

/// --name value flags into a map; unknown flags are errors listing the known ones.
std::map<std::string, std::string> parse_flags(const Args& args,
                                               const std::map<std::string, std::string>& known) {
  std::map<std::string, std::string> values = known;
  for (size_t i = 0; i < args.size(); ++i) {
    const auto& flag = args[i];
    std::string names;
    for (const auto& [name, def] : known) names += " --" + name;
    idtune::check(flag.rfind("--", 0) == 0 && known.count(flag.substr(2)), "unknown argument '",
                  flag, "' (known:", names, ")");
    idtune::check(i + 1 < args.size(), "flag ", flag, " needs a value");
    values[flag.substr(2)] = args[++i];
  }
  return values;
}

double to_number(const std::map<std::string, std::string>& flags, const std::string& name) {
  try {
    return std::stod(flags.at(name));
  } catch (const std::exception&) {
    throw idtune::Error("--" + name + ": expected a number, got '" + flags.at(name) + "'");
  }
}

/// The engine on the paper's 1-D problem (spec §7): a sampler of N(cθ, 1) is tuned so that
/// its samples maximise R(x) = −(x − θ*)², with the exact adjoint and Adam, nested loop.
int run_demo(const Args& args) {
  auto flags = parse_flags(args, {{"iterations", "150"}, {"target", "2.0"}, {"steps", "50"},
                                  {"batch", "512"}, {"beta", "0"}, {"seed", "0"}});
  const double target = to_number(flags, "target"), beta = to_number(flags, "beta");
  const auto iterations = static_cast<int64_t>(to_number(flags, "iterations"));
  const auto batch = static_cast<int64_t>(to_number(flags, "batch"));
  idtune::check(iterations >= 1 && batch >= 2, "--iterations must be >= 1 and --batch >= 2");

  auto model = idtune::make_ou_gaussian_model({});
  auto reference = model.frozen_copy();
  model.module().attr("kappa").toTensor().requires_grad_(false);  // tune θ only
  const auto params = model.trainable_parameters();
  idtune::SamplerOptions sampler_options;
  sampler_options.steps = static_cast<int64_t>(to_number(flags, "steps"));
  idtune::Sampler sampler(sampler_options, model);
  idtune::AdjointSolver adjoint(sampler, {1.0, beta});
  idtune::Noise noise(static_cast<uint64_t>(to_number(flags, "seed")));
  torch::optim::Adam optimiser(params, torch::optim::AdamOptions(0.05));
  auto reward = [target](const at::Tensor& x) { return -(x - target).pow(2).flatten(1).sum(1); };

  spdlog::info("demo: tune s(x,t) = -(x - theta e^-t) so that its samples maximise -(x - {})^2",
               target);
  spdlog::info("      sampler sde-euler, K = {}, batch {}, beta = {}, Adam lr 0.05, exact adjoint",
               sampler.num_steps(), batch, beta);
  const double c = 1 - std::exp(-2.0);  // π*(θ) = N(cθ, 1) in continuous time
  for (int64_t it = 0; it < iterations; ++it) {
    auto path = idtune::sample_path(sampler, model, idtune::initial_state(model, batch, noise, it),
                                    noise, it);
    auto g = adjoint.gradient(model, &reference, params, path, reward);
    optimiser.zero_grad();
    params[0].mutable_grad() = -g.grad[0];  // descend ℓ = −E[J]
    optimiser.step();
    if (it % 25 == 0 || it + 1 == iterations)
      spdlog::info("iter {:4d}  theta {:+.4f}  sample mean {:+.4f}  reward {:+.4f}  KL {:.4f}", it,
                   params[0].item<double>(), path.final_state().mean().item<double>(),
                   g.reward.mean().item<double>(), g.kl.mean().item<double>());
  }
  spdlog::info("done: theta = {:.4f}; the sampler's mean c*theta = {:.4f} (target {})",
               params[0].item<double>(), c * params[0].item<double>(), target);
  return 0;
}

void print_usage() {
  std::puts(
      "usage: idtune <command> [flags]\n"
      "  demo   tune the paper's 1-D Gaussian sampler towards a target mean\n"
      "         [--iterations 150] [--target 2.0] [--steps 50] [--batch 512] [--beta 0] [--seed 0]");
}

}  // namespace

int main(int argc, char** argv) {
  const Args args(argv + 1, argv + argc);
  if (args.empty() || args[0] == "--help" || args[0] == "-h") {
    print_usage();
    return args.empty() ? 2 : 0;
  }
  const std::map<std::string, std::function<int(const Args&)>> commands = {{"demo", run_demo}};
  try {
    const auto command = commands.find(args[0]);
    idtune::check(command != commands.end(), "unknown command '", args[0],
                  "' (run idtune --help)");
    idtune::use_all_cores();
    return command->second(Args(args.begin() + 1, args.end()));
  } catch (const std::exception& e) {
    spdlog::error("{}", e.what());
    return 1;
  }
}
