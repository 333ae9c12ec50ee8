#pragma once
// Small utilities shared by the tests: tolerances, expected errors, shell commands, temp dirs.

#include "idtune/core/error.h"

#include <ATen/core/Tensor.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <string>
#include <vector>

namespace idtune::testing {

/// max |a − b| / max(|b|) over a list of tensors, in float64 (max |a − b| when b is all zero).
double relative_error(const std::vector<at::Tensor>& a, const std::vector<at::Tensor>& b);

/// Runs `action`, which must throw idtune::Error whose message contains every `fragment`, in
/// one line; returns the message ("" when nothing was thrown).
template <typename Action>
std::string expect_error(Action action, const std::vector<std::string>& fragments) {
  try {
    action();
    ADD_FAILURE() << "no error thrown; expected one mentioning '" << fragments.front() << "'";
  } catch (const Error& e) {
    const std::string message = e.what();
    for (const auto& f : fragments)
      EXPECT_NE(message.find(f), std::string::npos) << "message: " << message << "\nmissing: " << f;
    EXPECT_EQ(message.find('\n'), std::string::npos) << "message over several lines: " << message;
    return message;
  }
  return "";
}

/// Exit status and combined stdout + stderr of a shell command.
struct Result {
  int status;
  std::string output;
};
Result run(const std::string& command);

/// A fresh directory under the system temp dir, removed when the object dies.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  std::string file(const std::string& name) const { return (path_ / name).string(); }

 private:
  std::filesystem::path path_;
};

}  // namespace idtune::testing
