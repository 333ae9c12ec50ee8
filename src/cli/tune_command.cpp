// idtune tune --config run.json [--set key=value ...] [--resume] [--check] [--nproc N]

#include "commands.h"
#include "idtune/core/interrupt.h"
#include "idtune/core/json_reader.h"
#include "idtune/distributed/local_launcher.h"
#include "idtune/run/tune_run.h"

#include <spdlog/spdlog.h>

#include <cstdio>
#include <filesystem>

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

/// `idtune tune` with the same flags, less --nproc: what each local worker runs.
std::vector<std::string> worker_command(const Flags& flags) {
  std::vector<std::string> argv = {std::filesystem::read_symlink("/proc/self/exe").string(), "tune",
                                   "--config", flags.text("config")};
  for (const auto& assignment : flags.all("set")) argv.insert(argv.end(), {"--set", assignment});
  if (flags.on("resume")) argv.push_back("--resume");
  return argv;
}

/// Rank r's log lines say so; only rank 0 reports progress (the others warn and fail).
void log_as_rank(const DistributedOptions& d) {
  spdlog::set_pattern("[%Y-%m-%d %H:%M:%S.%e] [idtune rank " + std::to_string(d.rank) +
                      "] [%^%l%$] %v");
  if (d.rank != 0) spdlog::set_level(spdlog::level::warn);
}

int run_tune(const Flags& flags) {
  const auto nproc = flags.integer("nproc", 0, 1024);
  auto config = parse_tune_config(config_with_overrides(flags), flags.text("config"));
  if (nproc > 0) {
    check(!std::getenv("WORLD_SIZE"), "idtune tune --nproc ", nproc, ": WORLD_SIZE is set ",
          "already (a launcher started this process): drop --nproc, or unset the variables");
    at_json_path(config.source, "/batch", [&] {
      check(config.trainer.batch % nproc == 0, config.trainer.batch,
            " is not a multiple of --nproc ", nproc, " (each worker samples batch / nproc)");
    });
  }
  if (nproc > 0 && !flags.on("check")) return run_local_workers(worker_command(flags), nproc);
  const auto distributed = flags.on("check") ? std::nullopt : distributed_from_environment();
  if (distributed) log_as_rank(*distributed);
  TuneRun run(std::move(config), flags.on("resume"), distributed);
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
           {"nproc", "0",
            "run N local workers of one data-parallel run, each sampling batch / N (0: one "
            "process, or the rank that RANK/WORLD_SIZE/MASTER_ADDR/MASTER_PORT describe, as "
            "torchrun sets them; docs/scaling.md)"},
           check_flag()},
          run_tune};
}

}  // namespace idtune::cli
