#include "tokenizer/model.h"

#include <nlohmann/json.hpp>

#include "tokenizer/bpe.h"
#include "tokenizer/unigram.h"
#include "tokenizer/wordpiece.h"
#include "wick/error.h"

namespace wick::tok {

Model::~Model() = default;

std::unique_ptr<Model> Model::from_json(const nlohmann::json& m, const VocabAndMerges& lists, bool byte_level,
                                       const std::string& where) {
  if (m.is_null()) fail(ErrorKind::corrupt, where + ": missing \"model\"");
  if (!m.is_object()) fail(ErrorKind::corrupt, where + ": \"model\" must be an object");
  const std::string type = m.contains("type") && m["type"].is_string() ? m["type"].get<std::string>() : "BPE";
  if (type == "BPE") return BpeModel::from_json(m, lists, byte_level, where);
  if (type == "WordPiece") return WordPieceModel::from_json(m, lists, where);
  if (type == "Unigram") return UnigramModel::from_json(m, where);
  fail(ErrorKind::unsupported, where + ": unsupported model type '" + type + "'");
}

void Model::read_vocab_object(const VocabAndMerges& lists, const std::string& here) {
  if (!lists.vocab) fail(ErrorKind::corrupt, here + ": missing \"vocab\" object");
  token_to_id_.reserve(lists.vocab->size());
  id_to_token_.reserve(lists.vocab->size());
  bool repeated_key = false;
  for (const VocabAndMerges::Token& t : *lists.vocab) {
    const std::string_view token = lists.slice(t.begin, t.end);
    if (!t.is_integer) fail(ErrorKind::corrupt, here + ": vocab entry '" + std::string(token) + "' is not an integer id");
    const int64_t id = t.id;
    if (id < 0 || id > kMaxTokenId)
      fail(ErrorKind::corrupt, here + ": vocab id " + std::to_string(id) + " out of range (wick takes ids 0 to " +
                                   std::to_string(kMaxTokenId) + ")");
    if (size_t(id) >= id_to_token_.size()) id_to_token_.resize(size_t(id) + 1);
    const auto [it, inserted] = token_to_id_.try_emplace(std::string(token), int32_t(id));
    if (!inserted) {  // a key written twice: the later id wins, as in a JSON tree (and HF's serde map)
      id_to_token_[size_t(it->second)].reset();
      it->second = int32_t(id);
      repeated_key = true;
    }
    auto& slot = id_to_token_[size_t(id)];
    if (slot) fail(ErrorKind::corrupt, here + ": vocab id " + std::to_string(id) + " given to both '" + *slot + "' and '" + std::string(token) + "'");
    slot = it->first;
  }
  // The table ends at the largest id kept, which a repeated key may have dropped.
  if (repeated_key) while (!id_to_token_.empty() && !id_to_token_.back()) id_to_token_.pop_back();
}

}  // namespace wick::tok
