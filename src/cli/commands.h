#pragma once
// The idtune subcommands: each is a name, a one-line summary, its flags and a function.

#include "flags.h"

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

Command tune_command();
Command sample_command();
Command eval_command();
Command demo_command();

}  // namespace idtune::cli
