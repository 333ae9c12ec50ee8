#pragma once
// Rewards R: images [B, C, H, W] in the model's data range (ModelCard::data_range) -> [B],
// differentiable in the images: the R of F(π) = −λ E[R] + β KL (spec §1). A reward is named by
// a spec string, a weighted sum of built-in rewards and TorchScript files:
//
//   spec := term ("+" term)*          term := [weight "*"] name
//   name := brightness | red | channel-mean:<c> | classifier:<file.pt>:<class>
//         | classifier-cond:<file.pt> | <file.pt>
//
// e.g. `brightness`, `0.5*brightness + 2*red`, `classifier:models/fashion_classifier.pt:7`.
// Weights are plain decimals ("-0.5", "2", "1e-3"; no "+" in an exponent); paths cannot hold
// "+" or "*". Built-ins see pixels mapped to [0, 1] by the card's data range, u = (x−lo)/(hi−lo):
//   brightness        mean of u over C, H, W
//   red               mean of u over the red channel minus the mean over green and blue (C = 3)
//   channel-mean:<c>  mean of u over channel c
//   classifier:f:k    log p(k | x) = log_softmax(f(x))_k, f a TorchScript module x -> logits [B, K]
//   classifier-cond:f log p(c | x) for each sample's own class label c (class-conditional runs)
//   <file.pt>         a TorchScript module whose forward maps x [B, C, H, W] -> [B]

#include "idtune/diffusion/model_card.h"
#include "idtune/diffusion/reward_fn.h"

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>
#include <c10/core/ScalarType.h>

#include <memory>
#include <string>

namespace idtune {

class Reward {
 public:
  /// Parses a reward spec (grammar above) for models described by `card`; loads any TorchScript
  /// file on `device` in `dtype` (its parameters frozen) and probes it with a random batch of 2
  /// images of the card's shape, checking the output shape. Throws idtune::Error naming the spec
  /// part and what is valid: unknown names (listing the valid ones), malformed weights, empty
  /// terms, channel or class indices out of range, missing or unreadable files.
  static Reward parse(const std::string& spec, const ModelCard& card,
                      c10::Device device = c10::kCPU, c10::ScalarType dtype = c10::kFloat);

  /// R(x) = Σ_i w_i R_i(x) per image, [B]. Throws idtune::Error naming the reward (and the
  /// term) if a term returns a shape other than [B], if the result holds NaN or Inf (one
  /// device-to-host sync per call), or if `images` requires grad, grad mode is on, and a term
  /// does not depend differentiably on the images.
  /// `c`: the samples' conditions, for terms that read them (classifier-cond); undefined for
  /// an unconditional model.
  at::Tensor operator()(const at::Tensor& images, const at::Tensor& c = {}) const;

  /// The spec it was built from, normalised: terms joined by " + ", no other spaces, weights
  /// in shortest round-trip form, weight 1 left out (" 1*red+0.50 * brightness" ->
  /// "red + 0.5*brightness"). Parsing it again gives the same reward.
  const std::string& name() const;

  /// As the engine's RewardFn; shares this reward's modules.
  RewardFn function() const;

 private:
  struct State;
  explicit Reward(std::shared_ptr<const State> state);
  std::shared_ptr<const State> state_;
};

}  // namespace idtune
