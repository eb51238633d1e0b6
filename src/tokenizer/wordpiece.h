// The WordPiece "model" of tokenizer.json (BERT): greedy longest-match-first over a word, continuation pieces
// written with a prefix ("##"); a word with no segmentation, or longer than max_input_chars_per_word characters,
// is the unk token alone.
#pragma once

#include <memory>
#include <string>

#include "tokenizer/model.h"

namespace wick::tok {

class WordPieceModel : public Model {
 public:
  /// Parses a {"type": "WordPiece", "unk_token", "continuing_subword_prefix", "max_input_chars_per_word",
  /// "vocab"} model: the tree of its other keys and its streamed `lists` (whose "merges" it ignores). Error{corrupt}
  /// naming `where` when unk_token is not in the vocab.
  static std::unique_ptr<WordPieceModel> from_json(const nlohmann::json& model, const VocabAndMerges& lists,
                                                   const std::string& where);

  /// Cost: O(n^2) vocab lookups for a word of n bytes in the worst case (n <= max_input_chars_per_word chars).
  void encode_word(std::string_view word, std::vector<int32_t>& out) const override;

 private:
  WordPieceModel() = default;
  std::string prefix_ = "##";
  size_t max_chars_ = 100;
  int32_t unk_id_ = -1;
};

}  // namespace wick::tok
