// The Python string method sentence-transformers applies to every text before tokenizing it when
// sentence_bert_config.json asks (do_lower_case): str.lower(). Private to src/embed/.
#pragma once

#include <string>
#include <string_view>

namespace wick {

/// Python's str.lower(): each code point's lowercase mapping, with the full mappings SpecialCasing.txt adds without a
/// language: İ (U+0130) → i + U+0307, and Σ → ς at the end of a word (after a cased letter, not before one).
/// `text` must be valid UTF-8 (bad_input naming the byte otherwise).
std::string python_lower(std::string_view text);

}  // namespace wick
