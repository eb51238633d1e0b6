#include "tokenizer/pretokenizer.h"

#include <optional>

#include <nlohmann/json.hpp>

#include "tokenizer/pattern.h"
#include "tokenizer/unicode.h"
#include "wick/error.h"

namespace wick::tok {

namespace {

const Regex& gpt2_regex() {
  static const Regex re = oniguruma_regex(
      R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)", "ByteLevel pre_tokenizer");
  return re;
}

// The Whitespace pre-tokenizer's regex `\w+|[^\w\s]+` (Rust regex, Unicode), kept matches only: maximal runs of
// word characters and maximal runs of characters that are neither word nor white space.
void whitespace_words(std::string_view text, size_t base, Ranges& out) {
  enum Class { space, word, other };
  size_t run = 0;
  Class run_class = space;
  for (size_t i = 0; i < text.size();) {
    const size_t b = i;
    const uint32_t cp = next_code_point(text, i);
    const Class c = is_word_char(cp) ? word : is_white_space(cp) ? space : other;
    if (c == run_class) continue;
    if (run_class != space) out.push_back({base + run, base + b});
    run = b;
    run_class = c;
  }
  if (run_class != space) out.push_back({base + run, base + text.size()});
}

}  // namespace

struct PreTokenizer::Step {
  enum class Kind { split, byte_level, bert, whitespace, whitespace_split, punctuation, metaspace } kind = Kind::split;
  std::optional<Regex> regex;    // split: a regex pattern, or
  std::string literal;           // split: a literal pattern
  Behavior behavior = Behavior::isolated;  // split, punctuation
  bool invert = false;
  bool add_prefix_space = false;  // byte_level
  bool use_regex = true;          // byte_level
  std::string replacement;        // metaspace: one character, usually "▁"
  enum class Prepend { always, first, never } prepend = Prepend::always;  // metaspace
  bool split_words = true;        // metaspace
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

Behavior get_behavior(const nlohmann::json& j, const std::string& where) {
  const std::string name = j.contains("behavior") && j["behavior"].is_string() ? j["behavior"].get<std::string>()
                                                                                 : std::string("Isolated");
  Behavior b;
  if (!parse_behavior(name, b)) fail(ErrorKind::unsupported, where + ": unsupported behavior '" + name + "'");
  return b;
}

void parse_metaspace(const nlohmann::json& j, const std::string& here, PreTokenizer::Step& step) {
  step.kind = PreTokenizer::Step::Kind::metaspace;
  if (!j.contains("replacement") || !j["replacement"].is_string()) {
    fail(ErrorKind::corrupt, here + ": \"replacement\" must be a one-character string");
  }
  step.replacement = j["replacement"].get<std::string>();
  size_t i = 0;
  if (step.replacement.empty() || find_invalid_utf8(step.replacement) != std::string::npos ||
      (next_code_point(step.replacement, i), i != step.replacement.size())) {
    fail(ErrorKind::corrupt, here + ": \"replacement\" must be a one-character string");
  }
  const std::string scheme = j.contains("prepend_scheme") && j["prepend_scheme"].is_string()
                                 ? j["prepend_scheme"].get<std::string>() : std::string("always");
  using P = PreTokenizer::Step::Prepend;
  if (scheme == "always") step.prepend = P::always;
  else if (scheme == "first") step.prepend = P::first;
  else if (scheme == "never") step.prepend = P::never;
  else fail(ErrorKind::corrupt, here + ": \"prepend_scheme\" must be \"always\", \"first\" or \"never\"");
  // The legacy field: add_prefix_space false means "never" (HF rejects it beside another scheme).
  if (j.contains("add_prefix_space") && j["add_prefix_space"].is_boolean() && !j["add_prefix_space"].get<bool>()) {
    if (j.contains("prepend_scheme") && step.prepend != P::never) {
      fail(ErrorKind::corrupt, here + ": add_prefix_space does not match declared prepend_scheme");
    }
    step.prepend = P::never;
  }
  step.split_words = get_bool(j, "split", true, here);
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
  const std::string here = where + ": pre_tokenizer " + type;
  using Kind = PreTokenizer::Step::Kind;
  PreTokenizer::Step step;
  if (type == "Split") {
    if (!j.contains("pattern") || !j["pattern"].is_object()) fail(ErrorKind::corrupt, here + ": missing \"pattern\"");
    const auto& pattern = j["pattern"];
    if (pattern.contains("Regex") && pattern["Regex"].is_string()) {
      step.regex = oniguruma_regex(pattern["Regex"].get<std::string>(), here);
    } else if (pattern.contains("String") && pattern["String"].is_string()) {
      step.literal = pattern["String"].get<std::string>();
    } else {
      fail(ErrorKind::corrupt, here + ": \"pattern\" must be {\"Regex\": ...} or {\"String\": ...}");
    }
    step.behavior = get_behavior(j, here);
    step.invert = get_bool(j, "invert", false, here);
  } else if (type == "ByteLevel") {
    step.kind = Kind::byte_level;
    step.add_prefix_space = get_bool(j, "add_prefix_space", true, here);
    step.use_regex = get_bool(j, "use_regex", true, here);
  } else if (type == "BertPreTokenizer") {
    step.kind = Kind::bert;
  } else if (type == "Whitespace") {
    step.kind = Kind::whitespace;
  } else if (type == "WhitespaceSplit") {
    step.kind = Kind::whitespace_split;
  } else if (type == "Punctuation") {
    step.kind = Kind::punctuation;
    step.behavior = get_behavior(j, here);
  } else if (type == "Metaspace") {
    parse_metaspace(j, here, step);
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

void PreTokenizer::split(std::string& buffer, Ranges& words, bool at_text_start) const {
  words.clear();
  if (!buffer.empty()) words.push_back({0, buffer.size()});
  Ranges next;
  std::vector<Piece> pieces;
  std::string rewritten;
  for (const Step& step : steps_) {
    next.clear();
    for (auto [b, e] : words) {
      const std::string_view word = std::string_view(buffer).substr(b, e - b);
      switch (step.kind) {
        case Step::Kind::byte_level:
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
            break;
          }
          find_matches(&gpt2_regex(), {}, std::string_view(buffer).substr(b, e - b), pieces);
          apply_behavior(Behavior::isolated, pieces, b, next);
          break;
        case Step::Kind::split:
          find_matches(step.regex ? &*step.regex : nullptr, step.literal, word, pieces);
          if (step.invert) {
            for (Piece& p : pieces) p.is_match = !p.is_match;
          }
          apply_behavior(step.behavior, pieces, b, next);
          break;
        case Step::Kind::bert: {
          // Split on white space (removed), then isolate each punctuation character.
          Ranges parts;
          find_char_matches(word, is_white_space, pieces);
          apply_behavior(Behavior::removed, pieces, b, parts);
          for (const auto& [pb, pe] : parts) {
            find_char_matches(std::string_view(buffer).substr(pb, pe - pb), is_punctuation, pieces);
            apply_behavior(Behavior::isolated, pieces, pb, next);
          }
          break;
        }
        case Step::Kind::whitespace:
          whitespace_words(word, b, next);
          break;
        case Step::Kind::whitespace_split:
          find_char_matches(word, is_white_space, pieces);
          apply_behavior(Behavior::removed, pieces, b, next);
          break;
        case Step::Kind::punctuation:
          find_char_matches(word, is_punctuation, pieces);
          apply_behavior(step.behavior, pieces, b, next);
          break;
        case Step::Kind::metaspace: {
          // Spaces become the replacement; a prefix is added (HF: to every word, or to the one at the start of
          // the text); the copy goes to the end of the buffer and is split before each replacement.
          rewritten.clear();
          const bool prepend = step.prepend == Step::Prepend::always ||
                               (step.prepend == Step::Prepend::first && at_text_start && b == 0);
          if (prepend && word.substr(0, step.replacement.size()) != step.replacement &&
              word.substr(0, 1) != " ") {
            rewritten = step.replacement;
          }
          for (char c : word) {
            if (c == ' ') rewritten += step.replacement;
            else rewritten += c;
          }
          const size_t nb = buffer.size();
          buffer += rewritten;
          if (!step.split_words) {
            next.push_back({nb, buffer.size()});
            break;
          }
          find_matches(nullptr, step.replacement, rewritten, pieces);
          apply_behavior(Behavior::merged_with_next, pieces, nb, next);
          break;
        }
      }
    }
    words.swap(next);
  }
}

}  // namespace wick::tok
