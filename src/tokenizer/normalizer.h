// The "normalizer" of tokenizer.json: Unicode normalization forms (NFC, NFD, NFKC, NFKD) and
// Sequences of them, through utf8proc. Other normalizer types are rejected at load time.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace wick::tok {

class Normalizer {
 public:
  enum class Form { nfc, nfd, nfkc, nfkd };

  /// Parses tokenizer.json's "normalizer" (null = none). `where` prefixes error messages.
  static Normalizer from_json(const nlohmann::json& j, const std::string& where);

  bool empty() const { return forms_.empty(); }
  /// Normalizes valid UTF-8. Returns false (and leaves `out` alone) when the text is unchanged, the
  /// common case that costs one scan; otherwise writes the normalized text to `out`.
  bool normalize(std::string_view in, std::string& out) const;

 private:
  std::vector<Form> forms_;  // applied in order (a Sequence flattened)
};

}  // namespace wick::tok
