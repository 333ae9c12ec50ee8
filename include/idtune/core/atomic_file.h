#pragma once
// Files written so that a reader (or a resumed run) sees the old content or the new, never a
// part: the content goes to a temporary file beside the target, is flushed to disk and renamed
// over it. A target that exists and is not a regular file (a directory, device or FIFO) is
// refused, never replaced; on any failure (a full disk, an I/O error, a throwing writer) the
// temporary file is removed and the error names the target and the cause.

#include <functional>
#include <string>

namespace idtune {

/// `write(temp)` fills the temporary file (e.g. torch::save to that path); then it is synced
/// and renamed to `target`.
void write_file_atomically(const std::string& target,
                           const std::function<void(const std::string& temp)>& write);
/// A writer function: takes `size` bytes, returns how many it took.
using ByteSink = std::function<size_t(const void* data, size_t size)>;
/// The bytes `produce` passes to its sink, written atomically. For LibTorch's archive writers
/// (OutputArchive::save_to, torch::jit::ExportModule take a sink): this sink never fails them.
/// The first failed write (a full disk) is kept, the rest dropped, and thrown once `produce` is
/// done; a writer whose own file write fails throws again from its destructor, which
/// terminates the process.
void write_stream_atomically(const std::string& target,
                             const std::function<void(const ByteSink& sink)>& produce);
/// The bytes of `content`, written atomically.
void write_bytes_atomically(const std::string& target, const std::string& content);
/// Throws unless `target` is absent or a regular file, and its folder exists.
void check_writable_target(const std::string& target);
/// Removes the temporary folders (".<name>.<pid>.tmp") that writers killed mid-write left in
/// `dir` (those whose process is gone); returns how many.
int remove_stale_temporaries(const std::string& dir);
/// Whether `path` is a regular file (or a link to one); false, never an exception, for a name
/// the system refuses (too long, a file on the way).
bool is_existing_file(const std::string& path);
/// Throws unless `dir` is a directory, or absent (to be created) under a name the system
/// accepts (not too long).
void check_directory_path(const std::string& dir);

}  // namespace idtune
