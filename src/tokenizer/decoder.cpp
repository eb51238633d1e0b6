// Decoding ids to text, whole (Tokenizer::decode) and streaming (IncrementalDecoder).
#include "tokenizer/tokenizer_impl.h"
#include "tokenizer/unicode.h"

namespace wick {

namespace {

// Bytes of the token to append, or nullptr when HF's decode drops the id.
const std::string* token_bytes_for_decode(const Tokenizer::Impl& im, int32_t id, bool skip_special) {
  if (!im.has(id)) return nullptr;
  if (skip_special && (im.flags[size_t(id)] & Tokenizer::Impl::special)) return nullptr;
  return &im.bytes[size_t(id)];
}

}  // namespace

std::string Tokenizer::decode(std::span<const int32_t> ids, bool skip_special) const {
  const Impl& im = *impl_;
  if (im.decoder == Impl::Decoder::chain) {
    std::vector<std::string> tokens;
    tokens.reserve(ids.size());
    for (int32_t id : ids) {
      if (token_bytes_for_decode(im, id, skip_special)) tokens.push_back(im.text[size_t(id)]);
    }
    const std::string joined = im.decoder_chain.decode(std::move(tokens));
    std::string out;
    tok::append_lossy_utf8(out, joined);
    return out;
  }
  std::string joined;
  bool first = true;
  for (int32_t id : ids) {
    const std::string* b = token_bytes_for_decode(im, id, skip_special);
    if (!b) continue;
    if (im.decoder == Impl::Decoder::none && !first) joined += ' ';
    joined += *b;
    first = false;
  }
  std::string out;
  out.reserve(joined.size());
  tok::append_lossy_utf8(out, joined);
  return out;
}

IncrementalDecoder::IncrementalDecoder(const Tokenizer& tokenizer, bool skip_special)
    : tokenizer_(tokenizer), skip_special_(skip_special) {}

std::string IncrementalDecoder::push(int32_t id) {
  const Tokenizer::Impl& im = *tokenizer_.impl_;
  const std::string* b = token_bytes_for_decode(im, id, skip_special_);
  if (!b) return {};
  if (im.decoder == Tokenizer::Impl::Decoder::none && !first_) pending_ += ' ';
  if (im.decoder == Tokenizer::Impl::Decoder::chain && first_) pending_ += im.decoder_chain.decode_one(im.text[size_t(id)], true);
  else pending_ += *b;
  first_ = false;
  // Emit everything up to a trailing incomplete character. Positions are those the lossy decoder
  // of the whole stream visits, so the pieces concatenate to decode() of all ids.
  const auto* p = reinterpret_cast<const unsigned char*>(pending_.data());
  const size_t n = pending_.size();
  size_t i = 0;
  while (i < n) {
    size_t len;
    if (tok::classify_utf8(p + i, n - i, len) == tok::Utf8Status::incomplete) break;
    i += len;
  }
  std::string out;
  tok::append_lossy_utf8(out, std::string_view(pending_).substr(0, i));
  pending_.erase(0, i);
  return out;
}

std::string IncrementalDecoder::flush() {
  std::string out;
  tok::append_lossy_utf8(out, pending_);
  pending_.clear();
  first_ = true;
  return out;
}

}  // namespace wick
