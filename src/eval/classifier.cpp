#include "idtune/eval/classifier.h"

#include "idtune/core/error.h"
#include "idtune/core/torchscript.h"

#include <torch/script.h>
#include <torch/torch.h>

namespace idtune {

Classifier::Classifier(std::string path, std::shared_ptr<torch::jit::Module> module)
    : path_(std::move(path)), module_(std::move(module)) {}

Classifier Classifier::load(const std::string& path, c10::Device device, c10::ScalarType dtype) {
  auto module = std::make_shared<torch::jit::Module>(load_torchscript(path, device, "classifier"));
  module->to(dtype);
  Classifier classifier(path, std::move(module));
  classifier.device_ = device;
  classifier.dtype_ = dtype;
  return classifier;
}

at::Tensor Classifier::batched(const char* method, const at::Tensor& images, int64_t batch) const {
  torch::NoGradGuard no_grad;
  std::vector<at::Tensor> outputs;
  for (int64_t start = 0; start < images.size(0); start += batch) {
    const auto x = images.narrow(0, start, std::min(batch, images.size(0) - start));
    outputs.push_back(
        call_torchscript(*module_, method, {x.to(device_, dtype_)}, "classifier '" + path_ + "'")
            .flatten(1)
            .cpu());
  }
  return torch::cat(outputs);
}

at::Tensor Classifier::logits(const at::Tensor& images, int64_t batch) const {
  return batched("forward", images, batch);
}

double Classifier::accuracy(const at::Tensor& images, const at::Tensor& labels) const {
  return logits(images).argmax(1).eq(labels.cpu()).to(torch::kFloat64).mean().item<double>();
}

at::Tensor Classifier::features(const at::Tensor& images, int64_t batch) const {
  return batched("features", images, batch).to(torch::kFloat64);
}

GaussianStatistics Classifier::feature_statistics(const at::Tensor& images) const {
  return gaussian_statistics(features(images));
}

}  // namespace idtune
