#pragma once
// The signature every reward has in the engine: images [B, C, H, W] in the model's data
// range, and the samples' conditions (undefined for an unconditional model) -> rewards [B],
// differentiable in the images.

#include <ATen/core/Tensor.h>

#include <functional>
#include <type_traits>
#include <utility>

namespace idtune {

/// R(images, c). Built from a function of the images alone (most rewards) or of the images
/// and the conditions (e.g. log p(class = c | x)).
class RewardFn {
 public:
  RewardFn() = default;
  template <typename F, std::enable_if_t<std::is_invocable_r_v<at::Tensor, F, const at::Tensor&>,
                                         int> = 0>
  RewardFn(F f)  // NOLINT: implicit, as std::function
      : fn_([f = std::move(f)](const at::Tensor& x, const at::Tensor&) { return f(x); }) {}
  template <
      typename F,
      std::enable_if_t<std::is_invocable_r_v<at::Tensor, F, const at::Tensor&, const at::Tensor&>,
                       int> = 0>
  RewardFn(F f)  // NOLINT: implicit, as std::function
      : fn_(std::move(f)) {}

  at::Tensor operator()(const at::Tensor& images, const at::Tensor& c = {}) const {
    return fn_(images, c);
  }
  explicit operator bool() const { return static_cast<bool>(fn_); }

 private:
  std::function<at::Tensor(const at::Tensor&, const at::Tensor&)> fn_;
};

/// R(y) and the cotangent λ ∇_y Σ_b R(y_b); checks the shape and finiteness of R.
struct TerminalReward {
  at::Tensor reward;     // [B], detached
  at::Tensor cotangent;  // a_K, shaped like y
};
TerminalReward evaluate_terminal_reward(const RewardFn& reward, const at::Tensor& y, double lambda,
                                        const at::Tensor& c = {});

}  // namespace idtune
