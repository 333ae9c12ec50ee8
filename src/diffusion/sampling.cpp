#include "idtune/diffusion/sampling.h"

#include "idtune/core/error.h"
#include "idtune/diffusion/girsanov_kl.h"

#include <torch/torch.h>

namespace idtune {

at::Tensor initial_state(const ScoreModel& model, int64_t batch, const Noise& noise,
                         uint64_t stream) {
  return noise.normal(stream, Noise::kInitial, model.batch_shape(batch),
                      torch::dtype(model.dtype()).device(model.device()));
}

at::Tensor step_noise(const ScoreModel& model, const Noise& noise, uint64_t stream, int64_t k,
                      int64_t batch) {
  return noise.normal(stream, k, model.batch_shape(batch),
                      torch::dtype(model.dtype()).device(model.device()));
}

at::Tensor step_noise(const ScoreModel& model, const BatchNoise& noise, int64_t k,
                      int64_t local_batch) {
  const auto& shard = noise.shard;
  return shard.slice(
      step_noise(model, noise.noise, noise.stream, k, local_batch * shard.world_size));
}

SamplePath SamplePath::allocate(int64_t steps, const at::Tensor& y0) {
  std::vector<int64_t> shape{steps + 1};
  shape.insert(shape.end(), y0.sizes().begin(), y0.sizes().end());
  SamplePath path{torch::empty(shape, y0.options()), {}};
  path.record(y0);
  return path;
}

void SamplePath::record(const at::Tensor& state) {
  const auto slot = storage[static_cast<int64_t>(states.size())];
  slot.copy_(state);
  states.push_back(slot);
}

SamplePath sample_path(const Sampler& sampler, const ScoreModel& model, const at::Tensor& y0,
                       const Noise& noise, uint64_t stream, const at::Tensor& c) {
  torch::NoGradGuard no_grad;
  const int64_t batch = y0.size(0), K = sampler.num_steps();
  SamplePath path = SamplePath::allocate(K, y0);
  path.condition = c;
  for (int64_t k = 0; k < K; ++k) {
    const auto index = sampler.indices(batch, k);
    const auto xi =
        sampler.needs_noise() ? step_noise(model, noise, stream, k, batch) : at::Tensor();
    path.record(sampler.advance(model, path.final_state(), index, xi, c));
  }
  check_finite_path(path, sampler, model);
  return path;
}

void check_finite_path(const SamplePath& path, const Sampler& sampler, const ScoreModel& model) {
  if (torch::isfinite(path.final_state()).all().item<bool>()) return;
  size_t k = 0;
  while (k < path.states.size() && torch::isfinite(path.states[k]).all().item<bool>()) ++k;
  const auto time = sampler.times(
      torch::full({1}, std::max<int64_t>(static_cast<int64_t>(k) - 1, 0), torch::kLong));
  throw Error(detail::concat(
      model.name(), ": the samples became NaN or Inf at sampling step ", k, " of ",
      sampler.num_steps(), " (from t = ", time.item<double>(), "): the model returned ",
      "non-finite values there, or the sampler diverged (too few steps for this schedule, or ",
      "parameters tuned too far: lower optimiser.lr; the last checkpoint is intact)"));
}

SampleWithKl sample_with_path_kl(const Sampler& sampler, const ScoreModel& model,
                                 const ScoreModel& reference, const at::Tensor& y0,
                                 const BatchNoise& noise, const at::Tensor& c) {
  check(sampler.stochastic(), "the path KL needs a stochastic sampler (sigma_k > 0 at every step)");
  torch::NoGradGuard no_grad;
  const int64_t batch = y0.size(0);
  at::Tensor y = y0, kl = torch::zeros({batch}, y0.options());
  for (int64_t k = 0; k < sampler.num_steps(); ++k) {
    const auto index = sampler.indices(batch, k);
    const auto mean = sampler.mean(model, y, index, c), sigma = sampler.sigma(index);
    kl += girsanov_increment(mean, sampler.mean(reference, y, index, c), sigma);
    y = mean + sigma * step_noise(model, noise, k, batch);
  }
  return {y, kl};
}

}  // namespace idtune
