#pragma once
// Small text helpers for messages.

#include <c10/util/ArrayRef.h>

#include <cstdint>
#include <string>

namespace idtune {

/// "[2, 1, 28, 28]".
std::string shape_string(c10::IntArrayRef sizes);
/// `text` with control characters escaped (\n, \t, \r, \u00XX: a message stays on one line),
/// or (when longer than `max` bytes) its start, not splitting a UTF-8 character, then
/// "… (N characters)": a user's value echoed in a message.
std::string clipped(const std::string& text, size_t max = 100);
/// The text up to its first newline.
std::string first_line(const std::string& text);
/// Without leading and trailing whitespace.
std::string trim(const std::string& text);
bool ends_with(const std::string& text, const std::string& suffix);

}  // namespace idtune
