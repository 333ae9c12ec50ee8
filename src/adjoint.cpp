#include "idtune/adjoint.h"

#include "idtune/error.h"
#include "idtune/name_table.h"
#include "idtune/girsanov_kl.h"

#include <torch/torch.h>

namespace idtune {

AdjointSolver::AdjointSolver(const Sampler& sampler, AdjointOptions options)
    : sampler_(sampler), options_(options) {
  check(options.lambda >= 0, "lambda = ", options.lambda, " must be >= 0");
  check(options.beta >= 0, "beta = ", options.beta, " must be >= 0");
  check(options.beta == 0 || sampler.stochastic(), "beta = ", options.beta, " needs a stochastic",
        " sampler, but '", name_of(sampler.options().kind, sampler_names()),
        "' is deterministic (sigma_k = 0): the path KL to the reference (Girsanov, spec 3) is",
        " infinite there. Use sde-euler or ddpm, or set beta = 0");
}

AdjointStep AdjointSolver::step(const ScoreModel& model, const ScoreModel* reference,
                                const std::vector<at::Tensor>& params, const at::Tensor& y,
                                const at::Tensor& a_next, const at::Tensor& k) const {
  const bool with_kl = options_.beta > 0;
  check(!with_kl || reference != nullptr, "beta > 0 needs a reference model");
  torch::AutoGradMode enable_grad(true);
  auto y_k = y.detach().requires_grad_(true);
  auto mean = sampler_.mean(model, y_k, k);
  auto lagrangian = (a_next * mean).sum();  // L_k = ⟨a_{k+1}, m_k(y; θ)⟩ − β c_k(y; θ)
  at::Tensor kl;
  if (with_kl) {
    auto mean_reference = sampler_.mean(*reference, y_k, k);
    kl = girsanov_increment(mean, mean_reference, sampler_.sigma(k));
    lagrangian = lagrangian - options_.beta * kl.sum();
  }
  std::vector<at::Tensor> inputs{y_k};
  inputs.insert(inputs.end(), params.begin(), params.end());
  auto grads = torch::autograd::grad({lagrangian}, inputs, {}, /*retain_graph=*/false,
                                     /*create_graph=*/false, /*allow_unused=*/true);
  AdjointStep result{grads[0], {}, with_kl ? kl.detach() : torch::zeros({y.size(0)}, y.options())};
  for (size_t i = 0; i < params.size(); ++i)
    result.grad.push_back(grads[i + 1].defined() ? grads[i + 1] : torch::zeros_like(params[i]));
  return result;
}

namespace {

void accumulate(std::vector<at::Tensor>& total, const std::vector<at::Tensor>& step) {
  if (total.empty()) {
    total = step;
    return;
  }
  for (size_t i = 0; i < total.size(); ++i) total[i].add_(step[i]);
}

void average_over_batch(std::vector<at::Tensor>& grad, int64_t batch) {
  for (auto& g : grad) g.div_(batch);
}

}  // namespace

AdjointGradient AdjointSolver::gradient(const ScoreModel& model, const ScoreModel* reference,
                                        const std::vector<at::Tensor>& params,
                                        const SamplePath& path, const RewardFn& reward) const {
  const int64_t K = sampler_.num_steps(), batch = path.final_state().size(0);
  check(static_cast<int64_t>(path.states.size()) == K + 1, "adjoint: the path has ",
        path.states.size(), " states, the sampler needs K + 1 = ", K + 1);
  auto terminal = evaluate_terminal_reward(reward, path.final_state(), options_.lambda);
  AdjointGradient out{{}, terminal.reward, torch::zeros_like(terminal.reward)};
  at::Tensor a = terminal.cotangent;
  for (int64_t k = K - 1; k >= 0; --k) {
    auto s = step(model, reference, params, path.states[k], a, sampler_.indices(batch, k));
    a = s.a;
    accumulate(out.grad, s.grad);
    out.kl.add_(s.kl);
  }
  average_over_batch(out.grad, batch);
  return out;
}

AdjointGradient AdjointSolver::gradient_reverse_ode(const ScoreModel& model,
                                                    const std::vector<at::Tensor>& params,
                                                    const at::Tensor& y_final,
                                                    const RewardFn& reward) const {
  for (int64_t k = 0; k < sampler_.num_steps(); ++k)
    check(sampler_.step(k).sigma == 0, "the reverse-ODE adjoint needs a deterministic sampler ",
          "(ode-euler or ddim), got '", name_of(sampler_.options().kind, sampler_names()), "'");
  const int64_t K = sampler_.num_steps(), batch = y_final.size(0);
  auto terminal = evaluate_terminal_reward(reward, y_final, options_.lambda);
  AdjointGradient out{{}, terminal.reward, torch::zeros_like(terminal.reward)};
  at::Tensor a = terminal.cotangent, y = y_final.detach();
  for (int64_t k = K - 1; k >= 0; --k) {
    const auto index = sampler_.indices(batch, k);
    {
      torch::NoGradGuard no_grad;
      y = sampler_.reconstruct_previous(model, y, index);
    }
    auto s = step(model, nullptr, params, y, a, index);
    a = s.a;
    accumulate(out.grad, s.grad);
  }
  average_over_batch(out.grad, batch);
  return out;
}

}  // namespace idtune
