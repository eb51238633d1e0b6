// The Unigram "model" of tokenizer.json (sentencepiece): the segmentation of a word with the highest total score
// (Viterbi over every vocab piece that starts at each character), as HF tokenizers computes it. A character no
// piece covers is unk, scored min score - 10; runs of unk are fused into one token, which is looked up again and
// spelt as <0xXX> bytes when byte_fallback is on.
#pragma once

#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "tokenizer/model.h"

namespace wick::tok {

class UnigramModel : public Model {
 public:
  /// Parses a {"type": "Unigram", "unk_id", "vocab": [[piece, score], ...], "byte_fallback"} model.
  /// Error{corrupt} naming `where` for a malformed entry or an unk_id outside the vocab.
  static std::unique_ptr<UnigramModel> from_json(const nlohmann::json& model, const std::string& where);

  /// Cost: O(n * k) for a word of n bytes, k = the longest vocab piece in bytes.
  void encode_word(std::string_view word, std::vector<int32_t>& out) const override;

 private:
  UnigramModel() = default;
  // A byte trie of the pieces: node 0 is the root; an edge is (node << 8 | byte) -> child.
  int32_t child(int32_t node, unsigned char byte) const {
    auto it = edges_.find((uint64_t(node) << 8) | byte);
    return it == edges_.end() ? -1 : it->second;
  }

  std::vector<double> scores_;          // per id
  std::vector<int32_t> node_id_;        // per trie node: the id of the piece ending there, or -1
  std::unordered_map<uint64_t, int32_t> edges_;
  double unk_score_ = 0;
  int32_t unk_id_ = -1;                 // -1: none (an uncovered character is then an error)
  bool byte_fallback_ = false;
  std::vector<int32_t> byte_ids_;       // byte_fallback: the id of <0xXX> per byte, or -1
};

}  // namespace wick::tok
