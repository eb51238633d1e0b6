// HF tokenizers' "Pattern" and "SplitDelimiterBehavior": how a pre-tokenizer, a Replace normalizer or a Replace
// decoder finds its matches (an Oniguruma regex run by PCRE2, a literal string, or a character class) and how a
// split treats them. Shared by pretokenizer.cpp, normalizer.cpp and decoder.cpp.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/regex.h"
#include "tokenizer/unicode.h"

namespace wick::tok {

/// Byte ranges [first, second) of a working buffer: the words a piece is cut into.
using Ranges = std::vector<std::pair<size_t, size_t>>;

/// A pattern in the Oniguruma syntax that HF tokenizers uses, compiled for PCRE2 (`\s` / `\S` rewritten to
/// Unicode White_Space, Oniguruma's meaning). Error{corrupt} naming `where` when it does not compile.
Regex oniguruma_regex(const std::string& pattern, const std::string& where);

/// A stretch of text that a pattern matched (or the gap between two matches), offsets relative to the text.
struct Piece {
  size_t begin, end;
  bool is_match;
};

/// HF's Pattern::find_matches: the matches of `regex` (or of `literal` when regex is null) and the gaps between
/// them, covering all of `text`.
void find_matches(const Regex* regex, std::string_view literal, std::string_view text, std::vector<Piece>& out);

/// The same for a character predicate: every character for which `is_match` holds is a match of its own.
template <class Pred>
void find_char_matches(std::string_view text, Pred is_match, std::vector<Piece>& out);

enum class Behavior { removed, isolated, merged_with_previous, merged_with_next, contiguous };

/// Parses "Removed", "Isolated", ...; false for another name.
bool parse_behavior(std::string_view name, Behavior& out);

/// HF's NormalizedString::split: applies `behavior` to the pieces of a word that starts at `base`; appends the
/// non-empty kept ranges (absolute offsets) to `out`.
void apply_behavior(Behavior behavior, const std::vector<Piece>& pieces, size_t base, Ranges& out);

/// Replaces every match of `regex` (or of `literal`) in `text` with `content`; false (and `out` untouched) when
/// nothing matched.
bool replace_matches(const Regex* regex, std::string_view literal, std::string_view content, std::string_view text,
                     std::string& out);

// ---------------------------------------------------------------------------------------------

template <class Pred>
void find_char_matches(std::string_view text, Pred is_match, std::vector<Piece>& out) {
  out.clear();
  size_t prev = 0;
  for (size_t i = 0; i < text.size();) {
    const size_t b = i;
    if (!is_match(next_code_point(text, i))) continue;
    if (prev != b) out.push_back({prev, b, false});
    out.push_back({b, i, true});
    prev = i;
  }
  if (prev != text.size()) out.push_back({prev, text.size(), false});
}

}  // namespace wick::tok
