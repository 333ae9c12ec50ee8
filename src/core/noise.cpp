#include "idtune/core/noise.h"

#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

#include <cmath>

namespace idtune {

namespace {
// SplitMix64 finaliser: decorrelates nearby (seed, stream, step) triples.
uint64_t mix(uint64_t z) {
  z += 0x9e3779b97f4a7c15ULL;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}
}  // namespace

at::Tensor Noise::normal(uint64_t stream, int64_t step, std::vector<int64_t> shape,
                         const c10::TensorOptions& options) const {
  const uint64_t key = mix(mix(mix(seed_) ^ stream) ^ static_cast<uint64_t>(step + 1));
  auto generator = at::make_generator<at::CPUGeneratorImpl>(key);
  auto xi = torch::randn(shape, generator, torch::dtype(torch::kFloat64));
  return xi.to(options.device(), options.dtype().toScalarType());
}

at::Tensor Noise::uniform_indices(uint64_t stream, int64_t step, int64_t count,
                                  int64_t size) const {
  const auto z = normal(stream, step, {count}, torch::kFloat64);
  const auto u = 0.5 * torch::erfc(-z / std::sqrt(2.0));
  return (u * double(size)).floor().to(torch::kLong).clamp(0, size - 1);
}

}  // namespace idtune
