#include "idtune/core/name_patterns.h"

#include "idtune/core/error.h"
#include "idtune/core/text.h"

#include <re2/re2.h>

namespace idtune {

NamePatterns::NamePatterns(const std::vector<std::string>& patterns, std::string key)
    : patterns_(patterns), key_(std::move(key)), used_(patterns.size(), false) {
  for (const auto& p : patterns_) {
    regexes_.push_back(std::make_unique<re2::RE2>(p, re2::RE2::Quiet));
    check(regexes_.back()->ok(), key_, ": '", clipped(p), "' is not a valid regular expression (",
          regexes_.back()->error(), "; RE2 syntax: no backreferences or lookaround)");
  }
}

NamePatterns::~NamePatterns() = default;
NamePatterns::NamePatterns(NamePatterns&&) noexcept = default;

bool NamePatterns::matches(const std::string& name) {
  bool any = false;
  for (size_t i = 0; i < regexes_.size(); ++i)
    if (re2::RE2::PartialMatch(name, *regexes_[i])) any = used_[i] = true;
  return any;
}

void NamePatterns::check_all_used(const std::string& what, const std::string& model,
                                  const std::vector<std::string>& candidates) const {
  std::string names;
  for (const auto& n : candidates) names += (names.empty() ? "" : ", ") + n;
  for (size_t i = 0; i < patterns_.size(); ++i)
    check(used_[i], key_, ": pattern '", clipped(patterns_[i]), "' matches no ", what, " of '",
          model, "' (", what, "s: ", clipped(names, 2000), ")");
}

}  // namespace idtune
