// idtune langevin --config hex.json [--set key=value ...] [--check]

#include "commands.h"
#include "idtune/core/interrupt.h"
#include "idtune/run/langevin_run.h"

namespace idtune::cli {

namespace {

int run_langevin(const Flags& flags) {
  LangevinRun run(parse_langevin_config(config_with_overrides(flags), flags.text("config")));
  if (flags.on("check")) return report_check(run.summary());
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
       {"set", "", "override a key, e.g. --set algorithm.method=nested (repeatable)", false, true},
       check_flag()},
      run_langevin};
}

}  // namespace idtune::cli
