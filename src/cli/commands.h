#pragma once
// The idtune subcommands: each is a name, a one-line summary, its flags and a function.

#include "flags.h"
#include "idtune/diffusion/sampler.h"
#include "idtune/diffusion/score_model.h"

#include <nlohmann/json.hpp>

#include <functional>
#include <string>
#include <vector>

namespace idtune::cli {

struct Command {
  std::string name;
  std::string summary;
  std::vector<FlagSpec> flags;
  std::function<int(const Flags&)> run;
};

/// Adds --sampler, --steps, --seed, --device, --dtype (the commands that sample share them).
std::vector<FlagSpec> with_sampling_flags(std::vector<FlagSpec> flags);
ScoreModelOptions model_options(const Flags& flags);
/// --seed: a non-negative integer (a negative one is refused, not wrapped to 2^64 − k).
uint64_t noise_seed(const Flags& flags);
/// The JSON file of --config with every --set key=value applied (tune, langevin).
nlohmann::json config_with_overrides(const Flags& flags);
/// --check (tune, langevin): the run is built, and so validated, but not started.
FlagSpec check_flag();
/// Prints "config OK: <summary>" on stdout; the exit status 0.
int report_check(const std::string& summary);
/// The sampler of --sampler, --steps and --spacing for `model`; errors name the flag.
Sampler make_sampler(const Flags& flags, const ScoreModel& model);

Command tune_command();
Command sample_command();
Command eval_command();
Command fd_command();
Command langevin_command();

}  // namespace idtune::cli
