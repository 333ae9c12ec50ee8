#include "idtune/distributed/process_group.h"

#include "idtune/core/error.h"
#include "idtune/core/torchscript.h"

#include <torch/torch.h>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include <cstdlib>
#include <limits>

namespace idtune {

namespace {

/// An environment variable as an integer in [lo, hi]; nullopt when unset.
std::optional<int> integer_variable(const char* name, long lo, long hi) {
  const char* text = std::getenv(name);
  if (!text) return std::nullopt;
  char* end = nullptr;
  const long value = std::strtol(text, &end, 10);
  check(end != text && *end == '\0' && value >= lo && value <= hi, "environment variable ", name,
        "='", text, "': expected an integer in [", lo, ", ", hi, "]");
  return static_cast<int>(value);
}

/// `body()`, with a c10d error (a rank gone, a timeout) as one line naming what was under way.
template <typename Body>
void collective(const std::string& what, const DistributedOptions& o, Body&& body) {
  try {
    body();
  } catch (const std::exception& e) {
    throw Error("distributed rank " + std::to_string(o.rank) + " of " +
                std::to_string(o.world_size) + ": " + what + " failed (" + error_summary(e) +
                "): another rank died, hung or lost its connection");
  }
}

}  // namespace

std::optional<DistributedOptions> distributed_from_environment() {
  const auto world = integer_variable("WORLD_SIZE", 1, 65536);
  if (!world) return std::nullopt;
  DistributedOptions o;
  o.world_size = *world;
  const auto rank = integer_variable("RANK", 0, *world - 1);
  check(rank.has_value(), "environment variable RANK is not set (WORLD_SIZE=", *world,
        " is): launch with torchrun, or set RANK, MASTER_ADDR and MASTER_PORT for each process");
  o.rank = *rank;
  o.local_rank = integer_variable("LOCAL_RANK", 0, *world - 1).value_or(o.rank);
  if (const char* addr = std::getenv("MASTER_ADDR")) o.master_addr = addr;
  if (const auto port = integer_variable("MASTER_PORT", 1, 65535)) o.master_port = *port;
  return o;
}

struct ProcessGroup::Impl {
  c10::intrusive_ptr<c10d::TCPStore> store;
  c10::intrusive_ptr<c10d::ProcessGroupGloo> group;
};

ProcessGroup::ProcessGroup(const DistributedOptions& options)
    : options_(options), impl_(std::make_unique<Impl>()) {
  check(options_.world_size >= 1 && options_.rank >= 0 && options_.rank < options_.world_size,
        "distributed: rank ", options_.rank, " is outside a world of ", options_.world_size);
  const std::string where = options_.master_addr + ":" + std::to_string(options_.master_port);
  collective("meeting the other ranks at " + where, options_, [&] {
    c10d::TCPStoreOptions store;
    store.port = static_cast<uint16_t>(options_.master_port);
    store.isServer = options_.rank == 0;
    store.numWorkers = options_.world_size;
    store.waitWorkers = true;
    store.timeout = options_.timeout;
    impl_->store = c10::make_intrusive<c10d::TCPStore>(options_.master_addr, store);
    auto gloo = c10d::ProcessGroupGloo::Options::create();
    gloo->timeout = options_.timeout;
    gloo->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname(
        options_.master_addr == "localhost" ? "127.0.0.1" : options_.master_addr));
    impl_->group = c10::make_intrusive<c10d::ProcessGroupGloo>(impl_->store, options_.rank,
                                                               options_.world_size, gloo);
  });
}

ProcessGroup::~ProcessGroup() = default;

void ProcessGroup::all_reduce_mean(std::vector<at::Tensor>& tensors) {
  if (tensors.empty()) return;
  torch::NoGradGuard no_grad;
  // One flat buffer, one collective (Gloo's list form means copies of one tensor, and one
  // message per tensor would pay the latency each time).
  std::vector<at::Tensor> flat_parts;
  for (const auto& t : tensors) {
    check(t.scalar_type() == tensors[0].scalar_type(), "distributed: all-reduce of tensors of ",
          "different dtypes (", tensors[0].scalar_type(), ", ", t.scalar_type(), ")");
    flat_parts.push_back(t.reshape({-1}));
  }
  std::vector<at::Tensor> flat{torch::cat(flat_parts)};
  collective("all-reduce of " + std::to_string(tensors.size()) + " tensors", options_,
             [&] { impl_->group->allreduce(flat)->wait(options_.timeout); });
  flat[0].div_(options_.world_size);
  int64_t offset = 0;
  for (auto& t : tensors) {
    t.copy_(flat[0].narrow(0, offset, t.numel()).view_as(t));
    offset += t.numel();
  }
}

at::Tensor ProcessGroup::all_gather(const at::Tensor& local, int64_t dim) {
  torch::NoGradGuard no_grad;
  std::vector<at::Tensor> input{local.detach().contiguous()};
  std::vector<std::vector<at::Tensor>> output(1);
  for (int r = 0; r < options_.world_size; ++r) output[0].push_back(torch::empty_like(input[0]));
  collective("all-gather of " + std::to_string(local.numel()) + " values", options_,
             [&] { impl_->group->allgather(output, input)->wait(options_.timeout); });
  return torch::cat(output[0], dim);
}

bool ProcessGroup::any(bool flag) {
  std::vector<at::Tensor> value{torch::tensor({flag ? 1 : 0}, torch::kInt32)};
  collective("agreeing on a stop", options_, [&] {
    c10d::AllreduceOptions max;
    max.reduceOp = c10d::ReduceOp::MAX;
    impl_->group->allreduce(value, max)->wait(options_.timeout);
  });
  return value[0].item<int>() != 0;
}

void ProcessGroup::check_identical(const std::vector<at::Tensor>& tensors,
                                   const std::string& what) {
  double sum = 0, squares = 0;
  for (const auto& t : tensors) {
    const auto f64 = t.detach().to(torch::kCPU, torch::kFloat64);
    sum += f64.sum().item<double>();
    squares += f64.square().sum().item<double>();
  }
  // The largest and (as the largest of the negatives) the smallest checksum over the ranks.
  std::vector<at::Tensor> extremes{torch::tensor({sum, squares, -sum, -squares}, torch::kFloat64)};
  collective("checksum of " + what, options_, [&] {
    c10d::AllreduceOptions max;
    max.reduceOp = c10d::ReduceOp::MAX;
    impl_->group->allreduce(extremes, max)->wait(options_.timeout);
  });
  const auto e = extremes[0];
  const bool same =
      e[0].item<double>() == -e[2].item<double>() && e[1].item<double>() == -e[3].item<double>();
  check(same, "distributed rank ", options_.rank, ": ", what,
        " differ between the ranks (checksums from ", -e[2].item<double>(), " to ",
        e[0].item<double>(), "): the ranks have diverged; stopping");
}

}  // namespace idtune
