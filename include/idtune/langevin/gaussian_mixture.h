#pragma once
// Gaussian-mixture potentials V(x, θ) = −log Σᵢ softmax(w)ᵢ N(x; μᵢ, Σᵢ), the exact negative
// log-density (so log_likelihood() is normalised). Two parameterisations of θ:
//
//   logits: θ = w ∈ R^m; μᵢ, Σᵢ fixed (the hexagon experiment, paper §5.1, App. C.1.1);
//   full:   θ = (w, μ₁…μ_m, U₁…U_m) with Σᵢ⁻¹ = UᵢUᵢᵀ, Uᵢ lower triangular stored row by row
//           (tril order) with the log of its diagonal, so every θ is a valid mixture
//           ("training from scratch" with means and covariances, App. C.1.2).

#include "idtune/core/name_table.h"
#include "idtune/core/noise.h"
#include "idtune/langevin/potential.h"

#include <ATen/core/Tensor.h>

namespace idtune {

enum class MixtureParameters { Logits, Full };
const NameTable<MixtureParameters>& mixture_parameter_names();

struct GaussianMixtureOptions {
  /// μ, [m, d].
  at::Tensor means;
  /// Σ, [m, d, d] symmetric positive definite; undefined: identity for every component.
  at::Tensor covariances;
  MixtureParameters parameters = MixtureParameters::Logits;
};

class GaussianMixture : public Potential {
 public:
  /// The means' device and dtype are the mixture's. Throws if shapes disagree or a
  /// covariance is not positive definite.
  explicit GaussianMixture(GaussianMixtureOptions options);

  int64_t dim() const override { return dim_; }
  int64_t parameter_count() const override;
  int64_t components() const { return components_; }
  MixtureParameters parameters() const { return options_.parameters; }

  at::Tensor value(const at::Tensor& x, const at::Tensor& theta) const override;
  /// Closed form: Σᵢ rᵢ(x) Σᵢ⁻¹ (x − μᵢ), r the responsibilities.
  at::Tensor grad_x(const at::Tensor& x, const at::Tensor& theta) const override;
  /// logits: closed form Σₙ wₙ (softmax(θ) − r(xₙ)); full: autograd (the base class).
  at::Tensor weighted_grad_theta(const at::Tensor& x, const at::Tensor& theta,
                                 const at::Tensor& weights) const override;
  at::Tensor log_likelihood(const at::Tensor& x, const at::Tensor& theta) const override;
  bool normalised() const override { return true; }
  /// (softmax(w), μ, Σ) flattened; the weights alone for `logits`.
  at::Tensor canonical(const at::Tensor& theta) const override;
  std::string describe() const override;

  /// θ for these logits and, for `full`, these means and covariances (undefined: the
  /// mixture's own, i.e. the options').
  at::Tensor pack(const at::Tensor& logits, const at::Tensor& means = {},
                  const at::Tensor& covariances = {}) const;
  /// softmax(w), [m].
  at::Tensor weights(const at::Tensor& theta) const;
  /// n exact samples of π*(θ), replayable: Noise (stream, step) gives both the component
  /// choice (through Φ of a normal draw) and the Gaussian offset.
  at::Tensor sample(int64_t n, const at::Tensor& theta, const Noise& noise, uint64_t stream,
                    int64_t step) const;

 private:
  /// log wᵢ, μᵢ, Uᵢ (Σᵢ⁻¹ = UᵢUᵢᵀ) and log N's constant log det Uᵢ − (d/2) log 2π.
  struct Components {
    at::Tensor log_weights, means, precision_chol, log_norm;
  };
  Components unpack(const at::Tensor& theta) const;
  /// log wᵢ + log N(xₙ; μᵢ, Σᵢ), [n, m], and Uᵢᵀ(xₙ − μᵢ), [n, m, d].
  std::pair<at::Tensor, at::Tensor> log_joint(const at::Tensor& x, const Components& c) const;
  void check_theta(const at::Tensor& theta) const;

  GaussianMixtureOptions options_;
  int64_t components_, dim_;
  Components fixed_;  // the options' μ and U (w unused)
};

}  // namespace idtune
