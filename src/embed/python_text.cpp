#include "embed/python_text.h"

#include <vector>

#include <utf8proc.h>

#include "wick/error.h"

namespace wick {

namespace {

std::vector<utf8proc_int32_t> code_points(std::string_view text) {
  std::vector<utf8proc_int32_t> cps;
  const auto* p = reinterpret_cast<const utf8proc_uint8_t*>(text.data());
  const utf8proc_ssize_t n = utf8proc_ssize_t(text.size());
  for (utf8proc_ssize_t i = 0; i < n;) {
    utf8proc_int32_t cp = 0;
    const utf8proc_ssize_t len = utf8proc_iterate(p + i, n - i, &cp);
    if (len <= 0) fail(ErrorKind::bad_input, "invalid UTF-8 at byte " + std::to_string(i));
    cps.push_back(cp);
    i += len;
  }
  return cps;
}

void append(std::string& out, utf8proc_int32_t cp) {
  utf8proc_uint8_t buf[4];
  out.append(reinterpret_cast<const char*>(buf), size_t(utf8proc_encode_char(cp, buf)));
}

bool is_cased_letter(utf8proc_int32_t cp) {
  const utf8proc_category_t c = utf8proc_category(cp);
  return c == UTF8PROC_CATEGORY_LU || c == UTF8PROC_CATEGORY_LL || c == UTF8PROC_CATEGORY_LT;
}

}  // namespace

std::string python_lower(std::string_view text) {
  const std::vector<utf8proc_int32_t> cps = code_points(text);
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < cps.size(); ++i) {
    if (cps[i] == 0x130) {
      append(out, 'i');
      append(out, 0x307);
    } else if (cps[i] == 0x3A3 && i > 0 && is_cased_letter(cps[i - 1]) &&
               (i + 1 == cps.size() || !is_cased_letter(cps[i + 1]))) {
      append(out, 0x3C2);
    } else {
      append(out, utf8proc_tolower(cps[i]));
    }
  }
  return out;
}

}  // namespace wick
