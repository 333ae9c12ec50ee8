// idtune eval --model tuned.pt --reference base.pt [--reward spec] [--classifier c.pt]

#include "commands.h"
#include "idtune/backprop_through_sampler.h"
#include "idtune/frechet_distance.h"
#include "idtune/reward.h"
#include "idtune/sampling.h"

#include <spdlog/spdlog.h>
#include <torch/script.h>
#include <torch/torch.h>

#include <cstdio>
#include <optional>

namespace idtune::cli {

namespace {

/// Samples of one model with their rewards and path-KL increments to the reference.
struct Evaluation {
  at::Tensor images, reward, kl;
};

Evaluation evaluate(const Sampler& sampler, const ScoreModel& model, const ScoreModel& reference,
                    const Reward& reward, int64_t n, int64_t batch, uint64_t seed) {
  torch::NoGradGuard no_grad;
  const Noise noise(seed);
  const double beta = sampler.stochastic() ? 1.0 : 0.0;  // the path KL needs σ_k > 0
  std::vector<at::Tensor> images, rewards, kls;
  for (int64_t start = 0, stream = 0; start < n; start += batch, ++stream) {
    const int64_t b = std::min(batch, n - start);
    const auto y0 = initial_state(model, b, noise, stream);
    auto u = unrolled_objective(sampler, model, &reference, y0, noise, stream, reward.function(),
                                1.0, beta, /*backprop_steps=*/0);
    rewards.push_back(u.reward);
    kls.push_back(u.kl);
    images.push_back(u.final_state);
  }
  return {torch::cat(images), torch::cat(rewards), torch::cat(kls)};
}

/// Fréchet distance in the classifier's `features(x)` between two sets of images.
double feature_distance(const std::string& classifier_path, const ScoreModel& model,
                        const at::Tensor& a, const at::Tensor& b) {
  torch::jit::Module classifier;
  try {
    classifier = torch::jit::load(classifier_path, model.device());
  } catch (const std::exception& e) {
    throw Error("cannot load classifier '" + classifier_path + "' as TorchScript");
  }
  check(classifier.find_method("features").has_value(), "classifier '", classifier_path,
        "' has no features(x) method (the penultimate-layer features the FD is computed in)");
  classifier.to(model.dtype());
  classifier.eval();
  auto features = [&](const at::Tensor& x) {
    return classifier.get_method("features")({x}).toTensor().to(torch::kFloat64).flatten(1);
  };
  return frechet_distance(gaussian_statistics(features(a)), gaussian_statistics(features(b)));
}

int run_eval(const Flags& flags) {
  const auto options = model_options(flags);
  const auto model = ScoreModel::load(flags.text("model"), options);
  const auto reference = ScoreModel::load(flags.text("reference"), options).frozen_copy();
  const auto reward =
      Reward::parse(flags.text("reward"), model.card(), options.device, options.dtype);
  const Sampler sampler(sampler_options(flags), model);
  const int64_t n = flags.integer("n"), batch = flags.integer("batch");
  check(n >= 2 && batch >= 1, "idtune eval: --n must be >= 2 and --batch >= 1");
  const auto seed = static_cast<uint64_t>(flags.integer("seed"));
  const auto tuned = evaluate(sampler, model, reference, reward, n, batch, seed);
  const auto base = evaluate(sampler, reference, reference, reward, n, batch, seed);

  nlohmann::json result = {
      {"model", flags.text("model")},
      {"reference", flags.text("reference")},
      {"reward", reward.name()},
      {"samples", n},
      {"reward_mean", tuned.reward.mean().item<double>()},
      {"reward_std", tuned.reward.std().item<double>()},
      {"reference_reward_mean", base.reward.mean().item<double>()},
      {"path_kl", sampler.stochastic() ? nlohmann::json(tuned.kl.mean().item<double>()) : nullptr},
      {"path_kl_stderr", sampler.stochastic()
                             ? nlohmann::json(tuned.kl.std().item<double>() / std::sqrt(n))
                             : nullptr}};
  if (!flags.text("classifier").empty())
    result["fd_to_reference"] =
        feature_distance(flags.text("classifier"), model, tuned.images, base.images);
  std::puts(result.dump(2).c_str());
  return 0;
}

}  // namespace

Command eval_command() {
  return {"eval", "reward, path KL to a reference and (with a classifier) FD of a model's samples",
          with_sampling_flags(
              {{"model", "", "TorchScript score model to evaluate", false, false, true},
               {"reference", "", "the reference (pretrained) model", false, false, true},
               {"reward", "brightness", "reward spec"},
               {"classifier", "", "TorchScript classifier with features(x): adds the FD"},
               {"n", "256", "number of samples"},
               {"batch", "64", "samples per batch"}}),
          run_eval};
}

}  // namespace idtune::cli
