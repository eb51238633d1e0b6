#include "tokenizer/precompiled.h"

#include <cstring>

#include "tokenizer/unicode.h"
#include "wick/error.h"

namespace wick::tok {

namespace {

// Standard base64 with canonical padding (Rust base64's STANDARD engine): nullopt for anything else.
std::optional<std::string> decode_base64(std::string_view s) {
  auto value = [](char c) -> int {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
  };
  if (s.size() % 4 != 0) return std::nullopt;
  std::string out;
  out.reserve(s.size() / 4 * 3);
  for (size_t i = 0; i < s.size(); i += 4) {
    const bool last = i + 4 == s.size();
    const size_t pad = last ? (s[i + 3] == '=') + (s[i + 2] == '=' && s[i + 3] == '=') : 0;
    uint32_t bits = 0;
    for (size_t k = 0; k < 4; ++k) {
      const int v = k < 4 - pad ? value(s[i + k]) : 0;
      if (v < 0) return std::nullopt;
      bits = (bits << 6) | uint32_t(v);
    }
    out += char(bits >> 16);
    if (pad < 2) out += char((bits >> 8) & 0xFF);
    if (pad < 1) out += char(bits & 0xFF);
    if ((pad == 1 && (bits & 0xFF)) || (pad == 2 && (bits & 0xFFFF))) return std::nullopt;  // non-zero trailing bits
  }
  return out;
}

// darts-clone unit fields (spm_precompiled's ArrayUnit).
bool has_leaf(uint32_t u) { return (u >> 8) & 1; }
uint32_t value_of(uint32_t u) { return u & ((1u << 31) - 1); }
uint32_t label_of(uint32_t u) { return u & ((1u << 31) | 0xFF); }
size_t offset_of(uint32_t u) { return size_t(u >> 10) << ((u & (1u << 9)) >> 6); }

}  // namespace

PrecompiledCharsmap PrecompiledCharsmap::from_base64(std::string_view base64, const std::string& where) {
  const std::string here = where + ": normalizer Precompiled: \"precompiled_charsmap\"";
  const std::optional<std::string> blob = decode_base64(base64);
  if (!blob) fail(ErrorKind::corrupt, here + " is not valid base64");
  if (blob->size() < 4) fail(ErrorKind::corrupt, here + " is " + std::to_string(blob->size()) + " bytes, too short for its header");
  uint32_t trie_bytes;
  std::memcpy(&trie_bytes, blob->data(), 4);  // little-endian, as every machine wick runs on
  const size_t units = trie_bytes / 4;
  if (units == 0 || 4 + units * 4 > blob->size()) {
    fail(ErrorKind::corrupt, here + ": its trie of " + std::to_string(trie_bytes) + " bytes does not fit the " +
                                 std::to_string(blob->size()) + "-byte blob");
  }
  PrecompiledCharsmap map;
  map.units_.resize(units);
  std::memcpy(map.units_.data(), blob->data() + 4, units * 4);
  map.pool_.assign(*blob, 4 + units * 4);
  if (const size_t bad = find_invalid_utf8(map.pool_); bad != std::string_view::npos) {
    fail(ErrorKind::corrupt, here + ": the replacement strings are not UTF-8 (byte " + std::to_string(bad) + ")");
  }
  return map;
}

std::optional<std::string_view> PrecompiledCharsmap::transform(std::string_view chunk) const {
  // A malformed trie sends node positions out of the array: that ends the search (spm_precompiled would panic).
  size_t pos = offset_of(units_[0]);
  for (unsigned char c : chunk) {
    if (c == 0) break;
    pos ^= c;
    if (pos >= units_.size()) return std::nullopt;
    const uint32_t unit = units_[pos];
    if (label_of(unit) != c) return std::nullopt;
    pos ^= offset_of(unit);
    if (pos >= units_.size()) return std::nullopt;
    if (!has_leaf(unit)) continue;
    const size_t begin = value_of(units_[pos]);
    if (begin > pool_.size() || (begin < pool_.size() && (uint8_t(pool_[begin]) & 0xC0) == 0x80)) return std::nullopt;
    size_t end = pool_.find('\0', begin);
    if (end == std::string::npos) end = pool_.size();
    return std::string_view(pool_).substr(begin, end - begin);
  }
  return std::nullopt;
}

bool PrecompiledCharsmap::normalize(std::string_view in, std::string& out) const {
  std::string result;
  bool modified = false;
  for (size_t g = 0; g < in.size();) {
    const size_t g_end = grapheme_end(in, g);
    const std::string_view grapheme = in.substr(g, g_end - g);
    g = g_end;
    if (grapheme.size() < 6) {
      if (const auto norm = transform(grapheme)) {
        result += *norm;
        modified = true;
        continue;
      }
    }
    for (size_t i = 0; i < grapheme.size();) {
      const size_t b = i;
      next_code_point(grapheme, i);
      const std::string_view ch = grapheme.substr(b, i - b);
      if (const auto norm = transform(ch)) {
        result += *norm;
        modified = true;
      } else {
        result += ch;
      }
    }
  }
  if (modified) out = std::move(result);
  return modified;
}

}  // namespace wick::tok
