#include "idtune/core/atomic_file.h"

#include "idtune/core/error.h"
#include "idtune/core/torchscript.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
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

void write_file_atomically(const std::string& target,
                           const std::function<void(const std::string& temp)>& write) {
  check_writable_target(target);
  // The temporary file keeps the target's name, in a private folder beside it: some writers
  // record the name (a TorchScript archive's root folder is the file's stem), and the result
  // must not depend on the process that wrote it.
  const fs::path path(target);
  const fs::path folder = (path.has_parent_path() ? path.parent_path() : fs::path(".")) /
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

void write_bytes_atomically(const std::string& target, const std::string& content) {
  write_file_atomically(target, [&](const std::string& temp) {
    std::FILE* f = std::fopen(temp.c_str(), "wb");
    if (!f) throw Error(std::strerror(errno));
    const size_t written = std::fwrite(content.data(), 1, content.size(), f);
    const int write_error = written == content.size() ? 0 : errno;
    const int close_error = std::fclose(f) == 0 ? 0 : errno;
    if (write_error || close_error) throw Error(std::strerror(write_error ? write_error : close_error));
  });
}

}  // namespace idtune
