#include "idtune/distributed/local_launcher.h"

#include "idtune/core/error.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <spdlog/spdlog.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <map>
#include <thread>

extern char** environ;

namespace idtune {

namespace {

volatile std::sig_atomic_t pending_signal = 0;

extern "C" void remember_signal(int signal) { pending_signal = signal; }

/// A TCP port that is free on the loopback now (the kernel's choice for port 0).
int free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  check(fd >= 0, "--nproc: cannot open a socket (", std::strerror(errno), ")");
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t length = sizeof address;
  const bool ok = ::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0 &&
                  ::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) == 0;
  const int error = errno;
  ::close(fd);
  check(ok, "--nproc: cannot find a free port on 127.0.0.1 (", std::strerror(error), ")");
  return ntohs(address.sin_port);
}

/// This process's environment with the rendezvous variables of `rank` in place of any.
std::vector<std::string> worker_environment(int rank, int nproc, int port, int threads) {
  const std::vector<std::string> names = {
      "RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"};
  std::vector<std::string> env;
  for (char** e = environ; *e; ++e) {
    const std::string entry = *e;
    const auto name = entry.substr(0, entry.find('='));
    if (std::find(names.begin(), names.end(), name) == names.end()) env.push_back(entry);
  }
  for (const auto& [name, value] :
       {std::pair{"RANK", rank}, std::pair{"LOCAL_RANK", rank}, std::pair{"WORLD_SIZE", nproc},
        std::pair{"LOCAL_WORLD_SIZE", nproc}, std::pair{"MASTER_PORT", port}})
    env.push_back(std::string(name) + "=" + std::to_string(value));
  env.push_back("MASTER_ADDR=127.0.0.1");
  if (!std::getenv("IDTUNE_NUM_THREADS"))
    env.push_back("IDTUNE_NUM_THREADS=" + std::to_string(threads));
  return env;
}

std::vector<char*> pointers(std::vector<std::string>& strings) {
  std::vector<char*> p;
  for (auto& s : strings) p.push_back(s.data());
  p.push_back(nullptr);
  return p;
}

/// "exited with status 3" or "was killed by signal 9".
std::string describe(int status) {
  return WIFEXITED(status) ? "exited with status " + std::to_string(WEXITSTATUS(status))
                           : "was killed by signal " + std::to_string(WTERMSIG(status));
}

}  // namespace

int run_local_workers(const std::vector<std::string>& argv, int nproc) {
  check(nproc >= 1 && nproc <= 1024, "--nproc ", nproc, ": expected 1 to 1024 workers");
  check(!argv.empty(), "--nproc: no command to run");
  const int port = free_port();
  const int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  const int threads = std::max(1, cores / nproc);
  spdlog::info("launching {} workers (rendezvous 127.0.0.1:{}, {} thread{} each){}", nproc, port,
               threads, threads == 1 ? "" : "s",
               std::getenv("IDTUNE_NUM_THREADS") ? " as IDTUNE_NUM_THREADS sets" : "");
  // Signals arrive here (the workers have their own process group, so a terminal's Ctrl-C
  // reaches them once, forwarded).
  struct sigaction forward {};
  forward.sa_handler = remember_signal;
  struct sigaction old_int {
  }, old_term{};
  ::sigaction(SIGINT, &forward, &old_int);
  ::sigaction(SIGTERM, &forward, &old_term);

  std::map<pid_t, int> rank_of;
  for (int rank = 0; rank < nproc; ++rank) {
    auto args = argv;
    auto env = worker_environment(rank, nproc, port, threads);
    auto arg_pointers = pointers(args), env_pointers = pointers(env);
    const pid_t parent = ::getpid();
    const pid_t pid = ::fork();
    if (pid == 0) {  // only async-signal-safe calls until exec
      ::setpgid(0, 0);
      ::prctl(PR_SET_PDEATHSIG, SIGTERM);  // the launcher killed: stop (and checkpoint)
      if (::getppid() != parent) ::_exit(1);
      ::signal(SIGINT, SIG_DFL);
      ::signal(SIGTERM, SIG_DFL);
      ::execve(arg_pointers[0], arg_pointers.data(), env_pointers.data());
      ::_exit(127);
    }
    check(pid > 0, "--nproc: cannot start worker ", rank, " (", std::strerror(errno), ")");
    rank_of[pid] = rank;
  }

  int result = 0;
  std::chrono::steady_clock::time_point stop_sent{};
  const auto signal_all = [&](int signal) {
    for (const auto& [pid, rank] : rank_of) ::kill(pid, signal);
  };
  while (!rank_of.empty()) {
    if (const int signal = pending_signal) {
      pending_signal = 0;
      spdlog::warn("{}: stopping the {} workers at their next iteration (again: at once)",
                   signal == SIGINT ? "interrupted" : "terminated", rank_of.size());
      signal_all(signal);
    }
    // A worker that ignores SIGTERM long after a failure: killed.
    if (result != 0 && std::chrono::steady_clock::now() - stop_sent > std::chrono::minutes(2))
      signal_all(SIGKILL);
    int status = 0;
    const pid_t pid = ::waitpid(-1, &status, WNOHANG);
    if (pid == 0 || (pid < 0 && errno == EINTR)) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      continue;
    }
    if (pid < 0) break;  // no children left
    const auto found = rank_of.find(pid);
    if (found == rank_of.end()) continue;
    const int rank = found->second;
    rank_of.erase(found);
    const int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    if (code != 0 && result == 0) {
      result = code;
      stop_sent = std::chrono::steady_clock::now();
      spdlog::error("worker rank {} (pid {}) {}; stopping the other {}", rank, pid,
                    describe(status), rank_of.size());
      signal_all(SIGTERM);
    }
  }
  ::sigaction(SIGINT, &old_int, nullptr);
  ::sigaction(SIGTERM, &old_term, nullptr);
  return result;
}

}  // namespace idtune
