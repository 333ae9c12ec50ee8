// idtune eval --model tuned.pt [--reference base.pt] [--reward spec] [--classifier c.pt]
//             [--data images-idx3-ubyte.gz]

#include "commands.h"
#include "idtune/diffusion/conditions.h"
#include "idtune/diffusion/sampling.h"
#include "idtune/eval/classifier.h"
#include "idtune/eval/idx_images.h"
#include "idtune/training/reward.h"

#include <spdlog/spdlog.h>
#include <torch/torch.h>

#include <cstdio>
#include <optional>

namespace idtune::cli {

namespace {

/// Samples of one model with their rewards, (with a reference) path-KL increments, and (for a
/// conditional model) their class labels.
struct Evaluation {
  at::Tensor images, reward, kl, labels;
};

/// What is sampled: n samples in batches, their noise seed, a conditional model's labels.
struct EvalSamples {
  int64_t n, batch;
  uint64_t seed;
  std::optional<ConditionSet> conditions;
};

Evaluation evaluate(const Sampler& sampler, const ScoreModel& model, const ScoreModel* reference,
                    const Reward& reward, const EvalSamples& s) {
  torch::NoGradGuard no_grad;
  const Noise noise(s.seed);
  const int64_t n = s.n, batch = s.batch;
  // The path KL needs σ_k > 0 and a reference to compare with.
  const bool with_kl = sampler.stochastic() && reference != nullptr;
  std::vector<at::Tensor> images, rewards, kls, labels;
  for (int64_t start = 0, stream = 0; start < n; start += batch, ++stream) {
    const int64_t b = std::min(batch, n - start);
    const auto y0 = initial_state(model, b, noise, stream);
    const auto c = s.conditions ? s.conditions->draw(noise, stream, b, y0.options()) : at::Tensor();
    SampleWithKl sample;
    if (with_kl) {
      sample = sample_with_path_kl(sampler, model, *reference, y0, {noise, uint64_t(stream)}, c);
    } else {
      sample = {sample_path(sampler, model, y0, noise, stream, c).final_state(),
                torch::zeros({b}, y0.options())};
    }
    const auto decoded = model.images(sample.final_state);  // a latent model's decoded images
    rewards.push_back(reward(decoded, c));
    kls.push_back(sample.kl);
    images.push_back(decoded.cpu());
    if (c.defined()) labels.push_back(c.cpu());
    spdlog::info("eval: {}/{} samples", start + b, n);
  }
  return {torch::cat(images), torch::cat(rewards), torch::cat(kls),
          labels.empty() ? at::Tensor() : torch::cat(labels)};
}

double mean_of(const at::Tensor& x) { return x.mean().item<double>(); }
double standard_error(const at::Tensor& x) {
  return x.std().item<double>() / std::sqrt(static_cast<double>(x.numel()));
}

int run_eval(const Flags& flags) {
  const auto& classifier_path = flags.text("classifier");
  const auto& data_path = flags.text("data");
  check(data_path.empty() || !classifier_path.empty(),
        "idtune eval: --data needs --classifier (the FD is computed in its features)");
  const auto options = model_options(flags);
  const auto model = ScoreModel::load(flags.text("model"), options);
  std::optional<ScoreModel> reference;
  if (!flags.text("reference").empty())
    reference = ScoreModel::load(flags.text("reference"), options).frozen_copy();
  const auto reward = in_context("--reward", [&] {
    return Reward::parse(flags.text("reward"), image_card(model.card()), options.device,
                         options.dtype);
  });
  const Sampler sampler = make_sampler(flags, model);
  const int64_t n = flags.integer("n", 2, 1000000), batch = flags.integer("batch", 1, 1000000);
  EvalSamples samples{n, batch, noise_seed(flags), std::nullopt};
  if (const auto classes = flags.integers("classes"); !classes.empty()) {
    samples.conditions = ConditionSet::classes(classes);
    in_context("--classes", [&] {
      model.check_conditions(samples.conditions->all().to(options.device), int64_t(classes.size()));
    });
  }
  const auto* ref = reference ? &*reference : nullptr;
  const auto tuned = evaluate(sampler, model, ref, reward, samples);

  nlohmann::json result = {{"model", flags.text("model")},
                           {"reward", reward.name()},
                           {"samples", n},
                           {"sampler", to_json(sampler.options())},
                           {"reward_mean", mean_of(tuned.reward)},
                           {"reward_std", tuned.reward.std().item<double>()}};
  if (tuned.labels.defined()) {  // per class: reward (and path KL) of its samples
    for (const int64_t label : flags.integers("classes")) {
      const auto mask = tuned.labels.eq(label).to(tuned.reward.device());
      if (!mask.any().item<bool>()) continue;
      auto& entry = result["by_class"][std::to_string(label)];
      entry["samples"] = mask.sum().item<int64_t>();
      entry["reward_mean"] = mean_of(tuned.reward.masked_select(mask));
      if (reference && sampler.stochastic())
        entry["path_kl"] = mean_of(tuned.kl.masked_select(mask));
    }
  }
  std::optional<Evaluation> base;
  if (reference) {
    base = evaluate(sampler, *reference, ref, reward, samples);
    result["reference"] = flags.text("reference");
    result["reference_reward_mean"] = mean_of(base->reward);
    if (sampler.stochastic()) {
      result["path_kl"] = mean_of(tuned.kl);
      result["path_kl_stderr"] = standard_error(tuned.kl);
    }
  }
  if (!classifier_path.empty()) {
    const auto classifier = Classifier::load(classifier_path, options.device, options.dtype);
    const auto samples = classifier.feature_statistics(tuned.images);
    if (base) {
      result["fd_to_reference"] =
          frechet_distance(samples, classifier.feature_statistics(base->images));
    }
    if (!data_path.empty()) {
      const auto data = read_idx_images(data_path, model.card().data_range);
      check(data.size(0) >= 2, "idtune eval: --data '", data_path, "' holds ", data.size(0),
            " images; the FD needs at least 2");
      result["data"] = data_path;
      result["fd_to_data"] = frechet_distance(samples, classifier.feature_statistics(data));
    }
  }
  std::puts(result.dump(2).c_str());
  return 0;
}

}  // namespace

Command eval_command() {
  return {"eval", "reward, path KL to a reference, and (with a classifier) FD of a model's samples",
          with_sampling_flags(
              {{"model", "", "TorchScript score model to evaluate", false, false, true},
               {"reference", "", "the reference (pretrained) model: adds path KL and FD to it"},
               {"reward", "brightness", "reward spec"},
               {"classifier", "", "TorchScript classifier with features(x): adds the FD"},
               {"data", "", "idx image file (.gz or not): adds the FD of samples to it"},
               {"n", "256", "number of samples"},
               {"batch", "64", "samples per batch"},
               {"classes", "", "conditional models: labels drawn per sample (e.g. 0,1,2)"}}),
          run_eval};
}

}  // namespace idtune::cli
