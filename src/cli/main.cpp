// idtune: the command-line entry point. Thin: finds the command, parses its flags, runs it;
// every error is printed once and the exit status is 1. Logs and progress go to stderr, so
// that stdout carries only results (`idtune eval`'s JSON can be piped).

#include "commands.h"
#include "idtune/core/error.h"
#include "idtune/core/runtime.h"
#include "idtune/core/torchscript.h"

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <csignal>
#include <cstdio>
#include <string>
#include <vector>

namespace {

const std::vector<idtune::cli::Command>& all_commands() {
  static const std::vector<idtune::cli::Command> commands = {
      idtune::cli::tune_command(), idtune::cli::sample_command(), idtune::cli::eval_command(),
      idtune::cli::fd_command(), idtune::cli::langevin_command()};
  return commands;
}

void print_usage() {
  std::string text = "usage: idtune <command> [flags]   (idtune <command> --help for its flags)\n";
  for (const auto& c : all_commands())
    text += "  " + c.name + std::string(10 - c.name.size(), ' ') + c.summary + "\n";
  std::fputs(text.c_str(), stdout);
}

}  // namespace

int main(int argc, char** argv) {
  // A write past the file-size limit (ulimit -f) fails with EFBIG, as a full disk fails with
  // ENOSPC, and the atomic writer reports it naming the file; by default SIGXFSZ would kill
  // the process mid-write.
  std::signal(SIGXFSZ, SIG_IGN);
  const std::vector<std::string> args(argv + 1, argv + argc);
  if (args.empty() || args[0] == "--help" || args[0] == "-h") {
    print_usage();
    return args.empty() ? 2 : 0;
  }
  spdlog::set_default_logger(spdlog::stderr_color_mt("idtune"));
  try {
    for (const auto& command : all_commands()) {
      if (command.name != args[0]) continue;
      const std::vector<std::string> rest(args.begin() + 1, args.end());
      if (!rest.empty() && (rest[0] == "--help" || rest[0] == "-h")) {
        std::printf("idtune %s: %s\n%s", command.name.c_str(), command.summary.c_str(),
                    idtune::cli::Flags::usage(command.flags).c_str());
        return 0;
      }
      const idtune::cli::Flags flags(rest, command.flags, command.name);
      idtune::configure_runtime();
      return command.run(flags);
    }
    throw idtune::Error("unknown command '" + args[0] + "' (run idtune --help)");
  } catch (const idtune::Error& e) {
    spdlog::error("{}", e.what());
    return 1;
  } catch (const std::exception& e) {  // a torch error no boundary caught: one line, no backtrace
    spdlog::error("{}", idtune::error_summary(e));
    return 1;
  }
}
