#pragma once
// A TorchScript score network plus its model card: s_θ(x, t) for a batch whose samples
// each carry their own time (spec §2, model contract). Whatever the network predicts
// (score, ε, v or x₀, with or without extra output channels), callers only ever see the score.
// A latent model also holds its decoder: images() are what rewards and grids see.

#include "idtune/core/precision.h"
#include "idtune/diffusion/lora.h"
#include "idtune/diffusion/model_card.h"
#include "idtune/diffusion/schedule.h"

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>
#include <c10/core/ScalarType.h>

#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace torch::jit {
struct Module;
}

namespace idtune {

struct ScoreModelOptions {
  /// Where the network runs: cpu or cuda[:n].
  c10::Device device = c10::kCPU;
  /// Floating type of parameters and samples: float32 or float64.
  c10::ScalarType dtype = c10::kFloat;
  /// The network's calls under autocast (bf16, fp16) or not (fp32); see precision.h.
  Precision precision = Precision::Fp32;
};

class ScoreModel {
 public:
  /// Loads `model_path` (TorchScript) and the card beside it (`model.pt` -> `model.json`);
  /// checks that forward(x, t) accepts the card's shape and returns [B, output_channels, H, W];
  /// loads the card's decoder, if any (a relative path is relative to the card's folder).
  static ScoreModel load(const std::string& model_path, const ScoreModelOptions& options = {});

  /// Wraps a module made in memory; validated like a loaded one. `name` labels messages;
  /// `null_tensor` [shape…] is the null condition of a tensor-conditioned card (null_file).
  ScoreModel(torch::jit::Module module, ModelCard card, const ScoreModelOptions& options = {},
             std::string name = "<in-memory model>", at::Tensor null_tensor = {});

  /// The network's prediction o(x, t[, c]) (its first C output channels); t is [B] in the
  /// schedule's time (continuous t or step index), fed as the card says; c the conditions of
  /// a conditional model (int64 labels [B] or a float tensor [B, shape…]), undefined otherwise.
  at::Tensor output(const at::Tensor& x, const at::Tensor& t, const at::Tensor& c = {}) const;
  /// The score s_θ(x, t[, c]) from the output, by the card's `prediction`.
  at::Tensor score(const at::Tensor& x, const at::Tensor& t, const at::Tensor& c = {}) const;
  /// Classifier-free guidance with scale w: (1 + w) s(x, t, c) − w s(x, t, ∅), both halves
  /// in one batched call; w = 0 is score(x, t, c). Needs the card's null condition when w ≠ 0.
  at::Tensor guided_score(const at::Tensor& x, const at::Tensor& t, const at::Tensor& c,
                          double w) const;
  /// The card's null condition ∅ for a batch (throws when the card has none).
  at::Tensor null_condition(int64_t batch) const;
  /// Throws idtune::Error unless `c` fits a batch of `batch`: undefined for an unconditional
  /// model; int64 [B] labels or a floating [B, shape…] tensor as the card says. Labels are
  /// range-checked here (one device sync): call it at boundaries, not per step.
  void check_conditions(const at::Tensor& c, int64_t batch) const;

  /// The images of samples: decoder(samples / scale_factor) for a latent model, else the
  /// samples themselves. Differentiable in the samples (the decoder's weights are frozen).
  at::Tensor images(const at::Tensor& samples) const;
  /// Attaches a latent model's decoder (the card must have a decoder section); checks that it
  /// maps latents of the card's shape to images of decoder.image_shape.
  void attach_decoder(torch::jit::Module decoder);
  /// Throws idtune::Error naming the op if one vector-Jacobian product of the score for x and
  /// the trainable parameters fails (e.g. an inference-only kernel recorded by a trace).
  void check_differentiable() const;

  const ModelCard& card() const;
  const Schedule& schedule() const;
  const std::string& name() const;
  c10::Device device() const;
  c10::ScalarType dtype() const;
  Precision precision() const;
  /// Sample shape [B, C, H, W] for a batch of `batch`.
  std::vector<int64_t> batch_shape(int64_t batch) const;

  /// Every floating parameter, with its dotted name; with adapters, then each adapter's A and
  /// B ("<weight>.lora_A", ".lora_B").
  std::vector<std::pair<std::string, at::Tensor>> named_parameters() const;
  /// The parameters with requires_grad set (θ, the ones tuned).
  std::vector<at::Tensor> trainable_parameters() const;

  /// Puts low-rank adapters on the weights `options.targets` select (A drawn from `seed`, B = 0:
  /// the model's output is unchanged); from now on only the adapters are trainable.
  void add_lora(const LoraOptions& options, uint64_t seed);
  /// The adapters, or null.
  const LoraAdapters* lora() const;
  /// A deep copy with the adapters merged into the weights and dropped (a plain copy when
  /// there are none): the model a user loads.
  ScoreModel merged() const;

  /// A deep copy with no trainable parameters (adapters merged): the reference model θ_ref of
  /// the KL.
  ScoreModel frozen_copy() const;
  /// A deep copy (parameters not shared).
  ScoreModel clone() const;
  torch::jit::Module& module() const;

  /// Writes the TorchScript file and its card, each atomically (temp file + rename); a latent
  /// model's decoder goes beside it as `<stem>_decoder.pt`, named by the saved card. With
  /// adapters, the merged model is written (the same forward signature: it loads anywhere).
  void save(const std::string& model_path) const;
  /// Same, with a card different from the model's own (e.g. with updated provenance).
  void save(const std::string& model_path, const ModelCard& card) const;

 private:
  struct State;
  explicit ScoreModel(std::shared_ptr<State> state);
  void validate() const;
  /// t as the network takes it: the step index (discrete) or time_scale · t.
  at::Tensor network_time(const at::Tensor& t) const;
  /// forward(x, t[, c]) of the network, refusing conditions that the card does not declare.
  at::Tensor network(const at::Tensor& x, const at::Tensor& t, const at::Tensor& c) const;
  /// ∂/∂wrt of the sum of the score at a random batch of 2 (undefined where a tensor does not
  /// reach the output).
  std::vector<at::Tensor> probe_gradients(const std::vector<at::Tensor>& wrt) const;
  /// Conditions for probes: the null condition, else zeros (undefined when unconditional).
  at::Tensor probe_conditions(int64_t batch) const;
  /// Throws unless conditions are given exactly when the card declares a condition (cheap: no
  /// device sync, so it runs on every network call).
  void check_presence(const at::Tensor& c) const;
  std::shared_ptr<State> state_;
};

/// The files ScoreModel::save(model_path) may write: the model first, then its card, decoder
/// and null condition (removed in this order, a half-removed model never looks whole).
std::vector<std::string> saved_model_files(const std::string& model_path);

}  // namespace idtune
