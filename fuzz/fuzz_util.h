// What every target shares: the input as text, and the one outcome a parser may have besides success.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "wick/error.h"

namespace wick::fuzz {

inline std::string_view text(const uint8_t* data, size_t size) { return {reinterpret_cast<const char*>(data), size}; }

/// Runs `parse`; a wick::Error is the parser refusing bad input, which is fine. Anything else (another
/// exception, a crash, a sanitizer report, a hang) escapes to libFuzzer and is a finding.
template <typename F>
void expect_only_wick_errors(F&& parse) {
  try {
    parse();
  } catch (const wick::Error&) {
  }
}

}  // namespace wick::fuzz
