#pragma once
// The idtune executable on a tiny U-Net: the fixture of the tests that run the CLI
// (cli_test.cpp, fault_injection_test.cpp, distributed_test.cpp) and what they compare runs by.

#include "idtune/core/json_reader.h"
#include "idtune/diffusion/toy_models.h"
#include "test_helpers.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

namespace idtune::testing {

/// `idtune <args>`: its exit status and output.
inline Result idtune(const std::string& args) {
  return run(std::string(IDTUNE_EXECUTABLE) + " " + args);
}

/// The bytes of a file ("" when it cannot be read).
inline std::string contents(const std::string& file) {
  std::ifstream in(file, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), {}};
}

/// metrics.jsonl without what depends on the machine's speed (wall_time_s,
/// sample_steps_per_s, allreduce_s): two runs of one configuration must agree on the rest, bit for
/// bit.
inline std::string metrics_without_timings(const std::string& file) {
  std::ifstream in(file);
  std::string out;
  for (std::string line; std::getline(in, line);) {
    auto j = nlohmann::json::parse(line);
    j.erase("wall_time_s");
    j.erase("allreduce_s");
    j.erase("sample_steps_per_s");
    out += j.dump() + "\n";
  }
  return out;
}

/// `idtune tune --config <config> <flags…>` as an argv.
inline std::vector<std::string> tune_args(const std::string& config,
                                          std::vector<std::string> flags) {
  std::vector<std::string> args = {IDTUNE_EXECUTABLE, "tune", "--config", config};
  args.insert(args.end(), flags.begin(), flags.end());
  return args;
}

/// A child process running `args`, its output in `log`, its files limited to `max_file_bytes`
/// (RLIMIT_FSIZE) when that is not 0.
class Child {
 public:
  Child(const std::vector<std::string>& args, const std::string& log, rlim_t max_file_bytes = 0) {
    std::vector<char*> argv;
    for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    pid_ = ::fork();
    if (pid_ == 0) {  // only async-signal-safe calls until exec
      const int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      ::dup2(fd, 1);
      ::dup2(fd, 2);
      if (max_file_bytes > 0) {
        const rlimit limit{max_file_bytes, max_file_bytes};
        ::setrlimit(RLIMIT_FSIZE, &limit);
      }
      ::execv(argv[0], argv.data());
      ::_exit(127);
    }
  }
  ~Child() {
    if (pid_ > 0 && !exited_) {
      ::kill(pid_, SIGKILL);
      wait();
    }
  }
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;

  /// Waits for the exit: the exit status, or 128 + the signal that ended it.
  int wait() {
    int status = 0;
    ::waitpid(pid_, &status, 0);
    exited_ = true;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }
  bool running() {
    int status = 0;
    return ::waitpid(pid_, &status, WNOHANG) == 0 || (exited_ = true, false);
  }
  void kill9() {
    ::kill(pid_, SIGKILL);
    wait();
  }
  pid_t pid() const { return pid_; }

 private:
  pid_t pid_ = -1;
  bool exited_ = false;
};

/// A tiny U-Net saved with its card, and a valid 30-iteration config for it, in a fresh
/// directory.
class CliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    TinyUNetOptions o;
    o.size = 4;
    o.width = 4;
    o.model.dtype = c10::kFloat;
    make_tiny_unet(o).save(dir_.file("unet.pt"));
    config_ = {{"model", dir_.file("unet.pt")},
               {"reward", "brightness"},
               {"objective", {{"lambda", 1.0}, {"beta", 0.05}}},
               {"sampler", {{"kind", "sde-euler"}, {"steps", 8}}},
               {"algorithm", {{"queue_slots", 4}}},
               {"batch", 4},
               {"iterations", 30},
               {"optimiser", {{"lr", 3e-3}}},
               {"output", {{"run_dir", run_dir()}, {"image_every", 0}, {"log_every", 10}}}};
  }
  std::string run_dir() const { return dir_.file("run"); }
  std::string write_config(const nlohmann::json& config) const {
    write_json_file(dir_.file("run.json"), config);
    return dir_.file("run.json");
  }
  /// Runs tune with a config changed by `edit`; expects failure naming every fragment, and
  /// no checkpoint in the run directory.
  template <typename Edit>
  void expect_refused(Edit edit, const std::vector<std::string>& fragments,
                      const std::string& extra_flags = "") {
    auto config = config_;
    edit(config);
    const auto r = idtune("tune --config " + write_config(config) + " " + extra_flags);
    EXPECT_NE(r.status, 0) << r.output;
    for (const auto& f : fragments)
      EXPECT_NE(r.output.find(f), std::string::npos) << "missing '" << f << "' in:\n" << r.output;
    EXPECT_FALSE(std::filesystem::exists(run_dir() + "/checkpoint.pt")) << r.output;
  }

  TempDir dir_;
  nlohmann::json config_;
};

}  // namespace idtune::testing
