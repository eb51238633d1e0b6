// The state behind wick::Tokenizer, shared (immutable) by all copies of one loaded tokenizer.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "tokenizer/added_tokens.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/decoder_chain.h"
#include "tokenizer/model.h"
#include "tokenizer/normalizer.h"
#include "tokenizer/post_processor.h"
#include "tokenizer/pretokenizer.h"
#include "wick/tokenizer.h"

namespace wick {

struct Tokenizer::Impl {
  // none: HF joins token strings with " "; chain: decoder_chain (WordPiece, Metaspace, ...).
  enum class Decoder { none, byte_level, chain };
  enum Flag : uint8_t { known = 1, special = 2, is_added = 4 };

  std::string origin;  // file name for messages
  tok::Normalizer normalizer;
  tok::PreTokenizer pre_tokenizer;
  std::unique_ptr<tok::Model> model;
  tok::AddedVocabulary added;
  tok::PostProcessor post_processor;
  Decoder decoder = Decoder::none;
  tok::DecoderChain decoder_chain;  // when decoder == chain

  // Per id (index = id): the token as written in tokenizer.json, the bytes it decodes to inside a stream
  // (DecoderChain::decode_one for chains), and flags.
  std::vector<std::string> text;
  std::vector<std::string> bytes;
  std::vector<uint8_t> flags;
  tok::StringIdMap added_ids;  // the added tokens' strings -> id (the model's own vocab: model->vocab_id)

  /// The id of a token string: an added token's, else the model vocab's.
  std::optional<int32_t> id_of(std::string_view token) const {
    if (const auto it = added_ids.find(token); it != added_ids.end()) return it->second;
    const int32_t id = model->vocab_id(token);
    return id < 0 ? std::nullopt : std::optional<int32_t>(id);
  }

  std::optional<int32_t> eos, bos, pad;
  tok::ChatTemplate chat;

  bool has(int32_t id) const { return id >= 0 && size_t(id) < flags.size() && (flags[size_t(id)] & known); }
};

}  // namespace wick
