#include "idtune/core/json_reader.h"

#include "idtune/core/atomic_file.h"
#include "idtune/core/text.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <set>
#include <sstream>

namespace idtune {

namespace {

using Event = nlohmann::json::parse_event_t;

/// One open object or array while parsing: its keys so far, or its element count.
struct OpenValue {
  bool object;
  std::set<std::string> keys;
  std::string key;
  size_t index = 0;
};

/// A key as a path shows it: as written when it is short printable ASCII, else JSON-escaped
/// (a newline in a key must not split the message) and clipped.
std::string key_in_path(const std::string& key) {
  const bool plain = key.size() <= 60 && std::all_of(key.begin(), key.end(),
                                                     [](char c) { return c >= 0x20 && c < 0x7f; });
  return plain ? key : json_excerpt(key);
}

std::string pointer_of(const std::vector<OpenValue>& open) {
  std::string pointer;
  for (const auto& value : open)
    pointer += "/" + (value.object ? key_in_path(value.key) : std::to_string(value.index));
  return pointer.empty() ? "/" : pointer;
}

}  // namespace

nlohmann::json parse_json(const std::string& text, const std::string& source) {
  std::vector<OpenValue> open;
  const auto element_done = [&] {
    if (!open.empty() && !open.back().object) ++open.back().index;
  };
  const nlohmann::json::parser_callback_t callback = [&](int, Event event, nlohmann::json& parsed) {
    switch (event) {
      case Event::object_start:
      case Event::array_start:
        check(open.size() < static_cast<size_t>(kMaxJsonDepth), source, ": ", pointer_of(open),
              ": nested deeper than ", kMaxJsonDepth, " levels");
        open.push_back({event == Event::object_start, {}, {}, 0});
        break;
      case Event::key:
        open.back().key = parsed.get<std::string>();
        check(open.back().keys.insert(open.back().key).second, source, ": ", pointer_of(open),
              ": duplicate key (each key may appear once)");
        break;
      case Event::object_end:
      case Event::array_end:
        open.pop_back();
        element_done();
        break;
      case Event::value:
        element_done();
        break;
    }
    return true;
  };
  try {
    return nlohmann::json::parse(text, callback);
  } catch (const nlohmann::json::exception& e) {
    // nlohmann's message starts "[json.exception.parse_error.101] parse error at line 1, ..."
    std::string what = e.what();
    const auto bracket = what.find("] ");
    if (what.rfind("[json.exception.", 0) == 0 && bracket != std::string::npos)
      what = what.substr(bracket + 2);
    throw Error(source + " is not valid JSON (near " + pointer_of(open) + "): " + what);
  }
}

std::string json_excerpt(const nlohmann::json& node) {
  return clipped(node.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace), 60);
}

namespace detail {

void wrong_json_value(const std::string& path, const nlohmann::json& node,
                      const std::string& expected) {
  throw Error(path + ": expected " + expected + ", found " + node.type_name() + " " +
              json_excerpt(node));
}

int64_t json_integer(const nlohmann::json& node, const std::string& path, int64_t lo, int64_t hi) {
  std::ostringstream expected;
  expected << "an integer";
  if (lo != std::numeric_limits<int64_t>::min() || hi != std::numeric_limits<int64_t>::max())
    expected << " in [" << lo << ", " << hi << "]";
  if (node.is_number_unsigned()) {
    const auto v = node.get<uint64_t>();
    if (v > static_cast<uint64_t>(hi)) wrong_json_value(path, node, expected.str());
    return static_cast<int64_t>(v);
  }
  if (node.is_number_integer()) {
    const auto v = node.get<int64_t>();
    if (v < lo || v > hi) wrong_json_value(path, node, expected.str());
    return v;
  }
  if (node.is_number_float()) {  // 1e3 is an integer; 2.5 and 1e300 are not
    const double v = node.get<double>();
    if (std::isfinite(v) && v == std::floor(v) && v >= static_cast<double>(lo) &&
        v < static_cast<double>(hi))
      return static_cast<int64_t>(v);
  }
  wrong_json_value(path, node, expected.str());
}

uint64_t json_unsigned(const nlohmann::json& node, const std::string& path, uint64_t hi) {
  const std::string expected = "a non-negative integer at most " + std::to_string(hi);
  if (node.is_number_unsigned() || (node.is_number_integer() && node.get<int64_t>() >= 0)) {
    const auto v = node.get<uint64_t>();
    if (v > hi) wrong_json_value(path, node, expected);
    return v;
  }
  if (node.is_number_float()) {
    const double v = node.get<double>();
    if (std::isfinite(v) && v == std::floor(v) && v >= 0 && v < static_cast<double>(hi))
      return static_cast<uint64_t>(v);
  }
  wrong_json_value(path, node, expected);
}

}  // namespace detail

JsonReader::JsonReader(const nlohmann::json& object, std::string path)
    : object_(object), path_(std::move(path)) {
  // The root's path is "file.json: ", a nested object's "file.json: /a/b".
  if (!object_.is_object())
    detail::wrong_json_value(!path_.empty() && path_.back() == ' ' ? path_ + "/" : path_, object_,
                             "a JSON object");
}

bool JsonReader::has(const std::string& key) const { return object_.contains(key); }

std::string JsonReader::path_of(const std::string& key) const {
  return path_ + "/" + key_in_path(key);
}

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
  namespace fs = std::filesystem;
  std::error_code ec;
  const auto status = fs::status(file, ec);
  check(fs::exists(status), "cannot open '", file, "': no such file");
  check(fs::is_regular_file(status), "cannot read '", file,
        "': not a regular file (a directory, device or FIFO); expected a JSON file");
  const auto size = fs::file_size(file, ec);
  check(!ec && size <= kMaxJsonFileBytes, "'", file, "' is ", size, " bytes, larger than the ",
        kMaxJsonFileBytes, " a JSON input may be");
  std::ifstream in(file, std::ios::binary);
  check(in.good(), "cannot open '", file, "': not readable");
  std::ostringstream text;
  text << in.rdbuf();
  return parse_json(text.str(), file);
}

std::string dump_json(const nlohmann::json& value, int indent) {
  return value.dump(indent, ' ', false, nlohmann::json::error_handler_t::replace);
}

void write_json_file(const std::string& file, const nlohmann::json& value) {
  write_bytes_atomically(file, dump_json(value, 2) + "\n");
}

}  // namespace idtune
