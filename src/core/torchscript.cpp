#include "idtune/core/torchscript.h"

#include "idtune/core/atomic_file.h"
#include "idtune/core/error.h"
#include "idtune/core/text.h"

#include <torch/script.h>

#include <fstream>
#include <iterator>

namespace idtune {

namespace {

constexpr const char* kInterpreterPreamble = "The following operation failed in the TorchScript";

/// The last non-empty line of `text`, trimmed.
std::string last_line(const std::string& text) {
  auto end = text.find_last_not_of(" \n\r\t");
  if (end == std::string::npos) return "";
  const auto start = text.rfind('\n', end);
  const auto from = start == std::string::npos ? 0 : start + 1;
  const auto first = text.find_first_not_of(" \t", from);
  return text.substr(first, end + 1 - first);
}

}  // namespace

std::string error_summary(const std::exception& error) {
  const auto* c10_error = dynamic_cast<const c10::Error*>(&error);
  const std::string text = c10_error ? c10_error->what_without_backtrace() : error.what();
  if (text.find(kInterpreterPreamble) != std::string::npos) return last_line(text);
  return first_line(text);
}

at::Tensor load_saved_tensor(const std::string& path, const std::string& role) {
  check(is_existing_file(path), role, " file '", path,
        "' does not exist or is not a file (expected a tensor written by torch.save)");
  std::ifstream in(path, std::ios::binary);
  check(in.good(), "cannot open ", role, " file '", path, "'");
  const std::vector<char> bytes{std::istreambuf_iterator<char>(in), {}};
  c10::IValue value;
  try {
    value = torch::pickle_load(bytes);
  } catch (const std::exception& e) {
    throw Error(role + " file '" + path + "' is not a tensor saved with torch.save (" +
                error_summary(e) + ")");
  }
  check(value.isTensor(), role, " file '", path, "' holds a ", value.tagKind(),
        ", expected one tensor saved with torch.save");
  return value.toTensor();
}

torch::jit::Module load_torchscript(const std::string& path, c10::Device device,
                                    const std::string& role) {
  check(is_existing_file(path), role, " file '", path,
        "' does not exist or is not a file (expected a TorchScript file written by "
        "torch.jit.save)");
  torch::jit::Module module;
  try {
    module = torch::jit::load(path, device);
  } catch (const std::exception& e) {
    throw Error("cannot load " + role + " '" + path + "' as TorchScript (" + error_summary(e) +
                "): expected a file written by torch.jit.save of a scripted or traced module");
  }
  module.eval();
  return module;
}

at::Tensor call_torchscript(const torch::jit::Module& module, const std::string& method,
                            const std::vector<at::Tensor>& inputs, const std::string& who) {
  const auto describe_call = [&] {
    std::string call = method + "(";
    for (size_t i = 0; i < inputs.size(); ++i)
      call += (i ? ", " : "") + shape_string(inputs[i].sizes());
    return call + ")";
  };
  const auto found = module.find_method(method);
  check(found.has_value(), who, ": the module has no ", method, " method");
  c10::IValue out;
  try {
    out = (*found)(std::vector<c10::IValue>(inputs.begin(), inputs.end()));
  } catch (const std::exception& e) {  // c10::Error, or the interpreter's std::runtime_error
    throw Error(who + ": " + describe_call() + " failed (" + error_summary(e) + ")");
  }
  check(out.isTensor(), who, ": ", describe_call(), " must return a Tensor, returned ",
        out.tagKind());
  return out.toTensor();
}

}  // namespace idtune
