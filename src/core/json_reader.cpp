#include "idtune/core/json_reader.h"

#include <algorithm>
#include <cstdio>
#include <fstream>

namespace idtune {

JsonReader::JsonReader(const nlohmann::json& object, std::string path)
    : object_(object), path_(std::move(path)) {
  check(object_.is_object(), path_, ": expected a JSON object, found ", object_.type_name());
}

bool JsonReader::has(const std::string& key) const { return object_.contains(key); }

std::string JsonReader::path_of(const std::string& key) const { return path_ + "/" + key; }

const nlohmann::json& JsonReader::at(const std::string& key) {
  known_.push_back(key);
  return object_.at(key);
}

void JsonReader::read_in_range(const std::string& key, double& value, double lo, double hi,
                               bool open_low) {
  read(key, value);
  const bool low_ok = open_low ? value > lo : value >= lo;
  check(low_ok && value <= hi, path_of(key), ": ", value, " is out of range, expected ",
        open_low ? "(" : "[", lo, ", ", hi, "]");
}

void JsonReader::read_in_range(const std::string& key, int64_t& value, int64_t lo, int64_t hi) {
  read(key, value);
  check(value >= lo && value <= hi, path_of(key), ": ", value, " is out of range, expected [", lo,
        ", ", hi, "]");
}

JsonReader JsonReader::object(const std::string& key) {
  check(has(key), path_of(key), ": missing required object");
  return JsonReader(at(key), path_of(key));
}

void JsonReader::finish() const {
  for (const auto& item : object_.items()) {
    if (std::find(known_.begin(), known_.end(), item.key()) != known_.end()) continue;
    std::string known;
    for (const auto& k : known_) known += (known.empty() ? "" : ", ") + k;
    throw Error(path_of(item.key()) + ": unknown key (known keys here: " + known + ")");
  }
}

Error with_json_path(const InvalidOption& error, const std::string& source) {
  std::string pointer = "/" + error.key();
  std::replace(pointer.begin(), pointer.end(), '.', '/');
  return Error(source + ": " + pointer + " " + error.detail());
}

nlohmann::json read_json_file(const std::string& file) {
  std::ifstream in(file);
  check(in.good(), "cannot open '", file, "': no such file or not readable");
  try {
    return nlohmann::json::parse(in);
  } catch (const nlohmann::json::parse_error& e) {
    throw Error("'" + file + "' is not valid JSON: " + e.what());
  }
}

void write_json_file(const std::string& file, const nlohmann::json& value) {
  const std::string tmp = file + ".tmp";
  {
    std::ofstream out(tmp);
    check(out.good(), "cannot write '", tmp, "'");
    out << value.dump(2) << "\n";
    check(out.good(), "failed while writing '", tmp, "'");
  }
  check(std::rename(tmp.c_str(), file.c_str()) == 0, "cannot rename '", tmp, "' to '", file, "'");
}

}  // namespace idtune
