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

/// `body()`; an idtune::Error it throws is rethrown with "<context>: " in front: the file and
/// key, or the flag, whose value failed (e.g. "run.json: /model", "--reward").
template <typename Body>
decltype(auto) in_context(const std::string& context, Body&& body) {
  try {
    return body();
  } catch (const Error& e) {
    throw Error(context + ": " + e.what());
  }
}

/// An option outside its allowed values, thrown by the constructor that owns the rule. `key`
/// is the option's dotted path in the configuration ("algorithm.queue_slots"), so that a
/// config reader can name the file and JSON path without checking the rule again; what() is
/// "<key> <detail>", e.g. "algorithm.queue_slots = 3 must divide sampler.steps = 8".
class InvalidOption : public Error {
 public:
  InvalidOption(std::string key, std::string detail)
      : Error(key + " " + detail), key_(std::move(key)), detail_(std::move(detail)) {}
  const std::string& key() const { return key_; }
  const std::string& detail() const { return detail_; }

 private:
  std::string key_, detail_;
};

/// Throws InvalidOption(key, "= <value> <parts…>") unless `condition` holds.
template <typename Value, typename... Parts>
void check_option(bool condition, const std::string& key, const Value& value,
                  const Parts&... parts) {
  if (!condition) throw InvalidOption(key, detail::concat("= ", value, " ", parts...));
}

}  // namespace idtune
