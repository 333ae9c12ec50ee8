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
/// The bytes of `content`, written atomically.
void write_bytes_atomically(const std::string& target, const std::string& content);
/// Throws unless `target` is absent or a regular file, and its folder exists.
void check_writable_target(const std::string& target);

}  // namespace idtune
