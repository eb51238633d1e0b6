// The "model" of tokenizer.json: what turns one pre-tokenized word into ids. BPE (bpe.h), WordPiece (wordpiece.h)
// and Unigram (unigram.h) share this interface and the per-id vocab tables.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace wick::tok {

/// Hash for heterogeneous lookup of std::string keys by std::string_view.
struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
};
using StringIdMap = std::unordered_map<std::string, int32_t, StringHash, std::equal_to<>>;

/// The largest token id a tokenizer.json may use (vocab and added tokens). Ids index dense per-id tables, so an id
/// of 2^31 in a hostile file would ask for tens of GB; released vocabularies stay below 2^18 (Gemma 3: 262,144).
constexpr int64_t kMaxTokenId = (int64_t(1) << 22) - 1;

/// tokenizer.json's "model.vocab" object ({"token": id, ...}) and "model.merges" array as flat lists in file order,
/// unchecked: the loader streams them out of the file (tokenizer_json.h) so that 150k-entry lists never become a
/// JSON tree, and the model that adopts them checks them once it knows its type.
struct VocabAndMerges {
  struct Token {
    size_t begin = 0, end = 0;  // the key: text[begin, end)
    int64_t id = 0;
    bool is_integer = false;    // false: the value was not an integer (id is then 0)
  };
  struct Merge {
    enum class Form : uint8_t { line, pair, other };  // "a b", ["a", "b"], anything else
    Form form = Form::other;
    size_t begin = 0, split = 0, end = 0;  // line: text[begin, end); pair: text[begin, split) and text[split, end)
  };
  std::string text;                          // every key and merge string, back to back
  std::optional<std::vector<Token>> vocab;   // absent: "model" has no "vocab" object
  std::optional<std::vector<Merge>> merges;  // absent: "model" has no "merges" array

  std::string_view slice(size_t begin, size_t end) const { return std::string_view(text).substr(begin, end - begin); }
};

class Model {
 public:
  /// Parses tokenizer.json's "model" by its "type" (BPE when absent): the tree of its other keys and its streamed
  /// `lists`. `byte_level`: the pre-tokenizer ends with ByteLevel (the BPE model then reads raw bytes).
  /// Error{unsupported} for another type.
  static std::unique_ptr<Model> from_json(const nlohmann::json& model, const VocabAndMerges& lists, bool byte_level,
                                          const std::string& where);
  virtual ~Model();

  /// Appends the ids of one pre-tokenized word (valid UTF-8, or raw bytes for a byte-level BPE).
  virtual void encode_word(std::string_view word, std::vector<int32_t>& out) const = 0;

  /// Vocab entries as written in tokenizer.json. Ids may have holes (empty optional).
  const std::vector<std::optional<std::string>>& vocab() const { return id_to_token_; }
  const StringIdMap& token_to_id() const { return token_to_id_; }
  /// The id of a vocab token, or -1.
  int32_t vocab_id(std::string_view token) const {
    auto it = token_to_id_.find(token);
    return it == token_to_id_.end() ? -1 : it->second;
  }

 protected:
  /// Reads the {"token": id, ...} object (BPE, WordPiece) into both tables; Error{corrupt} naming `here` when it is
  /// absent, or for an id that is not an integer, out of range or given twice.
  void read_vocab_object(const VocabAndMerges& lists, const std::string& here);

  std::vector<std::optional<std::string>> id_to_token_;
  StringIdMap token_to_id_;
};

}  // namespace wick::tok
