#include "tokenizer/model.h"

#include <nlohmann/json.hpp>

#include "tokenizer/bpe.h"
#include "tokenizer/unigram.h"
#include "tokenizer/wordpiece.h"
#include "wick/error.h"

namespace wick::tok {

Model::~Model() = default;

std::unique_ptr<Model> Model::from_json(const nlohmann::json& m, bool byte_level, const std::string& where) {
  if (m.is_null()) fail(ErrorKind::corrupt, where + ": missing \"model\"");
  if (!m.is_object()) fail(ErrorKind::corrupt, where + ": \"model\" must be an object");
  const std::string type = m.contains("type") && m["type"].is_string() ? m["type"].get<std::string>() : "BPE";
  if (type == "BPE") return BpeModel::from_json(m, byte_level, where);
  if (type == "WordPiece") return WordPieceModel::from_json(m, where);
  if (type == "Unigram") return UnigramModel::from_json(m, where);
  fail(ErrorKind::unsupported, where + ": unsupported model type '" + type + "'");
}

void Model::read_vocab_object(const nlohmann::json& vocab, const std::string& here) {
  token_to_id_.reserve(vocab.size());
  for (auto it = vocab.begin(); it != vocab.end(); ++it) {
    if (!it.value().is_number_integer()) fail(ErrorKind::corrupt, here + ": vocab entry '" + it.key() + "' is not an integer id");
    const auto id = it.value().get<int64_t>();
    if (id < 0 || id > kMaxTokenId)
      fail(ErrorKind::corrupt, here + ": vocab id " + std::to_string(id) + " out of range (wick takes ids 0 to " +
                                   std::to_string(kMaxTokenId) + ")");
    if (size_t(id) >= id_to_token_.size()) id_to_token_.resize(size_t(id) + 1);
    auto& slot = id_to_token_[size_t(id)];
    if (slot) fail(ErrorKind::corrupt, here + ": vocab id " + std::to_string(id) + " given to both '" + *slot + "' and '" + it.key() + "'");
    slot = it.key();
    token_to_id_.emplace(it.key(), int32_t(id));
  }
}

}  // namespace wick::tok
