#include "idtune/langevin/reference.h"

#include "idtune/core/atomic_file.h"
#include "idtune/core/error.h"
#include "idtune/core/text.h"
#include "idtune/core/torchscript.h"

#include <torch/serialize.h>
#include <torch/torch.h>

#include <cmath>
#include <fstream>
#include <iterator>
#include <sstream>

namespace idtune {

namespace {
constexpr uint64_t kReferenceStream = 1;  // stream 0 is the particles' noise

at::Tensor read_csv(const std::string& file, int64_t dim) {
  // A FIFO would block the open until a writer came.
  check(is_existing_file(file), "reference samples '", file,
        "' do not exist or are not a regular file");
  std::ifstream in(file);
  check(in.good(), "cannot open the reference samples '", file, "'");
  std::vector<double> values;
  int64_t line_number = 0;
  for (std::string line; std::getline(in, line);) {
    ++line_number;
    if (const auto hash = line.find('#'); hash != std::string::npos) line.erase(hash);
    for (char& ch : line)
      if (ch == ',') ch = ' ';
    std::istringstream fields(line);
    std::vector<double> row{std::istream_iterator<double>(fields), {}};
    check(fields.eof(), "'", file, "' line ", line_number, ": not a number in \"", clipped(line),
          "\"");
    if (row.empty()) continue;
    check(int64_t(row.size()) == dim, "'", file, "' line ", line_number, ": ", row.size(),
          " values, expected ", dim, " (one sample per line)");
    values.insert(values.end(), row.begin(), row.end());
  }
  return torch::tensor(values, torch::kFloat64).view({-1, dim});
}

}  // namespace

MixtureReference::MixtureReference(std::shared_ptr<const GaussianMixture> mixture, at::Tensor theta,
                                   int64_t batch, uint64_t seed)
    : mixture_(std::move(mixture)), theta_(std::move(theta)), batch_(batch), noise_(seed) {
  check(batch_ >= 1, "reference batch must be >= 1, got ", batch_);
}

at::Tensor MixtureReference::draw(int64_t step) const {
  return mixture_->sample(batch_, theta_, noise_, kReferenceStream, step);
}

std::string MixtureReference::describe() const {
  return mixture_->describe() + ", " + std::to_string(batch_) + " exact samples per step";
}

FileReference::FileReference(at::Tensor samples, std::string name, int64_t batch, uint64_t seed)
    : samples_(std::move(samples)), name_(std::move(name)), batch_(batch), noise_(seed) {
  check(samples_.dim() == 2 && samples_.size(0) >= 1, "reference samples '", name_,
        "' must be [N, d] with N >= 1, got ", samples_.sizes());
  check(batch_ >= 0, "reference batch must be >= 0, got ", batch_);
}

at::Tensor FileReference::draw(int64_t step) const {
  if (batch_ == 0) return samples_;
  const auto index = noise_.uniform_indices(kReferenceStream, step, batch_, samples_.size(0));
  return samples_.index_select(0, index.to(samples_.device()));
}

std::string FileReference::describe() const {
  return "'" + name_ + "' (" + std::to_string(samples_.size(0)) + " samples, " +
         (batch_ == 0 ? std::string("all") : std::to_string(batch_)) + " per step)";
}

at::Tensor read_samples(const std::string& file, int64_t dim, const c10::TensorOptions& options) {
  const auto samples =
      ends_with(file, ".pt") ? load_saved_tensor(file, "reference samples") : read_csv(file, dim);
  check(samples.dim() == 2 && samples.size(1) == dim, "reference samples '", file, "' must be [N, ",
        dim, "], got ", samples.sizes());
  check(samples.size(0) >= 1, "reference samples '", file, "' hold no sample");
  check(torch::isfinite(samples).all().item<bool>(), "reference samples '", file,
        "' contain NaN or infinity");
  return samples.to(options);
}

}  // namespace idtune
