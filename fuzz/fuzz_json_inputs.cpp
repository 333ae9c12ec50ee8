// libFuzzer target: every byte string read as a tune config, a Langevin config and a model
// card, through the same calls as the CLI (parse_json, then each parser). The contract: an
// input is accepted, or refused with one idtune::Error of one line that names where ("fuzz"
// or a JSON path). Anything else (another exception type, a multi-line message, a crash, a
// sanitizer report, a hang) is a finding. Build and run: scripts/fuzz.sh.

#include "idtune/core/error.h"
#include "idtune/core/json_reader.h"
#include "idtune/diffusion/model_card.h"
#include "idtune/langevin/config.h"
#include "idtune/training/tune_config.h"

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>

namespace {

template <typename Parse>
void expect_clean(const nlohmann::json& json, Parse parse) {
  try {
    parse(json);
  } catch (const idtune::Error& e) {
    const std::string message = e.what();
    if (message.find('\n') != std::string::npos || message.find("fuzz") == std::string::npos) {
      std::fprintf(stderr, "message without its source or over several lines: %s\n",
                   message.c_str());
      std::abort();
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  nlohmann::json json;
  try {
    json = idtune::parse_json(text, "fuzz");
  } catch (const idtune::Error&) {
    return 0;  // refused while parsing: what parse_json promises
  }
  expect_clean(json, [](const nlohmann::json& j) { idtune::parse_tune_config(j, "fuzz"); });
  expect_clean(json, [](const nlohmann::json& j) { idtune::parse_langevin_config(j, "fuzz"); });
  expect_clean(json, [](const nlohmann::json& j) { idtune::parse_model_card(j, "fuzz"); });
  return 0;
}
