// The TorchScript boundary: every load and call names the file, the call and the input shapes,
// and carries torch's cause in one line without a C++ backtrace.

#include "idtune/core/torchscript.h"
#include "test_helpers.h"

#include <torch/script.h>
#include <torch/torch.h>

#include <fstream>

namespace idtune {
namespace {

using testing::expect_error;
using testing::TempDir;

/// A scripted module whose forward multiplies x by itself: fails for non-square x.
torch::jit::Module square_matmul_module() {
  torch::jit::Module module("SquareMatmul");
  module.define(R"(
def forward(self, x):
    return torch.mm(x, x)
)");
  return module;
}

void expect_no_backtrace(const std::string& message) {
  EXPECT_EQ(message.find("frame #"), std::string::npos) << message;
  EXPECT_EQ(message.find("Exception raised from"), std::string::npos) << message;
  EXPECT_EQ(message.find("The following operation failed"), std::string::npos) << message;
}

TEST(TorchScriptBoundary, FailingCallNamesCallerShapesAndCauseInOneLine) {
  const auto module = square_matmul_module();
  expect_no_backtrace(expect_error(
      [&] {
        call_torchscript(module, "forward", {torch::zeros({2, 3})}, "reward 'r.pt'");
      },
      {"reward 'r.pt': forward([2, 3]) failed", "cannot be multiplied"}));
}

TEST(TorchScriptBoundary, CallReturnsTheTensorResult) {
  const auto out = call_torchscript(square_matmul_module(), "forward", {torch::eye(3) * 2}, "m");
  EXPECT_TRUE(torch::equal(out, torch::eye(3) * 4));
}

TEST(TorchScriptBoundary, NonTensorResultAndMissingMethodAreRefused) {
  torch::jit::Module module("Pair");
  module.define(R"(
def forward(self, x):
    return (x, x)
)");
  expect_error([&] { call_torchscript(module, "forward", {torch::zeros({1})}, "model 'p.pt'"); },
               {"model 'p.pt'", "forward([1]) must return a Tensor", "Tuple"});
  expect_error(
      [&] { call_torchscript(module, "features", {torch::zeros({1})}, "classifier 'p.pt'"); },
      {"classifier 'p.pt'", "no features method"});
}

TEST(TorchScriptBoundary, LoadRefusesMissingDirectoryAndCorruptFilesNamingThem) {
  TempDir dir;
  expect_error([&] { load_torchscript(dir.file("absent.pt"), c10::kCPU, "model"); },
               {"model file", dir.file("absent.pt"), "does not exist"});
  expect_error([&] { load_torchscript(dir.file(""), c10::kCPU, "reward"); },
               {"reward file", "not a file"});
  std::ofstream(dir.file("junk.pt")) << "not a zip archive";
  expect_no_backtrace(
      expect_error([&] { load_torchscript(dir.file("junk.pt"), c10::kCPU, "potential"); },
                   {"cannot load potential '" + dir.file("junk.pt") + "' as TorchScript"}));
}

TEST(TorchScriptBoundary, LoadedModuleIsInEvalMode) {
  TempDir dir;
  auto module = square_matmul_module();
  module.register_attribute("training", c10::BoolType::get(), true);
  module.save(dir.file("m.pt"));
  ASSERT_TRUE(module.is_training());
  EXPECT_FALSE(load_torchscript(dir.file("m.pt"), c10::kCPU, "model").is_training());
}

}  // namespace
}  // namespace idtune
