#include "tokenizer/unigram.h"

#include <algorithm>
#include <limits>

#include <nlohmann/json.hpp>

#include "wick/error.h"

namespace wick::tok {

namespace {
constexpr double kUnkPenalty = 10.0;  // sentencepiece's kUnkPenalty
}  // namespace

std::unique_ptr<UnigramModel> UnigramModel::from_json(const nlohmann::json& m, const std::string& where) {
  const std::string here = where + ": model Unigram";
  std::unique_ptr<UnigramModel> u(new UnigramModel());
  if (!m.contains("vocab") || !m["vocab"].is_array()) fail(ErrorKind::corrupt, here + ": missing \"vocab\" array");
  const auto& vocab = m["vocab"];
  if (vocab.size() > size_t(kMaxTokenId) + 1) fail(ErrorKind::corrupt, here + ": the vocab has more pieces than wick takes");
  u->id_to_token_.reserve(vocab.size());
  u->scores_.reserve(vocab.size());
  double min_score = std::numeric_limits<double>::infinity();
  for (size_t i = 0; i < vocab.size(); ++i) {
    const auto& e = vocab[i];
    if (!e.is_array() || e.size() != 2 || !e[0].is_string() || !e[1].is_number()) {
      fail(ErrorKind::corrupt, here + ": vocab[" + std::to_string(i) + "] must be [piece, score]");
    }
    const std::string piece = e[0].get<std::string>();
    const double score = e[1].get<double>();
    u->id_to_token_.emplace_back(piece);
    u->scores_.push_back(score);
    u->token_to_id_.insert_or_assign(piece, int32_t(i));  // a repeated piece: the last id wins, as in HF
    min_score = std::min(min_score, score);
  }
  u->unk_score_ = min_score - kUnkPenalty;

  if (m.contains("unk_id") && !m["unk_id"].is_null()) {
    const auto& unk = m["unk_id"];
    if (!unk.is_number_integer() || unk.get<int64_t>() < 0 || unk.get<int64_t>() >= int64_t(vocab.size())) {
      fail(ErrorKind::corrupt, here + ": \"unk_id\" " + unk.dump() + " is not an id of the vocab (it has " +
                                   std::to_string(vocab.size()) + " pieces)");
    }
    u->unk_id_ = int32_t(unk.get<int64_t>());
  }
  if (m.contains("byte_fallback") && !m["byte_fallback"].is_null()) {
    if (!m["byte_fallback"].is_boolean()) fail(ErrorKind::corrupt, here + ": \"byte_fallback\" must be a boolean");
    u->byte_fallback_ = m["byte_fallback"].get<bool>();
  }
  if (u->byte_fallback_) {
    static const char* hex = "0123456789ABCDEF";
    u->byte_ids_.resize(256);
    for (int b = 0; b < 256; ++b) {
      u->byte_ids_[size_t(b)] = u->vocab_id(std::string("<0x") + hex[b >> 4] + hex[b & 15] + ">");
    }
  }

  // The trie: every piece's path of bytes; its end node holds the piece's id (the last id for a repeated piece).
  u->node_id_.push_back(-1);
  for (const auto& [piece, id] : u->token_to_id_) {
    int32_t node = 0;
    for (unsigned char c : piece) {
      int32_t next = u->child(node, c);
      if (next < 0) {
        next = int32_t(u->node_id_.size());
        u->node_id_.push_back(-1);
        u->edges_.emplace((uint64_t(node) << 8) | c, next);
      }
      node = next;
    }
    if (node != 0) u->node_id_[size_t(node)] = id;  // an empty piece never matches
  }
  return u;
}

void UnigramModel::encode_word(std::string_view word, std::vector<int32_t>& out) const {
  if (word.empty()) return;
  // best[i]: the best path over word[0, i): its score, where its last token starts, and that token's id.
  struct Best {
    double score = 0;
    size_t start = 0;
    int32_t id = -1;
    bool set = false;
  };
  const size_t n = word.size();
  std::vector<Best> best(n + 1);
  auto offer = [&](size_t end, size_t start, double score, int32_t id) {
    Best& b = best[end];
    if (!b.set || score > b.score) b = {score, start, id, true};
  };
  for (size_t start = 0; start < n;) {
    const unsigned char lead = static_cast<unsigned char>(word[start]);
    const size_t char_len = lead < 0x80 ? 1 : lead < 0xE0 ? 2 : lead < 0xF0 ? 3 : 4;
    const double here = best[start].score;
    bool covers_char = false;
    int32_t node = 0;
    for (size_t i = start; i < n; ++i) {
      node = child(node, static_cast<unsigned char>(word[i]));
      if (node < 0) break;
      const int32_t id = node_id_[size_t(node)];
      if (id < 0) continue;
      offer(i + 1, start, here + scores_[size_t(id)], id);
      if (i + 1 - start == char_len) covers_char = true;
    }
    if (!covers_char) {
      // As HF: without an unk_id, an uncovered character is an error only where the unk would be on a best path.
      const Best& b = best[start + char_len];
      if (unk_id_ < 0 && (!b.set || here + unk_score_ > b.score)) {
        fail(ErrorKind::bad_input, "tokenizer: the Unigram model has no unk_id and no piece for the character at "
                                   "byte " + std::to_string(start) + " of '" + std::string(word) + "'");
      }
      offer(start + char_len, start, here + unk_score_, unk_id_);
    }
    start += char_len;
  }

  // Back from the end: tokens in reverse, consecutive unk fused into one string.
  std::vector<std::pair<size_t, size_t>> tokens;  // [begin, end) of each token, reversed
  std::vector<bool> unk_run;
  for (size_t end = n; end > 0;) {
    const Best& b = best[end];
    const bool is_unk = b.id == unk_id_;
    if (is_unk && !unk_run.empty() && unk_run.back()) tokens.back().first = b.start;
    else {
      tokens.push_back({b.start, end});
      unk_run.push_back(is_unk);
    }
    end = b.start;
  }
  for (size_t k = tokens.size(); k-- > 0;) {
    const std::string_view s = word.substr(tokens[k].first, tokens[k].second - tokens[k].first);
    if (const int32_t id = vocab_id(s); id >= 0) {
      out.push_back(id);
      continue;
    }
    if (byte_fallback_ && std::all_of(s.begin(), s.end(), [&](char c) { return byte_ids_[uint8_t(c)] >= 0; })) {
      for (char c : s) out.push_back(byte_ids_[uint8_t(c)]);
      continue;
    }
    out.push_back(unk_id_);
  }
}

}  // namespace wick::tok
