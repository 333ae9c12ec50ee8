#include "idtune/diffusion/lora.h"

#include "idtune/core/atomic_file.h"
#include "idtune/core/error.h"
#include "idtune/core/json_reader.h"
#include "idtune/core/name_patterns.h"
#include "idtune/core/text.h"

#include <ATen/CPUGeneratorImpl.h>
#include <c10/util/hash.h>
#include <torch/script.h>
#include <torch/torch.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <iterator>

namespace idtune {

namespace {

/// The module owning a dotted slot name ("down.0.conv.weight" -> down.0.conv) and the
/// attribute's own name.
std::pair<torch::jit::Module, std::string> owner_of(torch::jit::Module module,
                                                    const std::string& dotted) {
  size_t start = 0;
  for (size_t dot; (dot = dotted.find('.', start)) != std::string::npos; start = dot + 1)
    module = module.attr(dotted.substr(start, dot - start)).toModule();
  return {module, dotted.substr(start)};
}

void set_slot(const torch::jit::Module& module, const std::string& dotted, const at::Tensor& t) {
  auto [owner, attribute] = owner_of(module, dotted);
  owner.setattr(attribute, t);
}

bool looks_like_weight(const std::string& name, const at::Tensor& p) {
  return (p.dim() == 2 || p.dim() == 4) && ends_with(name, "weight");
}

}  // namespace

void validate(const LoraOptions& o) {
  check_option(o.rank >= 1 && o.rank <= 4096, "lora.rank", o.rank, "must be in [1, 4096]");
  check_option(std::isfinite(o.alpha) && o.alpha >= 0 && o.alpha <= 1e6, "lora.alpha", o.alpha,
               "must be in [0, 1e6] (0: alpha = rank)");
}

LoraAdapters::LoraAdapters(const torch::jit::Module& module, const LoraOptions& options,
                           uint64_t seed, const std::string& model_name)
    : options_(options) {
  validate(options_);
  NamePatterns targets(options_.targets, "lora.targets");
  auto generator = at::make_generator<at::CPUGeneratorImpl>(seed);
  std::vector<std::string> candidates;
  torch::NoGradGuard no_grad;
  for (const auto& p : module.named_parameters(/*recurse=*/true)) {
    if (!p.value.is_floating_point()) continue;
    const bool wanted =
        targets.empty() ? looks_like_weight(p.name, p.value) : targets.matches(p.name);
    if (p.value.dim() == 2 || p.value.dim() == 4) candidates.push_back(p.name);
    if (!wanted) continue;
    check(p.value.dim() == 2 || p.value.dim() == 4, "lora.targets: '", p.name, "' of '", model_name,
          "' has shape ", shape_string(p.value.sizes()),
          ": adapters go on Linear [out, in] and Conv2d [out, in, kh, kw] weights only");
    const auto base = p.value.detach();
    const int64_t out = base.size(0), fan_in = base.numel() / out;
    const double bound = 1.0 / std::sqrt(static_cast<double>(fan_in));
    auto cpu = torch::TensorOptions().dtype(base.scalar_type());
    auto a = torch::empty({options_.rank, fan_in}, cpu).uniform_(-bound, bound, generator);
    auto b = torch::zeros({out, options_.rank}, cpu);
    adapters_.push_back({p.name, base, a.to(base.device()).requires_grad_(true),
                         b.to(base.device()).requires_grad_(true)});
  }
  targets.check_all_used("Linear/Conv2d weight", model_name, candidates);
  check(!adapters_.empty(), "lora: '", model_name, "' has no 2-D or 4-D weights to adapt");
}

at::Tensor LoraAdapters::delta(const Adapter& adapter) const {
  return (adapter.b.mm(adapter.a) * options_.scale()).view(adapter.base.sizes());
}

LoraAdapters::Applied::Applied(const LoraAdapters& adapters, const torch::jit::Module& module)
    : adapters_(adapters), module_(module) {
  for (const auto& adapter : adapters_.adapters_)
    set_slot(module_, adapter.name, adapter.base + adapters_.delta(adapter));
}

LoraAdapters::Applied::~Applied() {
  for (const auto& adapter : adapters_.adapters_) set_slot(module_, adapter.name, adapter.base);
}

void LoraAdapters::merge_into(const torch::jit::Module& module) const {
  torch::NoGradGuard no_grad;
  for (const auto& adapter : adapters_)  // new tensors: W₀, shared with the base, stays as is
    set_slot(module, adapter.name, adapter.base + delta(adapter));
}

LoraAdapters LoraAdapters::clone() const {
  LoraAdapters copy;
  copy.options_ = options_;
  torch::NoGradGuard no_grad;
  for (const auto& adapter : adapters_)
    copy.adapters_.push_back({adapter.name, adapter.base,
                              adapter.a.clone().requires_grad_(adapter.a.requires_grad()),
                              adapter.b.clone().requires_grad_(adapter.b.requires_grad())});
  return copy;
}

void LoraAdapters::save(const std::string& path, const std::string& base_model) const {
  std::ifstream base(base_model, std::ios::binary);
  check(base.good(), "cannot read the base model '", base_model, "' to hash it");
  const std::string bytes((std::istreambuf_iterator<char>(base)), std::istreambuf_iterator<char>());
  c10::Dict<std::string, at::Tensor> tensors;
  for (const auto& [name, t] : named_parameters()) tensors.insert(name, t.detach().cpu());
  const auto pickled = torch::pickle_save(tensors);
  write_bytes_atomically(path, std::string(pickled.begin(), pickled.end()));
  const auto card = std::filesystem::path(path).replace_extension(".json").string();
  write_json_file(card, {{"format", "idtune lora 1"},
                         {"formula", "W = W0 + scale * (B @ A).reshape(W0.shape)"},
                         {"rank", options_.rank},
                         {"alpha", options_.alpha > 0 ? options_.alpha : options_.rank},
                         {"scale", options_.scale()},
                         {"weights", targets()},
                         {"base_model", base_model},
                         {"base_model_sha1", c10::sha1(bytes).str()}});
}

std::vector<std::pair<std::string, at::Tensor>> LoraAdapters::named_parameters() const {
  std::vector<std::pair<std::string, at::Tensor>> out;
  for (const auto& adapter : adapters_) {
    out.emplace_back(adapter.name + ".lora_A", adapter.a);
    out.emplace_back(adapter.name + ".lora_B", adapter.b);
  }
  return out;
}

std::vector<std::string> LoraAdapters::targets() const {
  std::vector<std::string> names;
  for (const auto& adapter : adapters_) names.push_back(adapter.name);
  return names;
}

}  // namespace idtune
