#pragma once
// The one exception type idtune throws at its boundaries (files, configs, models).
// Messages say what was found, what was expected, and where (file path or JSON path).

#include <sstream>
#include <stdexcept>
#include <string>

namespace idtune {

/// An error a user can act on; the CLI prints `what()` and exits non-zero.
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

namespace detail {
template <typename... Parts>
std::string concat(const Parts&... parts) {
  std::ostringstream out;
  (out << ... << parts);
  return out.str();
}
}  // namespace detail

/// Throws idtune::Error with the parts streamed together unless `condition` holds.
template <typename... Parts>
void check(bool condition, const Parts&... parts) {
  if (!condition) throw Error(detail::concat(parts...));
}

}  // namespace idtune
