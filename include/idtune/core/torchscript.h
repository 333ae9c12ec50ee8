#pragma once
// The one boundary to TorchScript: every module idtune reads (score models, rewards,
// classifiers, potentials) is loaded and called here, so that every failure names the file,
// the call and the input shapes, and carries the first line of torch's message — never a C++
// backtrace, never the interpreter's bare "The following operation failed".

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

#include <exception>
#include <string>
#include <vector>

namespace torch::jit {
struct Module;
}

namespace idtune {

/// Loads the TorchScript file `path` onto `device`, in eval mode. `role` ("model", "reward",
/// "classifier", "potential") starts every message, with the path.
torch::jit::Module load_torchscript(const std::string& path, c10::Device device,
                                    const std::string& role);

/// Calls `method` of `module` with tensor inputs and returns its Tensor result. Throws
/// idtune::Error "<who>: <method>(<input shapes>) failed (<cause>)" when the call throws, and
/// when the result is not a Tensor.
at::Tensor call_torchscript(const torch::jit::Module& module, const std::string& method,
                            const std::vector<at::Tensor>& inputs, const std::string& who);

/// A tensor written by torch.save (e.g. precomputed text-encoder states, reference samples);
/// `role` and the path start every message.
at::Tensor load_saved_tensor(const std::string& path, const std::string& role);

/// The cause of a torch exception in one line: the first line of c10::Error's message without
/// its backtrace; for an error raised inside TorchScript code, the Python-style error line
/// ("RuntimeError: ...") the interpreter puts last.
std::string error_summary(const std::exception& error);

}  // namespace idtune
