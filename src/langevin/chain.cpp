#include "idtune/langevin/chain.h"

#include "idtune/core/error.h"

#include <torch/torch.h>

#include <cmath>

namespace idtune {

namespace {
constexpr uint64_t kParticleStream = 0;
constexpr int64_t kMaxParticles = 10000000;
}  // namespace

at::Tensor langevin_step(const at::Tensor& x, const at::Tensor& grad_x_v, double gamma,
                         const at::Tensor& xi) {
  return x - gamma * grad_x_v + std::sqrt(2 * gamma) * xi;
}

LangevinChain::LangevinChain(int64_t particles, int64_t dim, double gamma, uint64_t seed,
                             const c10::TensorOptions& options)
    : gamma_(gamma), noise_(seed) {
  // Allocated here, [particles, d]: a typo such as 1e9 is refused, not an attempt at 16 GB.
  check_option(particles >= 1 && particles <= kMaxParticles, "sampler.particles", particles,
               "must be in [1, ", kMaxParticles, "]");
  check(dim >= 1, "Langevin chain: the dimension d = ", dim, " must be >= 1");
  check_option(std::isfinite(gamma) && gamma > 0, "sampler.gamma", gamma,
               "must be > 0 (the Langevin step size)");
  x_ = noise_.normal(kParticleStream, Noise::kInitial, {particles, dim}, options);
}

at::Tensor LangevinChain::next_noise() const {
  return noise_.normal(kParticleStream, steps_, x_.sizes().vec(), x_.options());
}

void LangevinChain::advance(const at::Tensor& grad_x_v) {
  set_particles(langevin_step(x_, grad_x_v, gamma_, next_noise()));
}

void LangevinChain::set_particles(at::Tensor x) {
  x_ = x.detach();
  ++steps_;
}

}  // namespace idtune
