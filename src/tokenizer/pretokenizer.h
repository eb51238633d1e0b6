// The "pre_tokenizer" of tokenizer.json: Split (an Oniguruma regex run by PCRE2 in Unicode mode, or a literal
// string; every split behaviour; invert), ByteLevel (add_prefix_space, use_regex), BertPreTokenizer, Whitespace,
// WhitespaceSplit, Punctuation, Metaspace and Sequence. It cuts one normalized piece of text into words for the model.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "tokenizer/pattern.h"

namespace wick::tok {

class PreTokenizer {
 public:
  /// Parses tokenizer.json's "pre_tokenizer" (null = the whole piece is one word).
  static PreTokenizer from_json(const nlohmann::json& j, const std::string& where);
  PreTokenizer();
  ~PreTokenizer();
  PreTokenizer(PreTokenizer&&) noexcept;
  PreTokenizer& operator=(PreTokenizer&&) noexcept;

  /// True when the last step is ByteLevel: the words are then raw bytes that the model reads through
  /// the byte-level alphabet (wick never builds the "Ġ" strings). A step after ByteLevel is unsupported.
  bool byte_level() const { return byte_level_; }

  /// Cuts `buffer` (one normalized piece) into words, written to `words` as ranges of `buffer`.
  /// May append to `buffer` (ByteLevel's prefix space, Metaspace's rewritten words), so read the ranges after
  /// the call. `at_text_start`: the piece begins the text (Metaspace's prepend_scheme "first").
  void split(std::string& buffer, Ranges& words, bool at_text_start = true) const;

  struct Step;

 private:
  std::vector<Step> steps_;
  bool byte_level_ = false;
};

}  // namespace wick::tok
