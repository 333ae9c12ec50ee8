#pragma once
// Strict reading of one JSON object into a plain struct: every key must be consumed,
// so an unknown (misspelt) key is an error naming its JSON path; values are range- and
// enum-checked with the allowed values in the message.

#include "idtune/core/error.h"
#include "idtune/core/name_table.h"

#include <nlohmann/json.hpp>

#include <initializer_list>
#include <string>
#include <utility>
#include <vector>

namespace idtune {

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

/// Parses a JSON file; errors name the file and the parser's position.
nlohmann::json read_json_file(const std::string& file);
/// Writes `value` atomically (temp file + rename) with 2-space indentation.
void write_json_file(const std::string& file, const nlohmann::json& value);

// ---- template definitions ----

template <typename T>
void JsonReader::read(const std::string& key, T& value) {
  if (!has(key)) {
    known_.push_back(key);
    return;
  }
  const auto& node = at(key);
  try {
    value = node.get<T>();
  } catch (const nlohmann::json::exception& e) {
    throw Error(path_of(key) + ": wrong type (" + node.type_name() + " " + node.dump() +
                "): " + e.what());
  }
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
