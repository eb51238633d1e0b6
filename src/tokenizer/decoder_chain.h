// The "decoder" of tokenizer.json other than a lone ByteLevel: WordPiece, Metaspace, Replace, Strip, Fuse,
// ByteFallback, BPEDecoder and Sequences of them, applied as HF's decode_chain is (a list of token strings in, a
// list out, then joined).
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace wick::tok {

class DecoderChain {
 public:
  /// Parses a decoder (a Sequence is flattened). Error{unsupported} naming `where` for a type wick lacks
  /// (ByteLevel inside a Sequence with others included).
  static DecoderChain from_json(const nlohmann::json& j, const std::string& where);
  DecoderChain();
  ~DecoderChain();
  DecoderChain(DecoderChain&&) noexcept;
  DecoderChain& operator=(DecoderChain&&) noexcept;

  /// HF decode: every step over the whole list of token strings, then the pieces joined.
  std::string decode(std::vector<std::string> tokens) const;
  /// One token as it reads inside a stream: as the first token (`first`) or after others. Steps that join tokens
  /// (Fuse) pass it through, steps after a Fuse act on the first token only, and a <0xXX> token of ByteFallback
  /// is its raw byte. The pieces of a stream concatenate to decode() of all tokens for WordPiece, Metaspace,
  /// Replace and the usual ByteFallback / Fuse / Strip chains.
  std::string decode_one(const std::string& token, bool first) const;

  struct Step;

 private:
  std::vector<Step> steps_;
};

}  // namespace wick::tok
