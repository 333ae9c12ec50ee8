#include "idtune/diffusion/adjoint.h"

#include "idtune/core/error.h"
#include "idtune/core/name_table.h"
#include "idtune/diffusion/girsanov_kl.h"

#include <torch/torch.h>

namespace idtune {

AdjointSolver::AdjointSolver(const Sampler& sampler, Objective objective)
    : sampler_(sampler), objective_(objective) {
  validate(objective);
  const auto kind = sampler.options().kind;
  const auto& name = name_of(kind, sampler_names());
  if (kind == SamplerKind::SdeEuler || kind == SamplerKind::Ddpm)  // its noise underflowed
    check_option(objective.beta == 0 || sampler.stochastic(), "objective.beta", objective.beta,
                 "needs noise at every sampling step, but '", name,
                 "' adds none at one (sigma_k = 0 in double precision): sampler.t_min = ",
                 sampler.options().t_min, " (or the schedule's betas) too small? Raise it, or ",
                 "set beta = 0");
  else
    check_option(objective.beta == 0 || sampler.stochastic(), "objective.beta", objective.beta,
                 "needs a stochastic sampler, but '", name,
                 "' is deterministic (sigma_k = 0): the path KL to the reference (Girsanov, ",
                 "spec 3) is infinite there. Use sde-euler or ddpm, or set beta = 0");
}

AdjointStep AdjointSolver::step(const TunedModel& tuned, const at::Tensor& y,
                                const at::Tensor& a_next, const at::Tensor& k,
                                const at::Tensor& c) const {
  const bool with_kl = objective_.beta > 0;
  check(!with_kl || tuned.reference != nullptr, "beta > 0 needs a reference model");
  torch::AutoGradMode enable_grad(true);
  auto y_k = y.detach().requires_grad_(true);
  auto mean = sampler_.mean(tuned.model, y_k, k, c);
  auto lagrangian = (a_next * mean).sum();  // L_k = ⟨a_{k+1}, m_k(y; θ)⟩ − β c_k(y; θ)
  at::Tensor kl;
  if (with_kl) {
    auto mean_reference = sampler_.mean(*tuned.reference, y_k, k, c);
    kl = girsanov_increment(mean, mean_reference, sampler_.sigma(k));
    lagrangian = lagrangian - objective_.beta * kl.sum();
  }
  std::vector<at::Tensor> inputs{y_k};
  inputs.insert(inputs.end(), tuned.params.begin(), tuned.params.end());
  auto grads = torch::autograd::grad({lagrangian}, inputs, {}, /*retain_graph=*/false,
                                     /*create_graph=*/false, /*allow_unused=*/true);
  AdjointStep result{grads[0], {}, with_kl ? kl.detach() : torch::zeros({y.size(0)}, y.options())};
  for (size_t i = 0; i < tuned.params.size(); ++i)
    result.grad.push_back(grads[i + 1].defined() ? grads[i + 1]
                                                 : torch::zeros_like(tuned.params[i]));
  return result;
}

AdjointState AdjointSolver::start(const RewardFn& reward, const at::Tensor& y_final,
                                  const at::Tensor& c) const {
  auto terminal = evaluate_terminal_reward(reward, y_final, objective_.lambda, c);
  return {terminal.cotangent, c, {{}, terminal.reward, torch::zeros_like(terminal.reward)}};
}

void AdjointSolver::step_back(const TunedModel& tuned, const at::Tensor& y, int64_t k,
                              AdjointState& state) const {
  auto s = step(tuned, y, state.a, sampler_.indices(y.size(0), k), state.condition);
  state.a = s.a;
  state.gradient.kl.add_(s.kl);
  auto& grad = state.gradient.grad;
  if (grad.empty()) {
    grad = s.grad;
    return;
  }
  for (size_t i = 0; i < grad.size(); ++i) grad[i].add_(s.grad[i]);
}

AdjointGradient AdjointSolver::finish(AdjointState state) {
  const int64_t batch = state.a.size(0);
  for (auto& g : state.gradient.grad) g.div_(batch);
  return std::move(state.gradient);
}

AdjointGradient AdjointSolver::gradient(const TunedModel& tuned, const SamplePath& path,
                                        const RewardFn& reward) const {
  const int64_t K = sampler_.num_steps();
  check(static_cast<int64_t>(path.states.size()) == K + 1, "adjoint: the path has ",
        path.states.size(), " states, the sampler needs K + 1 = ", K + 1);
  auto state = start(reward, path.final_state(), path.condition);
  for (int64_t k = K - 1; k >= 0; --k) step_back(tuned, path.states[k], k, state);
  return finish(std::move(state));
}

AdjointGradient AdjointSolver::gradient_reverse_ode(const TunedModel& tuned,
                                                    const at::Tensor& y_final,
                                                    const RewardFn& reward) const {
  for (int64_t k = 0; k < sampler_.num_steps(); ++k)
    check(sampler_.coefficients(k).sigma == 0,
          "the reverse-ODE adjoint needs a deterministic sampler ", "(ode-euler or ddim), got '",
          name_of(sampler_.options().kind, sampler_names()), "'");
  auto state = start(reward, y_final);
  at::Tensor y = y_final.detach();
  for (int64_t k = sampler_.num_steps() - 1; k >= 0; --k) {
    {
      torch::NoGradGuard no_grad;
      y = sampler_.reconstruct_previous(tuned.model, y, sampler_.indices(y.size(0), k));
    }
    step_back({tuned.model, tuned.params, nullptr}, y, k, state);
  }
  return finish(std::move(state));
}

}  // namespace idtune
