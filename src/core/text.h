// Small string helpers several layers share.
#pragma once

#include <sstream>
#include <string>
#include <string_view>

namespace wick {

/// s without leading and trailing spaces, tabs, CRs and LFs.
inline std::string trim_space(std::string_view s) {
  const size_t a = s.find_first_not_of(" \t\r\n"), b = s.find_last_not_of(" \t\r\n");
  return a == std::string_view::npos ? std::string() : std::string(s.substr(a, b - a + 1));
}

/// v as an error message shows a number a user typed: the shortest of iostream's default notation ("0.001", "1e-08").
inline std::string number_text(double v) {
  std::ostringstream s;
  s << v;
  return s.str();
}

}  // namespace wick
