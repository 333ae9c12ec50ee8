#include "idtune/langevin/gaussian_mixture.h"

#include "idtune/core/error.h"

#include <torch/torch.h>

#include <cmath>

namespace idtune {

using torch::indexing::Slice;

const NameTable<MixtureParameters>& mixture_parameter_names() {
  static const NameTable<MixtureParameters> table = {{"logits", MixtureParameters::Logits},
                                                     {"full", MixtureParameters::Full}};
  return table;
}

namespace {

/// Entries of a d×d lower-triangular matrix, row by row: d(d+1)/2.
int64_t tril_size(int64_t d) { return d * (d + 1) / 2; }

/// U with Σ⁻¹ = UUᵀ, U lower triangular with a positive diagonal, for each Σ [m, d, d].
at::Tensor precision_cholesky(const at::Tensor& covariances) {
  // Σ itself first: a singular Σ would fail inside linalg_inv with a torch error.
  const auto info = std::get<1>(torch::linalg_cholesky_ex(covariances));
  for (int64_t k = 0; k < info.size(0); ++k)
    check(info[k].item<int64_t>() == 0, "gaussian mixture: covariances/", k,
          " is not symmetric positive definite");
  auto [u, precision_info] = torch::linalg_cholesky_ex(torch::linalg_inv(covariances));
  check(precision_info.max().item<int64_t>() == 0 && torch::isfinite(u).all().item<bool>(),
        "gaussian mixture: covariances: an inverse is not finite positive definite (a ",
        "covariance too close to singular)");
  return u;
}

}  // namespace

GaussianMixture::GaussianMixture(GaussianMixtureOptions options) : options_(std::move(options)) {
  auto& o = options_;
  check(o.means.defined() && o.means.dim() == 2 && o.means.size(0) >= 1,
        "gaussian mixture: means must be [m, d] with m >= 1, got ",
        o.means.defined() ? o.means.sizes() : c10::IntArrayRef{});
  components_ = o.means.size(0);
  dim_ = o.means.size(1);
  if (!o.covariances.defined())
    o.covariances = torch::eye(dim_, o.means.options()).expand({components_, dim_, dim_}).clone();
  check(o.covariances.sizes() == c10::IntArrayRef{components_, dim_, dim_},
        "gaussian mixture: covariances must be [m, d, d] = [", components_, ", ", dim_, ", ", dim_,
        "], got ", o.covariances.sizes());
  o.covariances = o.covariances.to(o.means.options());
  check(torch::allclose(o.covariances, o.covariances.transpose(1, 2)),
        "gaussian mixture: covariances must be symmetric");
  fixed_.means = o.means;
  fixed_.precision_chol = precision_cholesky(o.covariances);
  fixed_.log_norm = fixed_.precision_chol.diagonal(0, 1, 2).log().sum(1) -
                    0.5 * double(dim_) * std::log(2 * M_PI);
}

int64_t GaussianMixture::parameter_count() const {
  const int64_t m = components_, d = dim_;
  return options_.parameters == MixtureParameters::Logits ? m : m + m * d + m * tril_size(d);
}

void GaussianMixture::check_theta(const at::Tensor& theta) const {
  if (theta.dim() == 1 && theta.size(0) == parameter_count()) return;
  throw Error(detail::concat("gaussian mixture (", describe(), "): θ must have ", parameter_count(),
                             " entries, got shape ", theta.sizes()));
}

GaussianMixture::Components GaussianMixture::unpack(const at::Tensor& theta) const {
  check_theta(theta);
  const int64_t m = components_, d = dim_;
  Components c;
  c.log_weights = torch::log_softmax(theta.slice(0, 0, m), 0);
  if (options_.parameters == MixtureParameters::Logits) {
    c.means = fixed_.means;
    c.precision_chol = fixed_.precision_chol;
    c.log_norm = fixed_.log_norm;
    return c;
  }
  c.means = theta.slice(0, m, m + m * d).view({m, d});
  const auto entries = theta.slice(0, m + m * d).view({m, tril_size(d)});
  const auto index = torch::tril_indices(d, d, 0, torch::kLong);
  const auto rows = index[0], cols = index[1];
  const auto on_diagonal = rows.eq(cols).to(theta.device());
  const auto values = torch::where(on_diagonal, entries.exp(), entries);  // log-diagonal
  const auto flat_index = (rows * d + cols).to(theta.device());           // into the row-major d×d
  c.precision_chol =
      torch::zeros({m, d * d}, theta.options()).index_copy(1, flat_index, values).view({m, d, d});
  c.log_norm = torch::where(on_diagonal, entries, torch::zeros_like(entries)).sum(1) -
               0.5 * double(d) * std::log(2 * M_PI);
  return c;
}

std::pair<at::Tensor, at::Tensor> GaussianMixture::log_joint(const at::Tensor& x,
                                                             const Components& c) const {
  check(x.dim() == 2 && x.size(1) == dim_, "gaussian mixture: x must be [n, ", dim_, "], got ",
        x.sizes());
  const auto diff = x.unsqueeze(1) - c.means.unsqueeze(0);                 // [n, m, d]
  const auto z = torch::einsum("nmd,mde->nme", {diff, c.precision_chol});  // Uᵀ(x − μ)
  const auto log_joint = c.log_weights + c.log_norm - 0.5 * z.square().sum(2);
  return {log_joint, z};
}

at::Tensor GaussianMixture::value(const at::Tensor& x, const at::Tensor& theta) const {
  return -torch::logsumexp(log_joint(x, unpack(theta)).first, 1);
}

at::Tensor GaussianMixture::log_likelihood(const at::Tensor& x, const at::Tensor& theta) const {
  return -value(x, theta);
}

at::Tensor GaussianMixture::grad_x(const at::Tensor& x, const at::Tensor& theta) const {
  const auto c = unpack(theta);
  const auto [joint, z] = log_joint(x, c);
  const auto r = torch::softmax(joint, 1);                                           // [n, m]
  const auto precision_diff = torch::einsum("mde,nme->nmd", {c.precision_chol, z});  // Σ⁻¹(x−μ)
  return (r.unsqueeze(2) * precision_diff).sum(1);
}

at::Tensor GaussianMixture::weighted_grad_theta(const at::Tensor& x, const at::Tensor& theta,
                                                const at::Tensor& weights) const {
  if (options_.parameters == MixtureParameters::Full)
    return Potential::weighted_grad_theta(x, theta, weights);
  // ∂V/∂wⱼ = softmax(w)ⱼ − rⱼ(x).
  torch::NoGradGuard no_grad;
  const auto r = torch::softmax(log_joint(x, unpack(theta)).first, 1);
  return weights.sum() * torch::softmax(theta, 0) - torch::matmul(weights, r);
}

at::Tensor GaussianMixture::weights(const at::Tensor& theta) const {
  check_theta(theta);
  return torch::softmax(theta.slice(0, 0, components_), 0);
}

at::Tensor GaussianMixture::canonical(const at::Tensor& theta) const {
  const auto w = weights(theta);
  if (options_.parameters == MixtureParameters::Logits) return w;
  const auto c = unpack(theta);
  const auto precision = torch::matmul(c.precision_chol, c.precision_chol.transpose(1, 2));
  return torch::cat({w, c.means.flatten(), torch::linalg_inv(precision).flatten()});
}

at::Tensor GaussianMixture::pack(const at::Tensor& logits, const at::Tensor& means,
                                 const at::Tensor& covariances) const {
  const auto options = options_.means.options();
  check(logits.dim() == 1 && logits.size(0) == components_, "gaussian mixture: ", components_,
        " logits expected, got shape ", logits.sizes());
  if (options_.parameters == MixtureParameters::Logits) return logits.to(options);
  const auto mu = (means.defined() ? means : options_.means).to(options);
  const auto sigma = (covariances.defined() ? covariances : options_.covariances).to(options);
  check(mu.sizes() == options_.means.sizes(), "gaussian mixture: means must be ",
        options_.means.sizes(), ", got ", mu.sizes());
  check(sigma.sizes() == options_.covariances.sizes(), "gaussian mixture: covariances must be ",
        options_.covariances.sizes(), ", got ", sigma.sizes());
  const auto u = precision_cholesky(sigma);
  const auto index = torch::tril_indices(dim_, dim_, 0, torch::kLong);
  const auto rows = index[0], cols = index[1];
  auto entries = u.index({Slice(), rows, cols});
  entries = torch::where(rows.eq(cols), entries.log(), entries);
  return torch::cat({logits.to(options), mu.flatten(), entries.flatten()});
}

at::Tensor GaussianMixture::sample(int64_t n, const at::Tensor& theta, const Noise& noise,
                                   uint64_t stream, int64_t step) const {
  torch::NoGradGuard no_grad;
  const auto c = unpack(theta);
  const auto draw = noise.normal(stream, step, {n, dim_ + 1}, theta.options());
  const auto uniform = 0.5 * torch::erfc(-draw.select(1, 0) / std::sqrt(2.0));  // Φ(z)
  const auto cumulative = torch::cumsum(c.log_weights.exp(), 0);
  const auto k =
      torch::searchsorted(cumulative.contiguous(), uniform.contiguous()).clamp_max(components_ - 1);
  // x = μ + U⁻ᵀε has covariance U⁻ᵀU⁻¹ = (UUᵀ)⁻¹ = Σ.
  const auto eps = draw.slice(1, 1).unsqueeze(2);  // [n, d, 1]
  const auto u_t = c.precision_chol.index({k}).transpose(1, 2);
  const auto offset = torch::linalg_solve_triangular(u_t, eps, /*upper=*/true);
  return c.means.index({k}) + offset.squeeze(2);
}

std::string GaussianMixture::describe() const {
  return "gaussian-mixture(" + std::to_string(components_) + " components in R^" +
         std::to_string(dim_) + ", " + name_of(options_.parameters, mixture_parameter_names()) +
         ")";
}

}  // namespace idtune
