#pragma once
// An exclusive advisory lock (flock) on a file, held while the object lives: one run directory,
// one process. The kernel releases it when the process dies, so a crashed run never leaves a
// stale lock behind.

#include <string>

namespace idtune {

class FileLock {
 public:
  /// Locks `path` (created if absent) without waiting; throws an Error naming `what` and the
  /// holder's pid when another process holds it.
  FileLock(const std::string& path, const std::string& what);
  ~FileLock();
  FileLock(const FileLock&) = delete;
  FileLock& operator=(const FileLock&) = delete;

 private:
  int fd_ = -1;
};

}  // namespace idtune
