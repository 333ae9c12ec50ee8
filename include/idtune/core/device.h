#pragma once
// Devices and dtypes by name, as configs and flags spell them.

#include "idtune/core/json_reader.h"

#include <c10/core/Device.h>
#include <c10/core/ScalarType.h>

#include <string>

namespace idtune {

/// Parses "cpu", "cuda", "cuda:1"; throws if CUDA is asked for and unavailable.
c10::Device parse_device(const std::string& name);
/// "float32" or "float64".
c10::ScalarType parse_dtype(const std::string& name);
/// Reads the optional key "dtype" (float32 | float64) into `dtype`, refusing other names
/// with the key's JSON path.
void read_dtype(JsonReader& reader, std::string& dtype);

}  // namespace idtune
