#pragma once
// A potential V(x, θ) on R^d with parameters θ ∈ R^p: π*(θ) ∝ exp(−V(·, θ)) (spec §6).
//
// Algorithm 2 needs ∇ₓV per particle (the Langevin step) and, for θ, only weighted sums of
// per-particle gradients: Cov[R, ∇θV] = Σₙ wₙ ∇θV(xₙ, θ) with wₙ = (Rₙ − R̄)/n, and
// E[∇θV] with wₙ = 1/n. A weighted sum is one vector-Jacobian product, ∇θ Σₙ wₙ V(xₙ, θ):
// one backward pass instead of n, and exact, so the per-particle Jacobian [n, p] is never
// formed (no batched-gradient tricks needed, and any TorchScript V works unchanged).

#include <ATen/core/Tensor.h>

#include <memory>
#include <string>

namespace torch::jit {
struct Module;
}

namespace idtune {

class Potential {
 public:
  virtual ~Potential() = default;

  /// d, the dimension of x.
  virtual int64_t dim() const = 0;
  /// p, the number of parameters in θ.
  virtual int64_t parameter_count() const = 0;

  /// V(x, θ) for particles x [n, d] and θ [p]: [n]. Differentiable in x and θ.
  virtual at::Tensor value(const at::Tensor& x, const at::Tensor& theta) const = 0;

  /// ∇ₓV(x, θ): [n, d]. By autograd unless overridden; differentiable in θ when θ requires
  /// grad (unrolling differentiates the Langevin step through it).
  virtual at::Tensor grad_x(const at::Tensor& x, const at::Tensor& theta) const;

  /// Σₙ wₙ ∇θV(xₙ, θ) for weights w [n]: [p]. One vector-Jacobian product (see above).
  virtual at::Tensor weighted_grad_theta(const at::Tensor& x, const at::Tensor& theta,
                                         const at::Tensor& weights) const;

  /// log π*(θ)(x) when V is a normalised negative log-density (Gaussian mixtures), else −V,
  /// which is the log-likelihood up to the unknown log Z(θ). [n].
  virtual at::Tensor log_likelihood(const at::Tensor& x, const at::Tensor& theta) const;
  /// Whether log_likelihood() is normalised.
  virtual bool normalised() const { return false; }

  /// θ in the coordinates that are compared with a target (mixture weights rather than
  /// logits, which are defined up to a constant): θ itself unless overridden.
  virtual at::Tensor canonical(const at::Tensor& theta) const { return theta; }
  /// Short description for logs, e.g. "gaussian-mixture(6 wells, logits)".
  virtual std::string describe() const = 0;
};

/// A user potential: a TorchScript module whose forward(x [n, d], θ [p]) returns V [n].
class TorchScriptPotential : public Potential {
 public:
  /// Loads `file` onto `device`/`dtype` and checks the contract with a probe call; errors
  /// name the file and say what was found.
  TorchScriptPotential(const std::string& file, int64_t dim, int64_t parameter_count,
                       c10::Device device, c10::ScalarType dtype);
  /// Wraps an already loaded module (tests).
  TorchScriptPotential(torch::jit::Module module, std::string name, int64_t dim,
                       int64_t parameter_count, c10::Device device, c10::ScalarType dtype);
  ~TorchScriptPotential() override;

  int64_t dim() const override { return dim_; }
  int64_t parameter_count() const override { return parameter_count_; }
  at::Tensor value(const at::Tensor& x, const at::Tensor& theta) const override;
  std::string describe() const override;

 private:
  void check_contract(c10::Device device, c10::ScalarType dtype) const;

  std::unique_ptr<torch::jit::Module> module_;
  std::string name_;
  int64_t dim_, parameter_count_;
};

}  // namespace idtune
