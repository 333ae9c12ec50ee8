// idtune langevin --config hex.json [--set key=value ...]

#include "commands.h"
#include "idtune/interrupt.h"
#include "idtune/json_reader.h"
#include "idtune/langevin_run.h"
#include "idtune/tune_config.h"

namespace idtune::cli {

namespace {

int run_langevin(const Flags& flags) {
  const auto& file = flags.text("config");
  auto json = read_json_file(file);
  for (const auto& assignment : flags.all("set")) apply_override(json, assignment);
  LangevinRun run(parse_langevin_config(json, file));
  install_interrupt_handlers();
  run.run();  // interrupted or not, θ and the particles are on disk: exit 0
  return 0;
}

}  // namespace

Command langevin_command() {
  return {
      "langevin",
      "Langevin sampling with a tuned potential (Implicit Diffusion, Alg. 2, and baselines)",
      {{"config", "", "JSON configuration (see configs/langevin/ and docs/langevin.md)", false,
        false, true},
       {"set", "", "override a key, e.g. --set algorithm.method=nested (repeatable)", false, true}},
      run_langevin};
}

}  // namespace idtune::cli
