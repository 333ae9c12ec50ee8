#pragma once
// Strict reading of one JSON object into a plain struct: every key must be consumed,
// so an unknown (misspelt) key is an error naming its JSON path; values are type-checked
// exactly (an integer key refuses 2.5, an unsigned one −1, a fixed-length array any other
// length, a string key one longer than kMaxJsonString) and range- and enum-checked with the allowed
// values in the message. Parsing refuses duplicate keys, nesting deeper than kMaxJsonDepth and
// files larger than kMaxJsonFileBytes.

#include "idtune/core/error.h"
#include "idtune/core/name_table.h"

#include <nlohmann/json.hpp>

#include <array>
#include <cstdint>
#include <limits>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

namespace idtune {

/// Nesting deeper than this is refused while parsing (no idtune input nests beyond 4).
inline constexpr int kMaxJsonDepth = 32;
/// A JSON input (config, card, checkpoint signature) larger than this is refused unread.
inline constexpr std::uintmax_t kMaxJsonFileBytes = 4u << 20;
/// A string value longer than this is refused when read (idtune's strings are names, paths
/// and reward specs: PATH_MAX is 4096), so that no message echoes a megabyte.
inline constexpr size_t kMaxJsonString = 4096;

/// Parses JSON text: duplicate keys, nesting deeper than kMaxJsonDepth and numbers beyond a
/// double's range are refused; errors name `source` and the JSON path where parsing stopped.
nlohmann::json parse_json(const std::string& text, const std::string& source);
/// `node` as a short excerpt for messages (long strings and containers are clipped).
std::string json_excerpt(const nlohmann::json& node);

namespace detail {
[[noreturn]] void wrong_json_value(const std::string& path, const nlohmann::json& node,
                                   const std::string& expected);
int64_t json_integer(const nlohmann::json& node, const std::string& path, int64_t lo, int64_t hi);
uint64_t json_unsigned(const nlohmann::json& node, const std::string& path, uint64_t hi);

template <typename T>
struct is_std_array : std::false_type {};
template <typename U, size_t N>
struct is_std_array<std::array<U, N>> : std::true_type {};
template <typename T>
struct is_std_vector : std::false_type {};
template <typename U, typename A>
struct is_std_vector<std::vector<U, A>> : std::true_type {};

/// `node` as a T, checked exactly; messages name `path`.
template <typename T>
T json_value(const nlohmann::json& node, const std::string& path) {
  if constexpr (std::is_same_v<T, bool>) {
    if (!node.is_boolean()) wrong_json_value(path, node, "true or false");
    return node.get<bool>();
  } else if constexpr (std::is_integral_v<T> && std::is_unsigned_v<T>) {
    return static_cast<T>(json_unsigned(node, path, std::numeric_limits<T>::max()));
  } else if constexpr (std::is_integral_v<T>) {
    return static_cast<T>(
        json_integer(node, path, std::numeric_limits<T>::min(), std::numeric_limits<T>::max()));
  } else if constexpr (std::is_floating_point_v<T>) {
    if (!node.is_number()) wrong_json_value(path, node, "a number");
    return node.get<T>();
  } else if constexpr (std::is_same_v<T, std::string>) {
    if (!node.is_string()) wrong_json_value(path, node, "a string");
    if (node.get_ref<const std::string&>().size() > kMaxJsonString)
      wrong_json_value(path, node,
                       "a string of at most " + std::to_string(kMaxJsonString) + " characters");
    return node.get<std::string>();
  } else if constexpr (is_std_array<T>::value) {
    T out{};
    if (!node.is_array() || node.size() != out.size())
      wrong_json_value(path, node, "an array of " + std::to_string(out.size()) + " elements");
    for (size_t i = 0; i < out.size(); ++i)
      out[i] = json_value<typename T::value_type>(node[i], path + "/" + std::to_string(i));
    return out;
  } else if constexpr (is_std_vector<T>::value) {
    if (!node.is_array()) wrong_json_value(path, node, "an array");
    T out;
    out.reserve(node.size());
    for (size_t i = 0; i < node.size(); ++i)
      out.push_back(json_value<typename T::value_type>(node[i], path + "/" + std::to_string(i)));
    return out;
  } else {
    static_assert(std::is_same_v<T, nlohmann::json>, "JsonReader: no checked reading of this type");
    return node;
  }
}
}  // namespace detail

class JsonReader {
 public:
  /// `path` names the object in messages, e.g. "model.json: /schedule".
  JsonReader(const nlohmann::json& object, std::string path);

  /// Reads `key` if present (keeping `value` as the default otherwise).
  template <typename T>
  void read(const std::string& key, T& value);
  /// Reads `key`, which must be present.
  template <typename T>
  void require(const std::string& key, T& value);
  /// Reads a number and checks lo <= value <= hi (or lo < value when `open_low`).
  void read_in_range(const std::string& key, double& value, double lo, double hi,
                     bool open_low = false);
  void read_in_range(const std::string& key, int64_t& value, int64_t lo, int64_t hi);
  /// Reads a string that must be one of `allowed`; maps it to its enum value.
  template <typename Enum>
  void read_enum(const std::string& key, Enum& value, const NameTable<Enum>& table);
  /// A reader for the nested object at `key` (an error if it is not an object).
  JsonReader object(const std::string& key);
  bool has(const std::string& key) const;
  /// The JSON path of `key` for messages.
  std::string path_of(const std::string& key) const;
  /// Throws if any key of the object was never read: lists it and the known keys.
  void finish() const;

 private:
  const nlohmann::json& at(const std::string& key);
  const nlohmann::json& object_;
  std::string path_;
  std::vector<std::string> known_;
};

/// An InvalidOption thrown by a constructor, as "<source>: /a/b = value ..." (its dotted key
/// as a JSON pointer into the file `source`).
Error with_json_path(const InvalidOption& error, const std::string& source);

/// `body()`; an idtune::Error it throws gets "<source>: <pointer>: " in front: the file and key
/// that named what failed (a config's model that does not load, its reward spec...).
template <typename Body>
decltype(auto) at_json_path(const std::string& source, const std::string& pointer, Body&& body) {
  return in_context(source + ": " + pointer, std::forward<Body>(body));
}

/// Parses a JSON file (a regular file of at most kMaxJsonFileBytes) with parse_json's rules.
nlohmann::json read_json_file(const std::string& file);
/// `value` as text; invalid UTF-8 in strings (a user's bytes) becomes U+FFFD, never an error.
std::string dump_json(const nlohmann::json& value, int indent = -1);
/// Writes `value` atomically (write_file_atomically) with 2-space indentation.
void write_json_file(const std::string& file, const nlohmann::json& value);

// ---- template definitions ----

template <typename T>
void JsonReader::read(const std::string& key, T& value) {
  if (!has(key)) {
    known_.push_back(key);
    return;
  }
  value = detail::json_value<T>(at(key), path_of(key));
}

template <typename T>
void JsonReader::require(const std::string& key, T& value) {
  if (!has(key)) throw Error(path_of(key) + ": missing required key");
  read(key, value);
}

template <typename Enum>
void JsonReader::read_enum(const std::string& key, Enum& value, const NameTable<Enum>& table) {
  std::string name = name_of(value, table);
  read(key, name);
  value = parse_name(name, table, path_of(key));
}

}  // namespace idtune
