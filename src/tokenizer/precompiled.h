// The "Precompiled" normalizer: sentencepiece's precompiled_charsmap (base64 in tokenizer.json), read and applied
// as HF tokenizers does through the spm_precompiled crate. The blob is [u32 trie size in bytes][darts-clone double
// array of u32 units][pool of '\0'-terminated UTF-8 replacements]; a trie value is an offset into the pool.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace wick::tok {

class PrecompiledCharsmap {
 public:
  /// Decodes and checks the base64 blob. Error{corrupt} naming `where` for bad base64, a trie that does not fit
  /// the blob, or a replacement pool that is not UTF-8.
  static PrecompiledCharsmap from_base64(std::string_view base64, const std::string& where);

  /// Normalizes valid UTF-8: each extended grapheme cluster shorter than 6 bytes is looked up whole; otherwise
  /// (or when the cluster has no entry) each character is looked up alone and kept when it has none. Returns
  /// false (out untouched) when nothing was replaced.
  bool normalize(std::string_view in, std::string& out) const;

  /// The replacement of the shortest trie key that is a prefix of `chunk` (spm_precompiled's transform: the
  /// first result of a common-prefix search), or nullopt.
  std::optional<std::string_view> transform(std::string_view chunk) const;

 private:
  std::vector<uint32_t> units_;  // the double array
  std::string pool_;             // replacements, each ended by '\0'
};

}  // namespace wick::tok
