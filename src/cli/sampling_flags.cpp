#include "commands.h"
#include "idtune/core/device.h"
#include "idtune/training/tune_config.h"

#include <limits>

namespace idtune::cli {

std::vector<FlagSpec> with_sampling_flags(std::vector<FlagSpec> flags) {
  flags.insert(
      flags.end(),
      {{"sampler", "sde-euler", "sde-euler, ode-euler, ddpm or ddim"},
       {"steps", "100", "sampling steps K"},
       {"spacing", "uniform", "time grid: uniform or quadratic"},
       {"guidance", "0", "classifier-free guidance scale w (conditional models)"},
       {"seed", "0", "noise seed"},
       {"device", "cpu", "cpu or cuda"},
       {"dtype", "float32", "float32 or float64"},
       {"precision", "fp32", "the network's calls: fp32, bf16 (autocast) or fp16 (CUDA)"}});
  return flags;
}

ScoreModelOptions model_options(const Flags& flags) {
  ScoreModelOptions options{
      in_context("--device", [&] { return parse_device(flags.text("device")); }),
      in_context("--dtype", [&] { return parse_dtype(flags.text("dtype")); })};
  options.precision = parse_name(flags.text("precision"), precision_names(), "--precision");
  in_context("--precision",
             [&] { check_precision(options.precision, options.device, options.dtype); });
  return options;
}

uint64_t noise_seed(const Flags& flags) {
  return static_cast<uint64_t>(flags.integer("seed", 0, std::numeric_limits<int64_t>::max()));
}

Sampler make_sampler(const Flags& flags, const ScoreModel& model) {
  SamplerOptions options;
  options.kind = parse_name(flags.text("sampler"), sampler_names(), "--sampler");
  options.steps = flags.integer("steps");
  options.spacing = parse_name(flags.text("spacing"), time_spacing_names(), "--spacing");
  options.guidance_scale = flags.number("guidance");
  try {
    return Sampler(options, model);
  } catch (const InvalidOption& e) {  // name the flag the value came from
    const std::string flag = e.key() == "sampler.kind" ? std::string("--sampler")
                             : e.key() == "sampler.guidance_scale"
                                 ? std::string("--guidance")
                                 : "--" + e.key().substr(e.key().find('.') + 1);
    throw Error(flag + " " + e.detail());
  }
}

}  // namespace idtune::cli
