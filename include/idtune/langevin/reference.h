#pragma once
// Samples of p_ref for the KL term of Algorithm 2: a file of samples (.csv or a tensor saved
// with torch.save) or exact draws from a Gaussian mixture. Both are replayable from the seed.

#include "idtune/core/noise.h"
#include "idtune/langevin/gaussian_mixture.h"

#include <ATen/core/Tensor.h>

#include <memory>
#include <string>

namespace idtune {

class ReferenceSamples {
 public:
  virtual ~ReferenceSamples() = default;
  /// A batch of p_ref samples [b, d] for outer step `step`.
  virtual at::Tensor draw(int64_t step) const = 0;
  virtual std::string describe() const = 0;
};

/// Exact samples of a Gaussian mixture π*(θ_ref), `batch` per step, from Noise(seed).
class MixtureReference : public ReferenceSamples {
 public:
  MixtureReference(std::shared_ptr<const GaussianMixture> mixture, at::Tensor theta, int64_t batch,
                   uint64_t seed);
  at::Tensor draw(int64_t step) const override;
  std::string describe() const override;
  const at::Tensor& theta() const { return theta_; }

 private:
  std::shared_ptr<const GaussianMixture> mixture_;
  at::Tensor theta_;
  int64_t batch_;
  Noise noise_;
};

/// Rows of a sample file: `batch` rows drawn with replacement per step, or all of them when
/// batch is 0.
class FileReference : public ReferenceSamples {
 public:
  FileReference(at::Tensor samples, std::string name, int64_t batch, uint64_t seed);
  at::Tensor draw(int64_t step) const override;
  std::string describe() const override;

 private:
  at::Tensor samples_;
  std::string name_;
  int64_t batch_;
  Noise noise_;
};

/// Reads samples [N, d]: `.csv` (one sample per line, comma or whitespace separated, '#'
/// comments) or `.pt` (a tensor saved with torch.save). Errors name the file and the line.
at::Tensor read_samples(const std::string& file, int64_t dim, const c10::TensorOptions& options);

}  // namespace idtune
