// Seeded mutation fuzzing of every shipped input file: each config under configs/ (tune and
// Langevin, recursively) and each score model's card under models/ is mutated in a fixed,
// reproducible series of ways and fed through the path the CLI takes (read_json_file, the
// parser, TuneRun / LangevinRun or ScoreModel::load). Every case must end in success or in an
// idtune::Error whose message is one line, short, free of backtraces and says where the
// problem is; mutations that can never give a valid file must be refused, and building a run
// must never create its run directory.

#include "idtune/core/json_reader.h"
#include "idtune/diffusion/score_model.h"
#include "idtune/diffusion/toy_models.h"
#include "idtune/langevin/config.h"
#include "idtune/run/langevin_run.h"
#include "idtune/run/tune_run.h"
#include "idtune/training/tune_config.h"
#include "test_helpers.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <optional>
#include <random>

namespace idtune {
namespace {

namespace fs = std::filesystem;
using Json = nlohmann::json;
using Pointer = Json::json_pointer;

// ---- the oracle ----
//
// Refused: a mutation that no reader may accept, whatever the key:
//   - a type swap (string, number, bool, null, array, object: a value replaced by one of
//     another of these six kinds, including an "extreme" of another kind such as "NaN" for a
//     number). Integers and floats are both "number", so 1e3 for an integer key is no swap
//     (it is 1000, and valid), nor is [] for an array. Every key of a config or card has one
//     kind, except the card's free-form "provenance", below which anything goes;
//   - an unknown key inserted into an object (outside "provenance"): it must be named;
//   - nesting 1000 deep, a duplicated key (both refused while parsing, whatever the key);
//   - the text cut before its closing brace (a proper prefix of an object is never JSON);
//   - inserted garbage that holds a byte no JSON text may hold anywhere (0x00-0x08, 0x0E-0x1F
//     are control characters, invalid raw even inside strings; 0xFF is never UTF-8).
// Either: extremes of the same kind (±1e308, 1e-308, 0, -1, 2^63, 2^64, 1e9, "NaN",
// "Infinity", "", a string of 1e5 characters, [], {}), deletions (defaults apply) and random
// byte changes (a digit for a digit is still JSON) may leave a valid file; a refusal of an
// extreme or a deletion must name the key (its last name in the JSON path: "betas" for
// /optimiser/betas/1), since that is what the user has to change. A count of 1e9 may be valid,
// but building the run must not allocate it (each case has a time limit).
// Every refusal: an idtune::Error (any other exception type fails), one line, no "terminate
// called", "Exception raised from" or "frame #", at most kMaxMessage characters, naming the
// config it comes from (or, for a card, the card or the model beside it).

constexpr size_t kMaxMessage = 1000;

enum class Verdict { Refused, Either };

struct Mutation {
  std::string what;  // for failure messages: kind, JSON path, new value
  std::string text;  // the mutated file
  Verdict verdict = Verdict::Either;
  std::string must_name;  // a refusal must contain this ("" for none)
};

enum class Kind { String, Number, Bool, Null, Array, Object };

Kind kind_of(const Json& v) {
  if (v.is_string()) return Kind::String;
  if (v.is_number()) return Kind::Number;
  if (v.is_boolean()) return Kind::Bool;
  if (v.is_null()) return Kind::Null;
  return v.is_array() ? Kind::Array : Kind::Object;
}

/// A value of the input that a mutation may target.
struct Target {
  Pointer pointer;
  std::string key;  // the last object key on the way to it (what a message should name)
  bool free_form;   // inside "provenance": any value is valid
  bool member;      // an object member (deletable, duplicable by name)
};

class Mutator {
 public:
  Mutator(Json original, uint64_t seed) : original_(std::move(original)), rng_(seed) {
    text_ = original_.dump(2) + "\n";
    collect(original_, Pointer(), "", false);
  }

  Mutation next() {
    switch (pick(100) / 10) {  // type swaps and extremes take 20 % each, the rest 10 %
      case 0:
      case 1:
        return type_swap();
      case 2:
      case 3:
        return extreme();
      case 4:
        return deletion();
      case 5:
        return unknown_key();
      case 6:
        return pick(2) ? deep_nesting() : duplicate_key();
      case 7:
        return truncation();
      case 8:
        return garbage();
      default:
        return byte_changes();
    }
  }

 private:
  size_t pick(size_t n) { return std::uniform_int_distribution<size_t>(0, n - 1)(rng_); }
  template <typename T>
  const T& pick_from(const std::vector<T>& items) {
    return items[pick(items.size())];
  }

  void collect(const Json& node, const Pointer& at, const std::string& key, bool free_form) {
    if (node.is_object()) {
      objects_.push_back({at, key, free_form, false});
      for (const auto& item : node.items()) {
        const Pointer child = at / item.key();
        const bool child_free = free_form || child.to_string() == "/provenance";
        targets_.push_back({child, item.key(), child_free, true});
        if (!free_form) collect(item.value(), child, item.key(), child_free);  // one level below
      }
    } else if (node.is_array()) {
      for (size_t i = 0; i < node.size(); ++i) {
        targets_.push_back({at / i, key, free_form, false});
        collect(node[i], at / i, key, free_form);
      }
    }
  }

  /// The original with the value at `t` replaced: a type swap unless the kind stays.
  Mutation replaced(const Target& t, const Json& value, const std::string& what) {
    Json json = original_;
    json[t.pointer] = value;
    const bool swap = kind_of(value) != kind_of(original_[t.pointer]);
    return {what + " " + t.pointer.to_string() + " = " + json_excerpt(value), json.dump(2),
            swap && !t.free_form ? Verdict::Refused : Verdict::Either, t.key};
  }

  Mutation type_swap() {
    static const std::vector<Json> values = {"",
                                             "fuzz",
                                             "NaN",
                                             0,
                                             -1,
                                             2.5,
                                             1e308,
                                             true,
                                             false,
                                             nullptr,
                                             Json::array(),
                                             Json::array({1, "a"}),
                                             Json::object(),
                                             Json::object({{"fuzz", 1}})};
    const Target& t = pick_from(targets_);
    Json value;
    do value = pick_from(values);
    while (kind_of(value) == kind_of(original_[t.pointer]));
    return replaced(t, value, "type swap");
  }

  Mutation extreme() {
    static const std::vector<Json> values = {1e308,
                                             -1e308,
                                             1e-308,
                                             0,
                                             -1,
                                             Json::parse("9223372036854775808"),
                                             Json::parse("18446744073709551616"),
                                             1e9,
                                             "NaN",
                                             "Infinity",
                                             "-inf",
                                             "",
                                             std::string(100000, 'x'),
                                             "two\nlines\x01",  // echoed escaped, on one line
                                             Json::array(),
                                             Json::object()};
    const Target& t = pick_from(targets_);
    const Json& value = pick_from(values);
    return replaced(t, value,
                    kind_of(value) == kind_of(original_[t.pointer])
                        ? "extreme"
                        : "extreme of another kind (a type swap)");
  }

  std::vector<Target> members() const {
    std::vector<Target> out;
    std::copy_if(targets_.begin(), targets_.end(), std::back_inserter(out),
                 [](const Target& t) { return t.member; });
    return out;
  }

  Mutation deletion() {
    const Target& t = pick_from(targets_);
    Json json = original_;
    auto& parent = json[t.pointer.parent_pointer()];
    if (t.member)
      parent.erase(t.pointer.back());
    else
      parent.erase(static_cast<size_t>(std::stoul(t.pointer.back())));
    return {"deletion of " + t.pointer.to_string(), json.dump(2), Verdict::Either, t.key};
  }

  Mutation unknown_key() {
    const Target& o = pick_from(objects_);
    Json json = original_;
    // A third of the keys hold a control character: the message must stay on one line and
    // show the key JSON-escaped (libFuzzer found a newline in a key splitting the message).
    const std::string n = std::to_string(pick(1000));
    const std::vector<std::pair<std::string, std::string>> keys = {
        {"fuzz_unknown_" + n, "fuzz_unknown_" + n},
        {"fuzz\nunknown_" + n, "fuzz\\nunknown_" + n},
        {"fuzz\x01unknown_" + n, "fuzz\\u0001unknown_" + n}};
    const auto& [key, shown] = keys[pick(keys.size())];
    json[o.pointer][key] = 1;
    return {"unknown key " + (o.pointer / key).to_string(), json.dump(2),
            o.free_form ? Verdict::Either : Verdict::Refused, shown};
  }

  /// The original with the value at `t` written as `text` (what nlohmann cannot hold).
  Mutation spliced(const Target& t, const std::string& text, const std::string& what) {
    const std::string marker = "fuzz-splice-marker";
    Json json = original_;
    json[t.pointer] = marker;
    std::string out = json.dump(2);
    out.replace(out.find('"' + marker + '"'), marker.size() + 2, text);
    return {what, out, Verdict::Refused, ""};
  }

  Mutation deep_nesting() {
    const Target& t = pick_from(targets_);
    const bool arrays = pick(2);
    const std::string inner = original_[t.pointer].dump();
    std::string text;
    for (int i = 0; i < 1000; ++i) text += arrays ? "[" : "{\"a\": ";
    text += inner;
    for (int i = 0; i < 1000; ++i) text += arrays ? "]" : "}";
    return spliced(t, text,
                   t.pointer.to_string() + " wrapped in 1000 " + (arrays ? "arrays" : "objects"));
  }

  Mutation duplicate_key() {
    const auto candidates = members();
    const Target& t = pick_from(candidates);
    const std::string marker = "fuzz-duplicate-marker";
    Json json = original_;
    json[t.pointer.parent_pointer()][marker] = original_[t.pointer];
    std::string out = json.dump(2);
    out.replace(out.find('"' + marker + '"'), marker.size() + 2, Json(t.pointer.back()).dump());
    return {"duplicate key " + t.pointer.to_string(), out, Verdict::Refused, ""};
  }

  Mutation truncation() {
    const size_t length = pick(text_.rfind('}'));  // before the closing brace
    return {"truncated to " + std::to_string(length) + " bytes", text_.substr(0, length),
            Verdict::Refused, ""};
  }

  Mutation garbage() {
    std::string block(1 + pick(16), '\0');
    for (auto& c : block) c = static_cast<char>(pick(256));
    block[pick(block.size())] = pick(2) ? '\xff' : static_cast<char>(pick(9));  // never JSON
    const size_t at = pick(text_.size() + 1);
    std::string out = text_;
    out.insert(at, block);
    return {std::to_string(block.size()) + " garbage bytes at byte " + std::to_string(at), out,
            Verdict::Refused, ""};
  }

  Mutation byte_changes() {
    std::string out = text_;
    const size_t n = 1 + pick(4);
    std::string where;
    for (size_t i = 0; i < n; ++i) {
      const size_t at = pick(out.size());
      out[at] = static_cast<char>(pick(256));
      where += (i ? "," : "") + std::to_string(at);
    }
    return {"bytes changed at " + where, out, Verdict::Either, ""};
  }

  Json original_;
  std::string text_;
  std::mt19937_64 rng_;
  std::vector<Target> targets_, objects_;
};

// ---- the cases ----

/// One input file and how to feed a mutation of it to idtune.
struct Subject {
  std::string name;     // the shipped file, for messages
  Json original;        // with its paths made absolute and its run directory in the test's
  std::string file;     // where mutations are written
  std::string run_dir;  // must never appear (configs)
  std::string named;    // every refusal names this: the config; a card's folder (its model)
  std::function<void(const std::string& file)> load;
};

struct Tally {
  int cases = 0, refused = 0, accepted = 0;
  double slowest = 0;
  std::string slowest_case;
};

void write_text(const std::string& file, const std::string& text) {
  std::ofstream(file, std::ios::binary | std::ios::trunc) << text;
}

/// Feeds `m` to `s` and checks the outcome against the oracle.
void run_case(const Subject& s, const Mutation& m, Tally& tally) {
  const std::string where = s.name + ", " + m.what;
  write_text(s.file, m.text);
  std::optional<std::string> refusal;
  const auto start = std::chrono::steady_clock::now();
  try {
    s.load(s.file);
  } catch (const Error& e) {
    refusal = e.what();
  } catch (const std::exception& e) {
    ADD_FAILURE() << where << ": threw " << typeid(e).name()
                  << ", not idtune::Error: " << std::string(e.what()).substr(0, 2000);
    return;
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  ++tally.cases;
  if (seconds > tally.slowest) tally.slowest = seconds, tally.slowest_case = where;
  EXPECT_LT(seconds, 10.0) << where;
  EXPECT_TRUE(s.run_dir.empty() || !fs::exists(s.run_dir))
      << where << ": building the run created its directory";
  if (!refusal) {
    ++tally.accepted;
    EXPECT_EQ(m.verdict, Verdict::Either) << where << ": accepted, but can never be valid";
    return;
  }
  ++tally.refused;
  const std::string& message = *refusal;
  const auto has = [&](const std::string& part) { return message.find(part) != std::string::npos; };
  const std::string excerpt = message.substr(0, 1500);
  EXPECT_FALSE(has("\n")) << where << ": message over several lines: " << excerpt;
  for (const char* trace : {"terminate called", "Exception raised from", "frame #"})
    EXPECT_FALSE(has(trace)) << where << ": a backtrace in the message: " << excerpt;
  EXPECT_LE(message.size(), kMaxMessage)
      << where << ": message of " << message.size() << " characters: " << excerpt;
  EXPECT_TRUE(has(s.named)) << where << ": the message does not name '" << s.named
                            << "': " << excerpt;
  EXPECT_TRUE(m.must_name.empty() || has(m.must_name))
      << where << ": the message does not name '" << m.must_name << "': " << excerpt;
}

/// Makes relative file names of a shipped config absolute (they are relative to the repository
/// root): the model, and the files in the reward spec.
void make_paths_absolute(Json& config) {
  const std::string root = IDTUNE_SOURCE_DIR "/";
  if (config.contains("model") && fs::path(config["model"].get<std::string>()).is_relative())
    config["model"] = root + config["model"].get<std::string>();
  if (config.contains("reward") && config["reward"].is_string()) {  // (Langevin: an object)
    std::string reward = config["reward"];
    for (size_t at = 0; (at = reward.find(":models/", at)) != std::string::npos; at += root.size())
      reward.insert(at + 1, root);
    config["reward"] = reward;
  }
}

std::vector<fs::path> shipped(const std::string& folder, bool recursive) {
  std::vector<fs::path> files;
  const auto add = [&](const fs::directory_entry& e) {
    if (e.path().extension() == ".json") files.push_back(e.path());
  };
  const fs::path root = fs::path(IDTUNE_SOURCE_DIR) / folder;
  if (recursive)
    for (const auto& e : fs::recursive_directory_iterator(root)) add(e);
  else
    for (const auto& e : fs::directory_iterator(root)) add(e);
  std::sort(files.begin(), files.end());  // a fixed order: a fixed seed per file
  return files;
}

constexpr uint64_t kSeed = 20261128;
constexpr int kCasesPerConfig = 95;
constexpr int kCasesPerCard = 115;

TEST(Fuzz, MutatedConfigsAndCardsAreRefusedClearlyOrAccepted) {
  const testing::TempDir dir;
  std::vector<Subject> subjects;
  // Configs: every run built with its paths absolute and its run directory here. A config
  // whose model is made by a script (example_denoiser: runs/byom/) gets a tiny U-Net instead.
  TinyUNetOptions tiny;
  tiny.size = 4;
  tiny.width = 2;
  tiny.model.dtype = c10::kFloat;
  make_tiny_unet(tiny).save(dir.file("tiny.pt"));
  for (const auto& path : shipped("configs", /*recursive=*/true)) {
    const bool langevin = path.parent_path().filename() == "langevin";
    Subject s;
    s.name = fs::relative(path, IDTUNE_SOURCE_DIR).string();
    s.original = read_json_file(path.string());
    s.run_dir = dir.file("run-" + path.stem().string());
    s.original["output"]["run_dir"] = s.run_dir;
    make_paths_absolute(s.original);
    if (!langevin && !fs::exists(s.original["model"].get<std::string>()))
      s.original["model"] = dir.file("tiny.pt");
    s.file = dir.file(path.filename().string());
    s.named = s.file;
    if (langevin)
      s.load = [](const std::string& file) {
        LangevinRun run(parse_langevin_config(read_json_file(file), file));
      };
    else
      s.load = [](const std::string& file) {
        TuneRun run(parse_tune_config(read_json_file(file), file), /*resume=*/false);
      };
    subjects.push_back(std::move(s));
  }
  // Cards: each score model's card, mutated beside a copy of its model (and decoder). The
  // classifier's card is not one: nothing reads it (it documents the classifier).
  for (const auto& path : shipped("models", /*recursive=*/false)) {
    const fs::path model = fs::path(path).replace_extension(".pt");
    const auto card = read_json_file(path.string());
    if (card.value("kind", "") == "classifier") continue;
    const fs::path folder = dir.file("card-" + path.stem().string());
    fs::create_directory(folder);
    fs::copy_file(model, folder / model.filename());
    if (card.contains("decoder"))
      fs::copy_file(path.parent_path() / card["decoder"]["file"].get<std::string>(),
                    folder / card["decoder"]["file"].get<std::string>());
    Subject s;
    s.name = fs::relative(path, IDTUNE_SOURCE_DIR).string();
    s.original = card;
    s.file = (folder / path.filename()).string();
    s.named = folder.string();
    s.load = [model = (folder / model.filename()).string()](const std::string&) {
      ScoreModel::load(model, {});
    };
    subjects.push_back(std::move(s));
  }
  ASSERT_GE(subjects.size(), 11u);  // 8 configs, 3 score-model cards

  // IDTUNE_FUZZ_ROUNDS=n runs n rounds of other seeds (a longer search; the suite runs one).
  const char* rounds_env = std::getenv("IDTUNE_FUZZ_ROUNDS");
  const int rounds = rounds_env ? std::max(1, std::atoi(rounds_env)) : 1;
  Tally tally;
  const auto start = std::chrono::steady_clock::now();
  for (size_t i = 0; i < subjects.size(); ++i) {
    const Subject& s = subjects[i];
    // The file unchanged is valid (else every mutation's verdict would be moot).
    write_text(s.file, s.original.dump(2));
    ASSERT_NO_THROW(s.load(s.file)) << s.name;
    for (int round = 0; round < rounds; ++round) {
      Mutator mutator(s.original, kSeed + 1000 * round + i);
      const int cases = s.run_dir.empty() ? kCasesPerCard : kCasesPerConfig;
      for (int c = 0; c < cases; ++c) run_case(s, mutator.next(), tally);
    }
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_GE(tally.cases, 1000 * rounds);
  std::printf("fuzz: %d cases (%d refused, %d accepted) in %.1f s; slowest %.2f s (%s)\n",
              tally.cases, tally.refused, tally.accepted, seconds, tally.slowest,
              tally.slowest_case.c_str());
  ::testing::Test::RecordProperty("cases", tally.cases);
  ::testing::Test::RecordProperty("seconds", std::to_string(seconds));
}

}  // namespace
}  // namespace idtune
