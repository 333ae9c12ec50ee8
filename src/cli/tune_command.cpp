// idtune tune --config run.json [--set key=value ...] [--resume] [--check]

#include "commands.h"
#include "idtune/core/interrupt.h"
#include "idtune/core/json_reader.h"
#include "idtune/run/tune_run.h"

#include <cstdio>

namespace idtune::cli {

nlohmann::json config_with_overrides(const Flags& flags) {
  const auto& file = flags.text("config");
  auto json = read_json_file(file);
  if (!json.is_object()) detail::wrong_json_value(file + ": /", json, "a JSON object");
  for (const auto& assignment : flags.all("set")) apply_override(json, assignment);
  return json;
}

FlagSpec check_flag() {
  return {"check", "", "validate the config, files, reward and trainer; run nothing, write nothing",
          true};
}

int report_check(const std::string& summary) {
  std::printf("config OK: %s\n", summary.c_str());
  return 0;
}

namespace {

int run_tune(const Flags& flags) {
  TuneRun run(parse_tune_config(config_with_overrides(flags), flags.text("config")),
              flags.on("resume"));
  if (flags.on("check")) return report_check(run.validate_only());
  install_interrupt_handlers();
  run.run();  // interrupted or not, the state is on disk: exit 0
  return 0;
}

}  // namespace

Command tune_command() {
  return {"tune",
          "finetune a score model towards a reward (Implicit Diffusion and baselines)",
          {{"config", "", "JSON configuration (see configs/ and docs/configuration.md)", false,
            false, true},
           {"set", "", "override a key, e.g. --set sampler.steps=64 (repeatable)", false, true},
           {"resume", "", "continue the run in output.run_dir from its checkpoint", true},
           check_flag()},
          run_tune};
}

}  // namespace idtune::cli
