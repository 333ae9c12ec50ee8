// Faults injected into `idtune tune` on a tiny U-Net: a full disk (RLIMIT_FSIZE, which makes
// the kernel refuse writes past a size as ENOSPC would) during a checkpoint and during the
// export, and SIGKILL in every phase (start-up, a checkpoint's write, the export, a resume's
// rewrite of metrics.jsonl). After each: the previous checkpoint is intact, the run directory
// looks finished (tuned.pt) only if its run is, no temporary file is left once a run has
// started again, and the resumed run ends bit-identical to an uninterrupted one.

#include "cli_fixture.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/inotify.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <csignal>
#include <filesystem>
#include <sstream>
#include <thread>

namespace idtune {
namespace {

namespace fs = std::filesystem;
using testing::Child;
using testing::contents;
using testing::metrics_without_timings;
using testing::tune_args;

/// Runs `args` and SIGKILLs it the moment the `nth` entry whose name starts with `prefix` is
/// created in `dir` (inotify; a writer creates its temporary folder ".<name>.<pid>.tmp" first,
/// so the kill lands mid-write). Returns false if the process exited before that.
bool kill_when_created(const std::vector<std::string>& args, const std::string& log,
                       const std::string& dir, const std::string& prefix, int nth = 1) {
  const int watch = ::inotify_init1(IN_CLOEXEC);
  ::inotify_add_watch(watch, dir.c_str(), IN_CREATE);
  Child child(args, log);
  bool killed = false;
  for (int seen = 0; !killed && child.running();) {
    pollfd ready{watch, POLLIN, 0};
    if (::poll(&ready, 1, 20) <= 0) continue;
    alignas(inotify_event) std::array<char, 8192> buffer;
    const ssize_t n = ::read(watch, buffer.data(), buffer.size());
    for (ssize_t at = 0; at < n && !killed;) {
      const auto* event = reinterpret_cast<const inotify_event*>(buffer.data() + at);
      if (event->len > 0 && std::string(event->name).rfind(prefix, 0) == 0 && ++seen == nth) {
        child.kill9();
        killed = true;
      }
      at += static_cast<ssize_t>(sizeof(inotify_event) + event->len);
    }
  }
  ::close(watch);
  return killed;
}

/// Names in `dir` that a writer's temporary leaves: ".<name>.<pid>.tmp" (and anything in it).
std::vector<std::string> temporaries(const std::string& dir) {
  std::vector<std::string> found;
  std::error_code ec;
  for (const auto& e : fs::recursive_directory_iterator(dir, ec)) {
    const auto name = e.path().filename().string();
    if (name.size() > 4 && name.compare(name.size() - 4, 4, ".tmp") == 0)
      found.push_back(e.path().string());
  }
  return found;
}

class FaultInjection : public testing::CliTest {
 protected:
  void SetUp() override {
    CliTest::SetUp();
    config_["iterations"] = 12;
    config_["output"]["log_every"] = 0;
    config_file_ = write_config(config_);
    // The uninterrupted run every interrupted one must end equal to.
    const auto r = testing::idtune("tune --config " + config_file_);
    ASSERT_EQ(r.status, 0) << r.output;
    fs::rename(run_dir(), dir_.file("uninterrupted"));
  }
  std::string file(const std::string& name) const { return run_dir() + "/" + name; }
  std::string log() const { return dir_.file("log.txt"); }
  /// Runs `tune` with `flags` to its end; expects exit 0.
  void tune(std::vector<std::string> flags) {
    Child child(tune_args(config_file_, std::move(flags)), log());
    ASSERT_EQ(child.wait(), 0) << contents(log());
  }
  /// What must hold whenever the process is gone, whatever it was doing: the directory looks
  /// finished (tuned.pt) only if its run is, i.e. the export is whole and of the iterations
  /// its config.json asks for.
  void expect_consistent(const std::string& when) {
    if (!fs::exists(file("tuned.pt"))) return;
    EXPECT_NO_THROW(ScoreModel::load(file("tuned.pt"), {})) << when;
    EXPECT_EQ(read_json_file(file("tuned.json"))["provenance"]["iterations"],
              read_json_file(file("config.json"))["iterations"])
        << when << ": tuned.pt is an earlier session's";
  }
  /// Resumes to the end (--resume when a checkpoint is there, else from the start) and expects
  /// the uninterrupted run's weights and metrics, and no temporary file left.
  void expect_resumes_to_the_uninterrupted_run(const std::string& when) {
    const bool resume = fs::exists(file("checkpoint.pt"));
    tune(resume ? std::vector<std::string>{"--resume"} : std::vector<std::string>{});
    EXPECT_EQ(contents(file("tuned.pt")), contents(dir_.file("uninterrupted/tuned.pt")))
        << when << ": the tuned weights differ from the uninterrupted run's";
    EXPECT_EQ(metrics_without_timings(file("metrics.jsonl")),
              metrics_without_timings(dir_.file("uninterrupted/metrics.jsonl")))
        << when;
    EXPECT_EQ(temporaries(run_dir()), std::vector<std::string>{}) << when;
  }
  /// The one error line of a failed run's log.
  std::string error_line() const {
    std::istringstream in(contents(log()));
    std::string found;
    for (std::string line; std::getline(in, line);)
      if (line.find("[error]") != std::string::npos) {
        EXPECT_TRUE(found.empty()) << "a second error line: " << line;
        found = line;
      }
    return found;
  }

  std::string config_file_;
};

TEST_F(FaultInjection, AFullDiskDuringACheckpointKeepsThePreviousOne) {
  tune({"--set", "iterations=2"});
  const auto previous = contents(file("checkpoint.pt"));
  // A file-size limit below the checkpoint's size, above every other file's.
  const auto limit = static_cast<rlim_t>(previous.size() / 2);
  ASSERT_GT(limit, fs::file_size(dir_.file("uninterrupted/metrics.jsonl")));
  Child child(tune_args(config_file_, {"--resume"}), log(), limit);
  EXPECT_EQ(child.wait(), 1) << contents(log());
  const auto error = error_line();
  EXPECT_NE(error.find("cannot write '" + file("checkpoint.pt") + "'"), std::string::npos) << error;
  EXPECT_NE(error.find("File too large"), std::string::npos) << error;
  EXPECT_EQ(contents(file("checkpoint.pt")), previous);
  EXPECT_FALSE(fs::exists(file("tuned.pt")));  // iteration 12 is not reached: not finished
  EXPECT_EQ(temporaries(run_dir()), std::vector<std::string>{});
  expect_resumes_to_the_uninterrupted_run("after a full disk at a checkpoint");
}

TEST_F(FaultInjection, AFullDiskDuringTheExportLeavesNoModel) {
  // A finished run resumed with nothing left to do writes no checkpoint: it exports again,
  // after rewriting metrics.jsonl and config.json, which are smaller than the model.
  tune({});
  const auto checkpoint = contents(file("checkpoint.pt"));
  const auto tuned = fs::file_size(file("tuned.pt"));
  const auto metrics = fs::file_size(file("metrics.jsonl"));
  ASSERT_GT(tuned, metrics + 1024);
  Child child(tune_args(config_file_, {"--resume"}), log(),
              static_cast<rlim_t>((metrics + tuned) / 2));
  EXPECT_EQ(child.wait(), 1) << contents(log());
  const auto error = error_line();
  EXPECT_NE(error.find("cannot write '" + file("tuned.pt") + "'"), std::string::npos) << error;
  EXPECT_NE(error.find("File too large"), std::string::npos) << error;
  EXPECT_FALSE(fs::exists(file("tuned.pt")));
  EXPECT_EQ(contents(file("checkpoint.pt")), checkpoint);
  EXPECT_EQ(temporaries(run_dir()), std::vector<std::string>{});
  expect_consistent("after a full disk at the export");
  expect_resumes_to_the_uninterrupted_run("after a full disk at the export");
}

TEST_F(FaultInjection, SigkillAtStartUp) {
  Child child(tune_args(config_file_, {}), log());
  std::this_thread::sleep_for(std::chrono::milliseconds(150));  // loading LibTorch and the model
  child.kill9();
  EXPECT_FALSE(fs::exists(file("checkpoint.pt")));
  EXPECT_FALSE(fs::exists(file("tuned.pt")));
  expect_resumes_to_the_uninterrupted_run("after SIGKILL at start-up");
}

TEST_F(FaultInjection, SigkillInACheckpointWrite) {
  // Checkpoints every iteration; killed as the third is written: the second must be intact.
  fs::create_directories(run_dir());
  ASSERT_TRUE(kill_when_created(tune_args(config_file_, {"--set", "output.checkpoint_every=1"}),
                                log(), run_dir(), ".checkpoint.pt.", 3))
      << contents(log());
  expect_consistent("after SIGKILL in a checkpoint's write");
  ASSERT_TRUE(fs::exists(file("checkpoint.pt")));
  expect_resumes_to_the_uninterrupted_run("after SIGKILL in a checkpoint's write");
}

TEST_F(FaultInjection, SigkillInTheExport) {
  fs::create_directories(run_dir());
  ASSERT_TRUE(kill_when_created(tune_args(config_file_, {}), log(), run_dir(), ".tuned.pt."))
      << contents(log());
  expect_consistent("after SIGKILL in the export");
  expect_resumes_to_the_uninterrupted_run("after SIGKILL in the export");
}

TEST_F(FaultInjection, SigkillInAResumesRewriteOfTheMetrics) {
  // A finished run of 7 iterations (checkpoints at 5 and 7), extended to 12.
  tune({"--set", "iterations=7", "--set", "output.checkpoint_every=5"});
  ASSERT_TRUE(
      kill_when_created(tune_args(config_file_, {"--resume"}), log(), run_dir(), ".metrics.jsonl."))
      << contents(log());
  expect_consistent("after SIGKILL in a resume's rewrite of metrics.jsonl");
  expect_resumes_to_the_uninterrupted_run("after SIGKILL in a resume's rewrite of metrics.jsonl");
}

}  // namespace
}  // namespace idtune
