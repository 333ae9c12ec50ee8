#include "flags.h"

#include "idtune/core/error.h"
#include "idtune/core/text.h"

#include <algorithm>
#include <charconv>
#include <cmath>

namespace idtune::cli {

Flags::Flags(const std::vector<std::string>& args, const std::vector<FlagSpec>& specs,
             const std::string& command)
    : command_(command) {
  auto spec_of = [&](const std::string& arg) -> const FlagSpec& {
    const auto it = std::find_if(specs.begin(), specs.end(),
                                 [&](const FlagSpec& s) { return "--" + s.name == arg; });
    check(it != specs.end(), "idtune ", command, ": unknown argument '", clipped(arg),
          "'; flags:\n", usage(specs));
    return *it;
  };
  for (size_t i = 0; i < args.size(); ++i) {
    const FlagSpec& spec = spec_of(args[i]);
    auto& values = values_[spec.name];
    check(spec.repeated || values.empty(), "idtune ", command, ": --", spec.name, " given twice");
    if (spec.is_switch) {
      values.push_back("true");
      continue;
    }
    check(i + 1 < args.size(), "idtune ", command, ": --", spec.name, " needs a value");
    values.push_back(args[++i]);
  }
  for (const auto& spec : specs) {
    check(!spec.required || values_.count(spec.name), "idtune ", command, ": --", spec.name,
          " is required; flags:\n", usage(specs));
    if (!values_.count(spec.name) && !spec.repeated)
      values_[spec.name] = {spec.is_switch ? "false" : spec.default_value};
  }
}

const std::string& Flags::text(const std::string& name) const { return values_.at(name).front(); }

double Flags::number(const std::string& name) const {
  const auto& value = text(name);
  try {
    size_t used = 0;
    const double x = std::stod(value, &used);
    if (used == value.size() && std::isfinite(x)) return x;  // no flag takes inf or nan
  } catch (const std::exception&) {  // not a number, or beyond a double's range
  }
  throw Error("idtune " + command_ + ": --" + name + " expects a number, got '" + clipped(value) +
              "'");
}

int64_t Flags::integer(const std::string& name) const {
  const std::string& value = text(name);
  int64_t exact = 0;  // every int64, which a double does not hold (e.g. a seed of 2^63 − 1)
  if (const auto [end, error] = std::from_chars(value.data(), value.data() + value.size(), exact);
      error == std::errc() && end == value.data() + value.size())
    return exact;
  const double x = number(name);  // 1e3
  // Within ±2^63 (exclusive) before the cast, which is undefined beyond.
  check(x == std::floor(x) && std::abs(x) < 9223372036854775808.0, "idtune ", command_, ": --",
        name, " expects an integer, got '", clipped(text(name)), "'");
  return static_cast<int64_t>(x);
}

int64_t Flags::integer(const std::string& name, int64_t lo, int64_t hi) const {
  const int64_t value = integer(name);
  check(value >= lo && value <= hi, "idtune ", command_, ": --", name, " must be in [", lo, ", ",
        hi, "], got ", value);
  return value;
}

std::vector<int64_t> Flags::integers(const std::string& name) const {
  std::vector<int64_t> values;
  const std::string& list = text(name);
  for (size_t start = 0; start < list.size();) {
    const size_t comma = std::min(list.find(',', start), list.size());
    const std::string item = list.substr(start, comma - start);
    int64_t value = 0;
    const auto [end, error] = std::from_chars(item.data(), item.data() + item.size(), value);
    check(!item.empty() && error == std::errc() && end == item.data() + item.size(), "idtune ",
          command_, ": --", name, " expects integers separated by commas (e.g. 0,1,2), got '",
          clipped(list), "'");
    values.push_back(value);
    start = comma + 1;
  }
  return values;
}

bool Flags::on(const std::string& name) const { return text(name) == "true"; }

const std::vector<std::string>& Flags::all(const std::string& name) const {
  static const std::vector<std::string> none;
  const auto it = values_.find(name);
  return it == values_.end() ? none : it->second;
}

std::string Flags::usage(const std::vector<FlagSpec>& specs) {
  std::string out;
  for (const auto& s : specs) {
    std::string left = "  --" + s.name + (s.is_switch ? "" : " VALUE");
    left.resize(std::max<size_t>(left.size() + 2, 26), ' ');
    out += left + s.help;
    if (s.required)
      out += " (required)";
    else if (!s.is_switch && !s.repeated && !s.default_value.empty())
      out += " (default " + s.default_value + ")";
    out += "\n";
  }
  return out;
}

}  // namespace idtune::cli
