#pragma once
// Name <-> enum tables: every option with a fixed set of values (schedule, sampler,
// prediction type...) is one table, so messages can list the valid names.

#include "idtune/core/error.h"
#include "idtune/core/text.h"

#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace idtune {

template <typename Enum>
using NameTable = std::vector<std::pair<std::string, Enum>>;

/// "a, b, c": the names of a name<->enum table, for messages.
template <typename Enum>
std::string list_names(const NameTable<Enum>& table) {
  std::string out;
  for (const auto& [name, e] : table) out += (out.empty() ? "" : ", ") + name;
  return out;
}
/// The name of `value` in a name<->enum table.
template <typename Enum>
const std::string& name_of(Enum value, const NameTable<Enum>& table) {
  for (const auto& entry : table)
    if (entry.second == value) return entry.first;
  throw std::logic_error("enum value missing from its name table");
}

/// The enum value named `name`; throws idtune::Error "<what>: "x" is not one of: a, b, c".
template <typename Enum>
Enum parse_name(const std::string& name, const NameTable<Enum>& table, const std::string& what) {
  for (const auto& [candidate, value] : table)
    if (candidate == name) return value;
  throw Error(what + ": \"" + clipped(name) + "\" is not one of: " + list_names(table));
}

}  // namespace idtune
