#include "tokenizer/pretokenizer.h"

#include <algorithm>
#include <optional>

#include <nlohmann/json.hpp>

#include "core/regex.h"
#include "wick/error.h"

namespace wick::tok {

// ---------------------------------------------------------------------------------------------
// Regex

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

// A pattern in the Oniguruma syntax that HF tokenizers uses, compiled for PCRE2. `\s` and `\S` are rewritten to
// Unicode White_Space, Oniguruma's meaning (PCRE2's own `\s` differs on U+180E). Corrupt naming `where` when it
// does not compile.
Regex oniguruma_regex(const std::string& pattern, const std::string& where) {
  std::string error;
  std::optional<Regex> re =
      Regex::compile(rewrite_white_space(pattern), {.utf = true, .what = "tokenizer pre_tokenizer regex"}, error);
  if (!re) fail(ErrorKind::corrupt, where + ": regex does not compile: " + error + " (pattern '" + pattern + "')");
  return std::move(*re);
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Steps

namespace {

enum class Behavior { removed, isolated, merged_with_previous, merged_with_next, contiguous };

struct Piece {
  size_t begin, end;
  bool is_match;
};

const Regex& gpt2_regex() {
  static const Regex re = oniguruma_regex(
      R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)", "ByteLevel pre_tokenizer");
  return re;
}

size_t utf8_len(unsigned char lead) { return lead < 0x80 ? 1 : lead < 0xE0 ? 2 : lead < 0xF0 ? 3 : 4; }

// HF's Pattern::find_matches: matches and the gaps between them, covering `text` (offsets relative).
void find_matches(const Regex* regex, const std::string& literal, std::string_view text, std::vector<Piece>& out) {
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

// HF's NormalizedString::split: applies the behaviour; appends non-empty kept ranges (absolute).
void apply_behavior(Behavior behavior, std::vector<Piece>& pieces, size_t base, Ranges& out) {
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

}  // namespace

struct PreTokenizer::Step {
  enum class Kind { split, byte_level } kind = Kind::split;
  std::optional<Regex> regex;    // split: a regex pattern, or
  std::string literal;           // split: a literal pattern
  Behavior behavior = Behavior::isolated;
  bool invert = false;
  bool add_prefix_space = false;  // byte_level
  bool use_regex = true;          // byte_level
};

PreTokenizer::PreTokenizer() = default;
PreTokenizer::~PreTokenizer() = default;
PreTokenizer::PreTokenizer(PreTokenizer&&) noexcept = default;
PreTokenizer& PreTokenizer::operator=(PreTokenizer&&) noexcept = default;

namespace {

bool get_bool(const nlohmann::json& j, const char* key, bool fallback, const std::string& where) {
  if (!j.contains(key) || j[key].is_null()) return fallback;
  if (!j[key].is_boolean()) fail(ErrorKind::corrupt, where + ": \"" + key + "\" must be a boolean");
  return j[key].get<bool>();
}

void parse_into(const nlohmann::json& j, const std::string& where, std::vector<PreTokenizer::Step>& steps) {
  if (!j.is_object() || !j.contains("type") || !j["type"].is_string()) {
    fail(ErrorKind::corrupt, where + ": pre_tokenizer without a \"type\"");
  }
  const std::string type = j["type"];
  if (type == "Sequence") {
    if (!j.contains("pretokenizers") || !j["pretokenizers"].is_array()) {
      fail(ErrorKind::corrupt, where + ": pre_tokenizer Sequence without a \"pretokenizers\" array");
    }
    for (const auto& p : j["pretokenizers"]) parse_into(p, where, steps);
    return;
  }
  PreTokenizer::Step step;
  if (type == "Split") {
    const std::string here = where + ": pre_tokenizer Split";
    if (!j.contains("pattern") || !j["pattern"].is_object()) fail(ErrorKind::corrupt, here + ": missing \"pattern\"");
    const auto& pattern = j["pattern"];
    if (pattern.contains("Regex") && pattern["Regex"].is_string()) {
      step.regex = oniguruma_regex(pattern["Regex"].get<std::string>(), here);
    } else if (pattern.contains("String") && pattern["String"].is_string()) {
      step.literal = pattern["String"].get<std::string>();
    } else {
      fail(ErrorKind::corrupt, here + ": \"pattern\" must be {\"Regex\": ...} or {\"String\": ...}");
    }
    const std::string behavior = j.value("behavior", std::string("Isolated"));
    if (behavior == "Removed") step.behavior = Behavior::removed;
    else if (behavior == "Isolated") step.behavior = Behavior::isolated;
    else if (behavior == "MergedWithPrevious") step.behavior = Behavior::merged_with_previous;
    else if (behavior == "MergedWithNext") step.behavior = Behavior::merged_with_next;
    else if (behavior == "Contiguous") step.behavior = Behavior::contiguous;
    else fail(ErrorKind::unsupported, here + ": unsupported behavior '" + behavior + "'");
    step.invert = get_bool(j, "invert", false, here);
  } else if (type == "ByteLevel") {
    const std::string here = where + ": pre_tokenizer ByteLevel";
    step.kind = PreTokenizer::Step::Kind::byte_level;
    step.add_prefix_space = get_bool(j, "add_prefix_space", true, here);
    step.use_regex = get_bool(j, "use_regex", true, here);
  } else {
    fail(ErrorKind::unsupported, where + ": unsupported pre_tokenizer type '" + type + "'");
  }
  steps.push_back(std::move(step));
}

}  // namespace

PreTokenizer PreTokenizer::from_json(const nlohmann::json& j, const std::string& where) {
  PreTokenizer p;
  if (j.is_null()) return p;
  parse_into(j, where, p.steps_);
  for (size_t i = 0; i < p.steps_.size(); ++i) {
    if (p.steps_[i].kind != Step::Kind::byte_level) continue;
    if (i + 1 != p.steps_.size()) {
      fail(ErrorKind::unsupported, where + ": pre_tokenizer steps after ByteLevel are not supported");
    }
    p.byte_level_ = true;
  }
  return p;
}

void PreTokenizer::split(std::string& buffer, Ranges& words) const {
  words.clear();
  if (!buffer.empty()) words.push_back({0, buffer.size()});
  Ranges next;
  std::vector<Piece> pieces;
  for (const Step& step : steps_) {
    next.clear();
    for (auto [b, e] : words) {
      if (step.kind == Step::Kind::byte_level) {
        if (step.add_prefix_space && buffer[b] != ' ') {
          // The prefixed copy goes to the end of the buffer; earlier ranges stay valid as offsets.
          const size_t nb = buffer.size();
          buffer += ' ';
          buffer.append(buffer, b, e - b);
          b = nb;
          e = buffer.size();
        }
        if (!step.use_regex) {
          next.push_back({b, e});
          continue;
        }
        find_matches(&gpt2_regex(), {}, std::string_view(buffer).substr(b, e - b), pieces);
        apply_behavior(Behavior::isolated, pieces, b, next);
        continue;
      }
      const Regex* regex = step.regex ? &*step.regex : nullptr;
      find_matches(regex, step.literal, std::string_view(buffer).substr(b, e - b), pieces);
      if (step.invert) {
        for (Piece& p : pieces) p.is_match = !p.is_match;
      }
      apply_behavior(step.behavior, pieces, b, next);
    }
    words.swap(next);
  }
}

}  // namespace wick::tok
