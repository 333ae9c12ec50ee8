#pragma once
// Problems with known answers shared by the tests (spec §7).

#include <ATen/core/Tensor.h>

#include <cmath>
#include <vector>

namespace idtune::testing {

/// The Euler chains of the 1-D OU problem with s(x, t) = −κ(x − θe^{−t}) are Gaussian:
/// m_k(y) = A_k y + C_k, so mean and variance follow exactly (β ≡ 2 for `ou`):
///   SDE: A = 1 + h − 2hκ, C = 2hκθe^{−τ}, σ² = 2h;   ODE: A = 1 + h − hκ, C = hκθe^{−τ}, σ = 0.
struct LinearGaussianStep {
  double A, C, variance;
};

inline std::vector<LinearGaussianStep> ou_euler_chain(double theta, double kappa, double t_max,
                                                      double t_min, int64_t K, bool stochastic) {
  std::vector<LinearGaussianStep> steps;
  const double h = (t_max - t_min) / K;
  for (int64_t k = 0; k < K; ++k) {
    const double tau = t_max - k * h, w = stochastic ? 2 * h : h;
    steps.push_back(
        {1 + h - w * kappa, w * kappa * theta * std::exp(-tau), stochastic ? 2 * h : 0});
  }
  return steps;
}

struct Moments {
  double mean, variance;
};

/// Moments of Y_K from Y_0 ∼ N(0, 1) by the exact linear recursion.
inline Moments chain_moments(const std::vector<LinearGaussianStep>& steps) {
  Moments m{0.0, 1.0};
  for (const auto& s : steps) m = {s.A * m.mean + s.C, s.A * s.A * m.variance + s.variance};
  return m;
}

/// Continuous-time end points of the reverse processes started from N(0, 1) at t_max, with
/// the exact score of p_data = N(θ, 1), integrated down to t_min (t_min = 0 gives spec §7's
/// N(cθ, 1), c = 1 − e^{−2T}, for the SDE and N((1 − e^{−T})θ, 1) for the ODE).
inline double sde_limit_mean(double theta, double t_max, double t_min) {
  return theta * (std::exp(-t_min) - std::exp(-2 * t_max + t_min));
}
inline double ode_limit_mean(double theta, double t_max, double t_min) {
  return theta * (std::exp(-t_min) - std::exp(-t_max));
}

}  // namespace idtune::testing
