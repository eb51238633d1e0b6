#include "tokenizer/pattern.h"

#include <algorithm>
#include <optional>

#include "wick/error.h"

namespace wick::tok {

namespace {

// Unicode White_Space as the body of a character class.
constexpr std::string_view kWhiteSpaceClass =
    "\\t-\\r\\x{20}\\x{85}\\x{a0}\\x{1680}\\x{2000}-\\x{200a}\\x{2028}\\x{2029}\\x{202f}\\x{205f}\\x{3000}";

// Rewrites `\s` / `\S` of an Oniguruma pattern into explicit White_Space classes for PCRE2.
std::string rewrite_white_space(const std::string& p) {
  std::string out;
  out.reserve(p.size() + 64);
  int depth = 0;  // character class nesting (Oniguruma allows nested classes)
  for (size_t i = 0; i < p.size(); ++i) {
    const char c = p[i];
    if (c == '\\' && i + 1 < p.size()) {
      const char d = p[++i];
      if (d == 's') {
        if (depth > 0) out += kWhiteSpaceClass;
        else out.append("[").append(kWhiteSpaceClass).append("]");
      } else if (d == 'S' && depth == 0) {
        out.append("[^").append(kWhiteSpaceClass).append("]");
      } else {
        out += c;
        out += d;
      }
      continue;
    }
    if (c == '[') {
      if (depth > 0 && i + 1 < p.size() && p[i + 1] == ':') {  // POSIX bracket [:alpha:]
        const size_t close = p.find(":]", i + 2);
        if (close != std::string::npos) {
          out.append(p, i, close + 2 - i);
          i = close + 1;
          continue;
        }
      }
      ++depth;
      out += c;
      // A ']' right after '[' or '[^' is a literal.
      if (i + 1 < p.size() && p[i + 1] == '^') out += p[++i];
      if (i + 1 < p.size() && p[i + 1] == ']') out += p[++i];
      continue;
    }
    if (c == ']' && depth > 0) --depth;
    out += c;
  }
  return out;
}

size_t utf8_len(unsigned char lead) { return lead < 0x80 ? 1 : lead < 0xE0 ? 2 : lead < 0xF0 ? 3 : 4; }

}  // namespace

Regex oniguruma_regex(const std::string& pattern, const std::string& where) {
  std::string error;
  std::optional<Regex> re =
      Regex::compile(rewrite_white_space(pattern), {.utf = true, .what = "tokenizer regex"}, error);
  if (!re) fail(ErrorKind::corrupt, where + ": regex does not compile: " + error + " (pattern '" + pattern + "')");
  return std::move(*re);
}

void find_matches(const Regex* regex, std::string_view literal, std::string_view text, std::vector<Piece>& out) {
  out.clear();
  size_t prev = 0;
  auto emit = [&](size_t b, size_t e) {
    if (prev != b) out.push_back({prev, b, false});
    out.push_back({b, e, true});
    prev = e;
  };
  if (regex) {
    // Oniguruma's find_iter: an empty match right where the previous match ended is skipped.
    size_t pos = 0;
    bool have_last = false;
    size_t last = 0;
    while (pos <= text.size()) {
      const std::optional<RegexMatch> m = regex->find(text, pos);
      if (!m) break;
      const auto [b, e] = *m;
      if (b == e && have_last && last == e) {
        if (pos >= text.size()) break;
        pos += utf8_len(static_cast<unsigned char>(text[pos]));
        continue;
      }
      emit(b, e);
      pos = e;
      have_last = true;
      last = e;
    }
  } else if (!literal.empty()) {
    for (size_t at = text.find(literal); at != std::string_view::npos; at = text.find(literal, at + literal.size())) {
      emit(at, at + literal.size());
    }
  }
  if (prev != text.size()) out.push_back({prev, text.size(), false});
}

bool parse_behavior(std::string_view name, Behavior& out) {
  if (name == "Removed") out = Behavior::removed;
  else if (name == "Isolated") out = Behavior::isolated;
  else if (name == "MergedWithPrevious") out = Behavior::merged_with_previous;
  else if (name == "MergedWithNext") out = Behavior::merged_with_next;
  else if (name == "Contiguous") out = Behavior::contiguous;
  else return false;
  return true;
}

void apply_behavior(Behavior behavior, const std::vector<Piece>& pieces, size_t base, Ranges& out) {
  std::vector<std::pair<std::pair<size_t, size_t>, bool>> acc;  // (range, remove)
  acc.reserve(pieces.size());
  bool previous_match = false;
  switch (behavior) {
    case Behavior::isolated:
      for (const Piece& p : pieces) acc.push_back({{p.begin, p.end}, false});
      break;
    case Behavior::removed:
      for (const Piece& p : pieces) acc.push_back({{p.begin, p.end}, p.is_match});
      break;
    case Behavior::contiguous:
      for (const Piece& p : pieces) {
        if (p.is_match == previous_match && !acc.empty()) acc.back().first.second = p.end;
        else acc.push_back({{p.begin, p.end}, false});
        previous_match = p.is_match;
      }
      break;
    case Behavior::merged_with_previous:
      for (const Piece& p : pieces) {
        if (p.is_match && !previous_match && !acc.empty()) acc.back().first.second = p.end;
        else acc.push_back({{p.begin, p.end}, false});
        previous_match = p.is_match;
      }
      break;
    case Behavior::merged_with_next:
      for (auto it = pieces.rbegin(); it != pieces.rend(); ++it) {
        if (it->is_match && !previous_match && !acc.empty()) acc.back().first.first = it->begin;
        else acc.push_back({{it->begin, it->end}, false});
        previous_match = it->is_match;
      }
      std::reverse(acc.begin(), acc.end());
      break;
  }
  for (const auto& [range, remove] : acc) {
    if (!remove && range.first != range.second) out.push_back({base + range.first, base + range.second});
  }
}

bool replace_matches(const Regex* regex, std::string_view literal, std::string_view content, std::string_view text,
                     std::string& out) {
  std::vector<Piece> pieces;
  find_matches(regex, literal, text, pieces);
  if (std::none_of(pieces.begin(), pieces.end(), [](const Piece& p) { return p.is_match; })) return false;
  std::string result;
  result.reserve(text.size());
  for (const Piece& p : pieces) {
    if (p.is_match) result += content;
    else result.append(text.substr(p.begin, p.end - p.begin));
  }
  out = std::move(result);
  return true;
}

}  // namespace wick::tok
