#pragma once
// A TorchScript image classifier: forward(x [B, C, H, W]) -> logits [B, classes], and
// optionally features(x) -> [B, D], the penultimate-layer features a Fréchet distance is
// computed in (like FID's Inception pool features).

#include "idtune/eval/frechet_distance.h"

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>
#include <c10/core/ScalarType.h>

#include <memory>
#include <string>

namespace torch::jit {
struct Module;
}

namespace idtune {

class Classifier {
 public:
  /// Loads `path` onto `device` in `dtype`; throws idtune::Error when it is not TorchScript.
  static Classifier load(const std::string& path, c10::Device device, c10::ScalarType dtype);

  /// Logits of `images`, evaluated `batch` images at a time without gradients.
  at::Tensor logits(const at::Tensor& images, int64_t batch = 500) const;

  /// Fraction of `images` whose arg-max logit is `labels` [N].
  double accuracy(const at::Tensor& images, const at::Tensor& labels) const;

  /// features(x) as float64 [N, D]; throws idtune::Error if the module has no features method.
  at::Tensor features(const at::Tensor& images, int64_t batch = 500) const;

  /// Mean and covariance of the features of `images` (what an FD compares).
  GaussianStatistics feature_statistics(const at::Tensor& images) const;

 private:
  Classifier(std::string path, std::shared_ptr<torch::jit::Module> module);
  at::Tensor batched(const char* method, const at::Tensor& images, int64_t batch) const;

  std::string path_;
  std::shared_ptr<torch::jit::Module> module_;
  c10::Device device_ = c10::kCPU;
  c10::ScalarType dtype_ = c10::kFloat;
};

}  // namespace idtune
