#include "idtune/core/fair_share.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>

namespace idtune {

namespace {

constexpr double kInterval = 0.5;       // seconds between measurements
constexpr double kFirstInterval = 0.1;  // before the first decision: a hog shows at once

double now_seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

}  // namespace

FairShare::FairShare(bool enabled, int max_threads)
    : enabled_(enabled),
      max_threads_(std::max(1, max_threads)),
      cores_(std::max(1, static_cast<int>(std::thread::hardware_concurrency()))) {
  if (enabled_) last_ = measure();
}

FairShare FairShare::from_environment() {
  const int cores = static_cast<int>(std::thread::hardware_concurrency());
  return FairShare(std::getenv("IDTUNE_NUM_THREADS") == nullptr, cores);
}

int FairShare::threads_for(double free_cores, int max_threads) {
  const int threads = static_cast<int>(std::floor(free_cores + 0.25));
  return std::clamp(threads, 1, std::max(1, max_threads));
}

FairShare::Sample FairShare::measure() {
  Sample s;
  s.seconds = now_seconds();
  std::ifstream stat("/proc/stat");
  std::string cpu;
  uint64_t user = 0, nice = 0, system = 0, idle = 0, iowait = 0, irq = 0, softirq = 0, steal = 0;
  if (stat >> cpu >> user >> nice >> system >> idle >> iowait >> irq >> softirq >> steal &&
      cpu == "cpu") {
    s.busy = user + nice + system + irq + softirq + steal;
    s.total = s.busy + idle + iowait;
  }
  // /proc/self/stat: after the command name (in parentheses, may hold spaces) come the state
  // (field 3) ... utime (14) and stime (15).
  std::ifstream self("/proc/self/stat");
  std::string line;
  std::getline(self, line);
  const auto close = line.rfind(')');
  if (close != std::string::npos && close + 2 < line.size()) {
    std::istringstream rest(line.substr(close + 2));
    std::string skipped;
    for (int field = 3; field <= 13; ++field) rest >> skipped;
    uint64_t utime = 0, stime = 0;
    if (rest >> utime >> stime) s.own = utime + stime;
  }
  return s;
}

int FairShare::rebalance() {
  const int current = at::get_num_threads();
  const double interval = decided_ ? kInterval : kFirstInterval;
  if (!enabled_ || now_seconds() - last_.seconds < interval) return current;
  const Sample now = measure();
  if (now.total <= last_.total) return current;  // /proc unreadable or too soon for a tick
  const double ticks_per_core = double(now.total - last_.total) / cores_;
  const double others =
      (double(now.busy - last_.busy) - double(now.own - last_.own)) / std::max(ticks_per_core, 1.0);
  last_ = now;
  decided_ = true;
  const int target = threads_for(cores_ - std::max(others, 0.0), max_threads_);
  if (target < current || (target > current && pending_ == target)) {
    at::set_num_threads(target);
    pending_ = 0;
  } else {
    pending_ = target > current ? target : 0;
  }
  return at::get_num_threads();
}

}  // namespace idtune
