// The BPE "model" of tokenizer.json: vocab, merges (both the ["a", "b"] and the "a b" forms), unk /
// byte_fallback / fuse_unk / ignore_merges, continuing_subword_prefix / end_of_word_suffix, and a
// bounded, sharded word cache so that one model serves many threads.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "tokenizer/model.h"

namespace wick::tok {

class BpeModel : public Model {
 public:
  /// Parses tokenizer.json's "model": the tree of its other keys and its streamed `lists` of vocab and merges.
  /// With `byte_level` the model reads raw bytes (words from a
  /// ByteLevel pre-tokenizer) through the byte-level alphabet, which is equivalent to HF reading the
  /// "Ġ..." strings. Throws Error{corrupt} for a merge naming an unknown token, {unsupported} for
  /// a model other than BPE or dropout > 0.
  static std::unique_ptr<BpeModel> from_json(const nlohmann::json& model, const VocabAndMerges& lists, bool byte_level,
                                             const std::string& where);
  ~BpeModel() override;

  /// Appends the ids of one pre-tokenized word (through the cache).
  void encode_word(std::string_view word, std::vector<int32_t>& out) const override;
  /// The same without the cache, merging with a binary heap: O(n log n) for a word of n symbols.
  void encode_word_heap(std::string_view word, std::vector<int32_t>& out) const;
  /// The same with the quadratic loop used for short words: the slow twin of encode_word_heap.
  void encode_word_simple(std::string_view word, std::vector<int32_t>& out) const;

  struct PairMap;
  struct Cache;

 private:
  // from_json's parts: "vocab" (and the byte-level keys), then "merges" (rank = position).
  void read_vocab(const VocabAndMerges& lists, const std::string& here);
  void read_merges(const nlohmann::json& model, const VocabAndMerges& lists, const std::string& here);

  BpeModel();
  // The initial symbols of a word: one per byte (byte-level) or per character, with unk / byte_fallback.
  void initial_symbols(std::string_view word, std::vector<int32_t>& symbols) const;
  int32_t lookup_unit(std::string_view unit) const;  // -1 when not in vocab
  void encode_uncached(std::string_view word, std::vector<int32_t>& out) const;
  void merge_simple(std::vector<int32_t>& symbols) const;
  void merge_heap(std::vector<int32_t>& symbols) const;

  StringIdMap key_to_id_;            // keys of the words the model reads: raw bytes when byte_level
  std::array<int32_t, 256> byte_id_{};  // byte_level: id of each byte's alphabet character, or -1
  std::unique_ptr<PairMap> merges_;
  std::unique_ptr<Cache> cache_;
  bool byte_level_ = false;
  bool ignore_merges_ = false;
  bool byte_fallback_ = false;
  bool fuse_unk_ = false;
  int32_t unk_id_ = -1;
  std::string prefix_;  // continuing_subword_prefix
  std::string suffix_;  // end_of_word_suffix
};

}  // namespace wick::tok
