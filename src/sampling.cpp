#include "idtune/sampling.h"

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

SamplePath sample_path(const Sampler& sampler, const ScoreModel& model, const at::Tensor& y0,
                       const Noise& noise, uint64_t stream) {
  torch::NoGradGuard no_grad;
  const int64_t batch = y0.size(0);
  SamplePath path{{y0}};
  for (int64_t k = 0; k < sampler.num_steps(); ++k) {
    const auto& y = path.states.back();
    const auto index = sampler.indices(batch, k);
    const auto xi =
        sampler.needs_noise() ? step_noise(model, noise, stream, k, batch) : at::Tensor();
    path.states.push_back(sampler.advance(model, y, index, xi));
  }
  return path;
}

}  // namespace idtune
