// The "normalizer" of tokenizer.json, as HF tokenizers applies it to each piece of text between added tokens:
// Unicode forms (NFC, NFD, NFKC, NFKD, through utf8proc), BertNormalizer, Lowercase, StripAccents, Strip,
// Replace (a string or an Oniguruma regex), Prepend, Precompiled (sentencepiece's charsmap) and Sequences of
// them. Other normalizer types are rejected at load time.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace wick::tok {

class Normalizer {
 public:
  /// Parses tokenizer.json's "normalizer" (null = none). `where` prefixes error messages.
  static Normalizer from_json(const nlohmann::json& j, const std::string& where);
  Normalizer();
  ~Normalizer();
  Normalizer(Normalizer&&) noexcept;
  Normalizer& operator=(Normalizer&&) noexcept;

  bool empty() const { return steps_.empty(); }
  /// Normalizes valid UTF-8. Returns false (and leaves `out` alone) when the text is unchanged, the
  /// common case that costs one scan; otherwise writes the normalized text to `out`.
  bool normalize(std::string_view in, std::string& out) const;

  struct Step;

 private:
  std::vector<Step> steps_;  // applied in order (a Sequence flattened)
};

}  // namespace wick::tok
