// Added tokens ("added_tokens" of tokenizer.json): special and non-special tokens that are cut out
// of the text before normalization and BPE, with HF's lstrip / rstrip / single_word / normalized rules.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace wick::tok {

class Normalizer;

struct AddedToken {
  int32_t id = -1;
  std::string content;
  bool special = false;
  bool lstrip = false;       // swallow the whitespace on its left
  bool rstrip = false;       // swallow the whitespace on its right
  bool single_word = false;  // match only when not inside a word
  bool normalized = false;   // match against the normalized text (else the raw text)
};

/// A piece of text after added-token extraction: [begin, end) of the text it was cut from, and the
/// added token's id, or -1 for ordinary text.
struct Segment {
  size_t begin, end;
  int32_t id;
};

/// Leftmost-longest multi-pattern matcher (aho-corasick's MatchKind::LeftmostLongest): a byte trie
/// with a first-byte filter. Patterns are short and few; cost is O(text + matches * depth).
class TokenMatcher {
 public:
  void add(std::string_view pattern, int32_t value);
  bool empty() const { return nodes_.size() <= 1; }
  /// The leftmost match starting at or after `from`; among those starting there, the longest.
  bool find(std::string_view text, size_t from, size_t& begin, size_t& end, int32_t& value) const;

 private:
  struct Node {
    std::vector<std::pair<unsigned char, int32_t>> next;  // sorted by byte
    int32_t value = -1;
  };
  std::vector<Node> nodes_{Node{}};
  bool first_byte_[256] = {};
};

class AddedVocabulary {
 public:
  /// Parses "added_tokens"; `normalizer` normalizes the patterns of tokens flagged "normalized".
  static AddedVocabulary from_json(const nlohmann::json& j, const Normalizer& normalizer, const std::string& where);

  const std::vector<AddedToken>& tokens() const { return tokens_; }
  bool has_raw() const { return !raw_.empty(); }
  bool has_normalized() const { return !normalized_.empty(); }

  /// Cuts `text` on the tokens matched against raw text (normalized == false), as HF's
  /// AddedVocabulary::find_matches does; appends segments covering all of `text`.
  void split_raw(std::string_view text, std::vector<Segment>& out) const { split(text, raw_, out); }
  /// Same for the tokens matched against normalized text.
  void split_normalized(std::string_view text, std::vector<Segment>& out) const { split(text, normalized_, out); }

 private:
  void split(std::string_view text, const TokenMatcher& matcher, std::vector<Segment>& out) const;

  std::vector<AddedToken> tokens_;
  TokenMatcher raw_;         // value = index into tokens_
  TokenMatcher normalized_;  // value = index into tokens_
};

}  // namespace wick::tok
