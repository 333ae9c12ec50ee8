#include "idtune/langevin/potential.h"

#include "idtune/core/error.h"
#include "idtune/core/torchscript.h"

#include <torch/script.h>
#include <torch/torch.h>

namespace idtune {

at::Tensor Potential::grad_x(const at::Tensor& x, const at::Tensor& theta) const {
  // create_graph when θ requires grad: the result then stays a function of θ.
  const bool keep_graph = theta.requires_grad();
  torch::AutoGradMode enable(true);
  auto x_leaf = x.detach().requires_grad_(true);
  const auto v = value(x_leaf, theta).sum();
  return torch::autograd::grad({v}, {x_leaf}, {}, keep_graph, keep_graph)[0];
}

at::Tensor Potential::weighted_grad_theta(const at::Tensor& x, const at::Tensor& theta,
                                          const at::Tensor& weights) const {
  torch::AutoGradMode enable(true);
  auto theta_leaf = theta.detach().requires_grad_(true);
  const auto weighted = (value(x.detach(), theta_leaf) * weights.detach()).sum();
  return torch::autograd::grad({weighted}, {theta_leaf})[0];
}

at::Tensor Potential::log_likelihood(const at::Tensor& x, const at::Tensor& theta) const {
  return -value(x, theta);
}

TorchScriptPotential::TorchScriptPotential(const std::string& file, int64_t dim,
                                           int64_t parameter_count, c10::Device device,
                                           c10::ScalarType dtype)
    : name_(file), dim_(dim), parameter_count_(parameter_count) {
  module_ = std::make_unique<torch::jit::Module>(load_torchscript(file, device, "potential"));
  module_->to(dtype);
  check_contract(device, dtype);
}

TorchScriptPotential::TorchScriptPotential(torch::jit::Module module, std::string name, int64_t dim,
                                           int64_t parameter_count, c10::Device device,
                                           c10::ScalarType dtype)
    : module_(std::make_unique<torch::jit::Module>(std::move(module))),
      name_(std::move(name)),
      dim_(dim),
      parameter_count_(parameter_count) {
  check_contract(device, dtype);
}

TorchScriptPotential::~TorchScriptPotential() = default;

at::Tensor TorchScriptPotential::value(const at::Tensor& x, const at::Tensor& theta) const {
  return call_torchscript(*module_, "forward", {x, theta}, "potential '" + name_ + "'");
}

std::string TorchScriptPotential::describe() const {
  return "torchscript('" + name_ + "', d=" + std::to_string(dim_) +
         ", p=" + std::to_string(parameter_count_) + ")";
}

void TorchScriptPotential::check_contract(c10::Device device, c10::ScalarType dtype) const {
  check(dim_ >= 1 && parameter_count_ >= 1, "potential '", name_, "': dim = ", dim_,
        " and parameters = ", parameter_count_, " must both be >= 1");
  const auto options = torch::dtype(dtype).device(device);
  const int64_t n = 3;
  const auto v = value(torch::zeros({n, dim_}, options), torch::zeros({parameter_count_}, options));
  check(v.dim() == 1 && v.size(0) == n, "potential '", name_, "': forward(x [", n, ", ", dim_,
        "], theta [", parameter_count_, "]) returned shape ", v.sizes(), ", expected [", n,
        "] (the contract: forward(x [n, d], theta [p]) -> V [n])");
}

}  // namespace idtune
