#include "tokenizer/normalizer.h"

#include <cstdlib>
#include <memory>
#include <optional>

#include <nlohmann/json.hpp>
#include <utf8proc.h>

#include "tokenizer/pattern.h"
#include "tokenizer/precompiled.h"
#include "tokenizer/unicode.h"
#include "wick/error.h"

namespace wick::tok {

struct Normalizer::Step {
  enum class Kind { nfc, nfd, nfkc, nfkd, bert, lowercase, strip_accents, strip, replace, prepend, precompiled };
  Kind kind = Kind::nfc;
  // bert
  bool clean_text = true, handle_chinese_chars = true, strip_accents = true, lowercase = true;
  // strip
  bool strip_left = true, strip_right = true;
  // replace (regex or literal) / prepend
  std::optional<Regex> regex;
  std::string literal, content;
  std::shared_ptr<const PrecompiledCharsmap> charsmap;
};

Normalizer::Normalizer() = default;
Normalizer::~Normalizer() = default;
Normalizer::Normalizer(Normalizer&&) noexcept = default;
Normalizer& Normalizer::operator=(Normalizer&&) noexcept = default;

namespace {

using Step = Normalizer::Step;

bool get_bool(const nlohmann::json& j, const char* key, bool fallback, const std::string& where) {
  if (!j.contains(key) || j[key].is_null()) return fallback;
  if (!j[key].is_boolean()) fail(ErrorKind::corrupt, where + ": \"" + key + "\" must be a boolean");
  return j[key].get<bool>();
}

std::string get_string(const nlohmann::json& j, const char* key, const std::string& where) {
  if (!j.contains(key) || !j[key].is_string()) fail(ErrorKind::corrupt, where + ": \"" + key + "\" must be a string");
  return j[key].get<std::string>();
}

void parse_into(const nlohmann::json& j, const std::string& where, std::vector<Step>& steps) {
  if (!j.is_object() || !j.contains("type") || !j["type"].is_string()) {
    fail(ErrorKind::corrupt, where + ": normalizer without a \"type\"");
  }
  const std::string type = j["type"];
  const std::string here = where + ": normalizer " + type;
  Step step;
  if (type == "NFC") step.kind = Step::Kind::nfc;
  else if (type == "NFD") step.kind = Step::Kind::nfd;
  else if (type == "NFKC") step.kind = Step::Kind::nfkc;
  else if (type == "NFKD") step.kind = Step::Kind::nfkd;
  else if (type == "Lowercase") step.kind = Step::Kind::lowercase;
  else if (type == "StripAccents") step.kind = Step::Kind::strip_accents;
  else if (type == "BertNormalizer") {
    step.kind = Step::Kind::bert;
    step.clean_text = get_bool(j, "clean_text", true, here);
    step.handle_chinese_chars = get_bool(j, "handle_chinese_chars", true, here);
    step.lowercase = get_bool(j, "lowercase", true, here);
    step.strip_accents = get_bool(j, "strip_accents", step.lowercase, here);  // null: follow lowercase
  } else if (type == "Strip") {
    step.kind = Step::Kind::strip;
    step.strip_left = get_bool(j, "strip_left", true, here);
    step.strip_right = get_bool(j, "strip_right", true, here);
  } else if (type == "Replace") {
    step.kind = Step::Kind::replace;
    if (!j.contains("pattern") || !j["pattern"].is_object()) fail(ErrorKind::corrupt, here + ": missing \"pattern\"");
    const auto& pattern = j["pattern"];
    if (pattern.contains("Regex") && pattern["Regex"].is_string()) {
      step.regex = oniguruma_regex(pattern["Regex"].get<std::string>(), here);
    } else if (pattern.contains("String") && pattern["String"].is_string()) {
      step.literal = pattern["String"].get<std::string>();
      // HF escapes the string into a regex: an empty one matches between every two characters.
      if (step.literal.empty()) step.regex = oniguruma_regex("", here);
    } else {
      fail(ErrorKind::corrupt, here + ": \"pattern\" must be {\"Regex\": ...} or {\"String\": ...}");
    }
    step.content = get_string(j, "content", here);
  } else if (type == "Prepend") {
    step.kind = Step::Kind::prepend;
    step.content = get_string(j, "prepend", here);
  } else if (type == "Precompiled") {
    step.kind = Step::Kind::precompiled;
    if (!j.contains("precompiled_charsmap") || !j["precompiled_charsmap"].is_string()) {
      fail(ErrorKind::corrupt, here + ": \"precompiled_charsmap\" must be a base64 string");
    }
    step.charsmap = std::make_shared<const PrecompiledCharsmap>(
        PrecompiledCharsmap::from_base64(j["precompiled_charsmap"].get<std::string>(), where));
  } else if (type == "Sequence") {
    if (!j.contains("normalizers") || !j["normalizers"].is_array()) {
      fail(ErrorKind::corrupt, where + ": normalizer Sequence without a \"normalizers\" array");
    }
    for (const auto& n : j["normalizers"]) parse_into(n, where, steps);
    return;
  } else {
    fail(ErrorKind::unsupported, where + ": unsupported normalizer type '" + type + "'");
  }
  steps.push_back(std::move(step));
}

bool is_ascii(std::string_view s) {
  for (unsigned char c : s) {
    if (c >= 0x80) return false;
  }
  return true;
}

// Text whose code points are all below U+0300 is already in NFC: none of them has NFC_Quick_Check
// No/Maybe. For the other forms only ASCII is safe (Latin-1 has decompositions, NBSP a compatibility one).
bool unchanged_by_form(Step::Kind form, std::string_view s) {
  if (form != Step::Kind::nfc) return is_ascii(s);
  for (unsigned char c : s) {
    if (c >= 0xCC) return false;
  }
  return true;
}

utf8proc_option_t options_of(Step::Kind form) {
  switch (form) {
    case Step::Kind::nfc: return utf8proc_option_t(UTF8PROC_STABLE | UTF8PROC_COMPOSE);
    case Step::Kind::nfd: return utf8proc_option_t(UTF8PROC_STABLE | UTF8PROC_DECOMPOSE);
    case Step::Kind::nfkc: return utf8proc_option_t(UTF8PROC_STABLE | UTF8PROC_COMPOSE | UTF8PROC_COMPAT);
    case Step::Kind::nfkd: return utf8proc_option_t(UTF8PROC_STABLE | UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT);
    default: return utf8proc_option_t(0);
  }
}

bool unicode_form(Step::Kind form, std::string_view src, std::string& out) {
  if (unchanged_by_form(form, src)) return false;
  utf8proc_uint8_t* dst = nullptr;
  const utf8proc_ssize_t n = utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(src.data()),
                                          utf8proc_ssize_t(src.size()), &dst, options_of(form));
  if (n < 0) fail(ErrorKind::internal, std::string("tokenizer normalizer: ") + utf8proc_errmsg(n));
  std::unique_ptr<utf8proc_uint8_t, decltype(&std::free)> owned(dst, &std::free);
  std::string_view result(reinterpret_cast<const char*>(dst), size_t(n));
  if (result == src) return false;
  out.assign(result);
  return true;
}

// Maps every character through `f(cp, out)`; false when the result equals the input.
template <class F>
bool map_chars(std::string_view src, std::string& out, F f) {
  std::string result;
  result.reserve(src.size() + src.size() / 4);
  for (size_t i = 0; i < src.size();) {
    f(next_code_point(src, i), result);
  }
  if (result == src) return false;
  out = std::move(result);
  return true;
}

bool lowercase(std::string_view src, std::string& out) {
  return map_chars(src, out, [](uint32_t cp, std::string& r) { append_lowercase(r, cp); });
}

// BertNormalizer: clean_text, handle_chinese_chars, strip_accents (NFD, then no Mn), lowercase, in HF's order.
bool bert(const Step& s, std::string_view src, std::string& out) {
  std::string cur(src), tmp;
  if (s.clean_text || s.handle_chinese_chars) {
    map_chars(cur, cur, [&](uint32_t cp, std::string& r) {
      if (s.clean_text) {
        if (cp == 0 || cp == 0xFFFD || (cp != '\t' && cp != '\n' && cp != '\r' && is_other(cp))) return;
        if (is_white_space(cp)) cp = ' ';
      }
      if (s.handle_chinese_chars && is_chinese_char(cp)) {
        r += ' ';
        append_utf8(r, cp);
        r += ' ';
      } else {
        append_utf8(r, cp);
      }
    });
  }
  if (s.strip_accents) {
    if (unicode_form(Step::Kind::nfd, cur, tmp)) cur.swap(tmp);
    map_chars(cur, cur, [](uint32_t cp, std::string& r) {
      if (!is_nonspacing_mark(cp)) append_utf8(r, cp);
    });
  }
  if (s.lowercase && lowercase(cur, tmp)) cur.swap(tmp);
  if (cur == src) return false;
  out = std::move(cur);
  return true;
}

bool strip(const Step& s, std::string_view src, std::string& out) {
  size_t b = 0, e = src.size();
  if (s.strip_left) {
    while (b < e) {
      size_t i = b;
      if (!is_white_space(next_code_point(src, i))) break;
      b = i;
    }
  }
  if (s.strip_right) {
    while (e > b) {
      size_t start = e - 1;
      while (start > b && (uint8_t(src[start]) & 0xC0) == 0x80) --start;
      size_t i = start;
      if (!is_white_space(next_code_point(src, i))) break;
      e = start;
    }
  }
  if (b == 0 && e == src.size()) return false;
  out.assign(src.substr(b, e - b));
  return true;
}

bool apply(const Step& s, std::string_view src, std::string& out) {
  switch (s.kind) {
    case Step::Kind::nfc: case Step::Kind::nfd: case Step::Kind::nfkc: case Step::Kind::nfkd:
      return unicode_form(s.kind, src, out);
    case Step::Kind::bert:
      return bert(s, src, out);
    case Step::Kind::lowercase:
      return lowercase(src, out);
    case Step::Kind::strip_accents:
      if (is_ascii(src)) return false;
      return map_chars(src, out, [](uint32_t cp, std::string& r) {
        if (!is_mark(cp)) append_utf8(r, cp);
      });
    case Step::Kind::strip:
      return strip(s, src, out);
    case Step::Kind::replace:
      return replace_matches(s.regex ? &*s.regex : nullptr, s.literal, s.content, src, out);
    case Step::Kind::prepend:
      if (src.empty()) return false;  // HF prepends to non-empty text only
      out = s.content;
      out += src;
      return true;
    case Step::Kind::precompiled:
      return s.charsmap->normalize(src, out);
  }
  return false;
}

}  // namespace

Normalizer Normalizer::from_json(const nlohmann::json& j, const std::string& where) {
  Normalizer n;
  if (!j.is_null()) parse_into(j, where, n.steps_);
  return n;
}

bool Normalizer::normalize(std::string_view in, std::string& out) const {
  bool changed = false;
  std::string current, next;
  for (const Step& step : steps_) {
    const std::string_view src = changed ? std::string_view(current) : in;
    if (!apply(step, src, next)) continue;
    current.swap(next);
    changed = true;
  }
  if (changed) out = std::move(current);
  return changed;
}

}  // namespace wick::tok
