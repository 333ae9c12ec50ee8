#pragma once
// Regular expressions over parameter names (`optimiser.tune`, `lora.targets`), on RE2: matching
// takes time linear in the name whatever the pattern (std::regex backtracks: "(a+)+$" hung a
// run).

#include <memory>
#include <string>
#include <vector>

namespace re2 {
class RE2;
}

namespace idtune {

class NamePatterns {
 public:
  /// Throws idtune::Error "<key>: 'p' is not a valid regular expression (…)".
  NamePatterns(const std::vector<std::string>& patterns, std::string key);
  ~NamePatterns();
  NamePatterns(NamePatterns&&) noexcept;

  bool empty() const { return regexes_.empty(); }
  /// Whether one pattern matches a part of `name` (search, not full match); remembers which.
  bool matches(const std::string& name);
  /// Throws "<key>: pattern 'p' matches no <what> of '<model>' (<candidates>)" for the first
  /// pattern that matched nothing so far.
  void check_all_used(const std::string& what, const std::string& model,
                      const std::vector<std::string>& candidates) const;

 private:
  std::vector<std::string> patterns_;
  std::string key_;
  std::vector<std::unique_ptr<re2::RE2>> regexes_;
  std::vector<bool> used_;
};

}  // namespace idtune
