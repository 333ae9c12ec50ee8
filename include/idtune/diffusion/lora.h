#pragma once
// Low-rank adapters (LoRA) on any TorchScript model, without editing it: for each adapted
// weight W₀ (a Linear's [out, in] or a convolution's [out, in/groups, kh, kw]),
//     W = W₀ + (α/r) · B A,   A: [r, in·kh·kw],  B: [out, r]   (B A reshaped like W₀),
// recomputed before every forward and put in the module's slot for that call only. B starts
// at zero (the adapted model is the base model), A uniform in ±1/√fan_in (PEFT's default).
// Only A and B are tuned; the base weights stay frozen (docs/precision-and-lora.md).

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace torch::jit {
struct Module;
}

namespace idtune {

struct LoraOptions {
  /// r, the adapters' rank (0: no adapters).
  int64_t rank = 0;
  /// α; the update is scaled by α/r (0: α = r, a scale of 1).
  double alpha = 0;
  /// Regular expressions over weight names: adapt the 2-D and 4-D weights matching one (empty:
  /// every 2-D and 4-D parameter named like "…weight").
  std::vector<std::string> targets;

  double scale() const { return (alpha > 0 ? alpha : static_cast<double>(rank)) / rank; }
};

/// Throws InvalidOption ("lora.<key>") for a value outside its range.
void validate(const LoraOptions& options);

class LoraAdapters {
 public:
  /// Adapters for the weights of `module` that `options.targets` select; A drawn from `seed`.
  /// Throws naming the pattern that selects nothing, or a selected weight that is not 2-D/4-D.
  LoraAdapters(const torch::jit::Module& module, const LoraOptions& options, uint64_t seed,
               const std::string& model_name);

  /// While alive, each adapted slot of `module` holds W₀ + (α/r) B A (differentiable in A and
  /// B when grad mode is on); the base weights are put back after.
  class Applied {
   public:
    Applied(const LoraAdapters& adapters, const torch::jit::Module& module);
    ~Applied();
    Applied(const Applied&) = delete;
    Applied& operator=(const Applied&) = delete;

   private:
    const LoraAdapters& adapters_;
    const torch::jit::Module& module_;
  };

  /// Writes W₀ + (α/r) B A (detached) into `module`'s slots for good: the merged model.
  void merge_into(const torch::jit::Module& module) const;
  /// A copy whose A and B are new leaves (requires_grad as here); W₀ is shared (frozen).
  LoraAdapters clone() const;
  /// The adapters alone, each file atomically: `path` holds a dict {"<weight>.lora_A": A,
  /// "<weight>.lora_B": B} in torch.save's format, and the .json beside it the rank, α, scale,
  /// the adapted weights, the formula and the base model's file and SHA-1 (to apply them to
  /// that model only).
  void save(const std::string& path, const std::string& base_model) const;

  /// "<weight>.lora_A", "<weight>.lora_B" for each adapted weight, in the module's order.
  std::vector<std::pair<std::string, at::Tensor>> named_parameters() const;
  const LoraOptions& options() const { return options_; }
  /// The adapted weights' names.
  std::vector<std::string> targets() const;

 private:
  struct Adapter {
    std::string name;  // dotted, as in named_parameters()
    at::Tensor base;   // W₀, frozen
    at::Tensor a, b;
  };
  LoraAdapters() = default;
  at::Tensor delta(const Adapter& adapter) const;

  LoraOptions options_;
  std::vector<Adapter> adapters_;
};

}  // namespace idtune
