#pragma once
// Command-line flags of the idtune executable: --name value, repeated flags, switches.

#include <map>
#include <string>
#include <vector>

namespace idtune::cli {

struct FlagSpec {
  std::string name;           // without the leading "--"
  std::string default_value;  // "" with `required`
  std::string help;
  bool is_switch = false;  // takes no value
  bool repeated = false;   // may be given several times
  bool required = false;
};

class Flags {
 public:
  /// Parses `args`; unknown flags, missing values and missing required flags are errors
  /// that list the command's flags.
  Flags(const std::vector<std::string>& args, const std::vector<FlagSpec>& specs,
        const std::string& command);

  const std::string& text(const std::string& name) const;
  double number(const std::string& name) const;
  int64_t integer(const std::string& name) const;
  /// An integer in [lo, hi]; the message names the flag and the range.
  int64_t integer(const std::string& name, int64_t lo, int64_t hi) const;
  /// A comma-separated list of integers ("0,1,2"); empty when the flag is empty.
  std::vector<int64_t> integers(const std::string& name) const;
  bool on(const std::string& name) const;
  const std::vector<std::string>& all(const std::string& name) const;

  /// "  --name VALUE  help (default)" lines for usage text.
  static std::string usage(const std::vector<FlagSpec>& specs);

 private:
  std::string command_;
  std::map<std::string, std::vector<std::string>> values_;
};

}  // namespace idtune::cli
