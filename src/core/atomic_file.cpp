#include "idtune/core/atomic_file.h"

#include "idtune/core/error.h"
#include "idtune/core/text.h"
#include "idtune/core/torchscript.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <system_error>

namespace idtune {

namespace fs = std::filesystem;

namespace {

/// Flushes `file` to disk: a full disk or an I/O error may only show here.
void sync_file(const std::string& file) {
  const int fd = ::open(file.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw Error(std::string("cannot reopen to sync: ") + std::strerror(errno));
  const int synced = ::fsync(fd);
  const int error = errno;
  ::close(fd);
  if (synced != 0) throw Error(std::strerror(error));
}

}  // namespace

void check_writable_target(const std::string& target) {
  const fs::path path(target);
  check(path.has_filename(), "cannot write '", target, "': not a file path");
  const fs::path dir = path.has_parent_path() ? path.parent_path() : fs::path(".");
  std::error_code ec;
  check(fs::is_directory(dir, ec), "cannot write '", target, "': folder '", dir.string(),
        "' does not exist");
  const auto status = fs::symlink_status(path, ec);
  if (fs::exists(status) && !fs::is_regular_file(fs::status(path, ec)))
    throw Error("cannot write '" + target +
                "': it exists and is not a regular file (a directory, device or FIFO); "
                "give a file path");
}

int remove_stale_temporaries(const std::string& dir) {
  std::error_code ec;
  int removed = 0;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    // ".<name>.<pid>.tmp", a folder, its writer gone (another program, e.g. idtune sample
    // writing into the run directory, may be at work).
    const std::string name = entry.path().filename().string();
    if (name.size() < 7 || name[0] != '.' || !ends_with(name, ".tmp") || !entry.is_directory(ec))
      continue;
    const auto dot = name.rfind('.', name.size() - 5);
    long pid = 0;
    const char* digits = name.data() + dot + 1;
    const auto [end, error] = std::from_chars(digits, name.data() + name.size() - 4, pid);
    if (dot == 0 || error != std::errc() || end != name.data() + name.size() - 4 || pid <= 0)
      continue;
    if (::kill(static_cast<pid_t>(pid), 0) == 0 || errno != ESRCH) continue;  // alive
    removed += fs::remove_all(entry.path(), ec) > 0;
  }
  return removed;
}

bool is_existing_file(const std::string& path) {
  std::error_code ec;
  return fs::is_regular_file(path, ec);
}

void check_directory_path(const std::string& dir) {
  std::error_code ec;
  const auto status = fs::status(dir, ec);
  check(status.type() != fs::file_type::none, "cannot use '", clipped(dir, 300),
        "' as a directory: ", ec.message());
  check(!fs::exists(status) || fs::is_directory(status), "'", dir,
        "' exists and is not a directory");
}

void write_file_atomically(const std::string& target,
                           const std::function<void(const std::string& temp)>& write) {
  check_writable_target(target);
  // The temporary file keeps the target's name, in a private folder beside it: some writers
  // record the name (a TorchScript archive's root folder is the file's stem), and the result
  // must not depend on the process that wrote it.
  const fs::path path(target);
  const fs::path folder =
      (path.has_parent_path() ? path.parent_path() : fs::path(".")) /
      ("." + path.filename().string() + "." + std::to_string(::getpid()) + ".tmp");
  const std::string temp = (folder / path.filename()).string();
  std::error_code ignored;
  try {
    fs::create_directory(folder);
    write(temp);
    sync_file(temp);
    if (std::rename(temp.c_str(), target.c_str()) != 0) throw Error(std::strerror(errno));
    fs::remove(folder, ignored);
  } catch (const std::exception& e) {
    fs::remove_all(folder, ignored);
    throw Error("cannot write '" + target + "': " + error_summary(e) +
                " (nothing was replaced; check free disk space and permissions)");
  }
}

void write_stream_atomically(const std::string& target,
                             const std::function<void(const ByteSink& sink)>& produce) {
  write_file_atomically(target, [&](const std::string& temp) {
    std::FILE* f = std::fopen(temp.c_str(), "wb");
    if (!f) throw Error(std::strerror(errno));
    int error = 0;  // the first failed write's; later bytes are dropped, and reported as written
    const ByteSink sink = [&](const void* data, size_t size) {
      if (error == 0 && size > 0 && std::fwrite(data, 1, size, f) != size)
        error = errno != 0 ? errno : EIO;
      return size;
    };
    try {
      produce(sink);
    } catch (...) {
      std::fclose(f);
      throw;
    }
    if (std::fclose(f) != 0 && error == 0) error = errno;
    if (error != 0) throw Error(std::strerror(error));
  });
}

void write_bytes_atomically(const std::string& target, const std::string& content) {
  write_stream_atomically(target,
                          [&](const ByteSink& sink) { sink(content.data(), content.size()); });
}

}  // namespace idtune
