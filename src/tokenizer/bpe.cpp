#include "tokenizer/bpe.h"

#include <algorithm>
#include <functional>
#include <mutex>

#include <nlohmann/json.hpp>

#include "tokenizer/unicode.h"
#include "wick/error.h"

namespace wick::tok {

// ---------------------------------------------------------------------------------------------
// PairMap: (left id, right id) -> (rank, merged id), open addressing with linear probing.

struct BpeModel::PairMap {
  struct Slot {
    uint64_t key = kEmpty;
    uint32_t rank = 0;
    int32_t merged = -1;
  };
  static constexpr uint64_t kEmpty = ~uint64_t(0);

  std::vector<Slot> slots;  // size: a power of two, at least twice the number of merges
  uint64_t mask = 0;

  explicit PairMap(size_t n) {
    size_t cap = 16;
    while (cap < 2 * n) cap *= 2;
    slots.resize(cap);
    mask = cap - 1;
  }
  static uint64_t key_of(int32_t a, int32_t b) { return (uint64_t(uint32_t(a)) << 32) | uint32_t(b); }
  size_t home(uint64_t key) const { return size_t((key * 0x9E3779B97F4A7C15ull) >> 20) & mask; }

  // A later merge of the same pair replaces the earlier one, as HF's HashMap collect does.
  void insert(int32_t a, int32_t b, uint32_t rank, int32_t merged) {
    const uint64_t key = key_of(a, b);
    for (size_t i = home(key);; i = (i + 1) & mask) {
      if (slots[i].key == kEmpty || slots[i].key == key) {
        slots[i] = {key, rank, merged};
        return;
      }
    }
  }
  const Slot* find(int32_t a, int32_t b) const {
    const uint64_t key = key_of(a, b);
    for (size_t i = home(key);; i = (i + 1) & mask) {
      if (slots[i].key == key) return &slots[i];
      if (slots[i].key == kEmpty) return nullptr;
    }
  }
};

// ---------------------------------------------------------------------------------------------
// Cache: word -> ids, sharded by hash; a full shard is cleared (bounded memory, no eviction order).

struct BpeModel::Cache {
  static constexpr size_t kShards = 64;
  static constexpr size_t kShardCapacity = 2048;  // up to 128K words in all
  static constexpr size_t kMaxWordBytes = 256;    // longer words are not cached (as HF)
  struct Shard {
    std::mutex mutex;
    std::unordered_map<std::string, std::vector<int32_t>, StringHash, std::equal_to<>> map;
  };
  std::array<Shard, kShards> shards;
};

// ---------------------------------------------------------------------------------------------
// Loading

BpeModel::BpeModel() : cache_(std::make_unique<Cache>()) {}
BpeModel::~BpeModel() = default;

namespace {

std::string optional_string(const nlohmann::json& m, const char* key, const std::string& where) {
  if (!m.contains(key) || m[key].is_null()) return {};
  if (!m[key].is_string()) fail(ErrorKind::corrupt, where + ": \"" + key + "\" must be a string or null");
  return m[key].get<std::string>();
}

bool optional_bool(const nlohmann::json& m, const char* key, const std::string& where) {
  if (!m.contains(key) || m[key].is_null()) return false;
  if (!m[key].is_boolean()) fail(ErrorKind::corrupt, where + ": \"" + key + "\" must be a boolean");
  return m[key].get<bool>();
}

std::string byte_fallback_token(unsigned char b) {
  static const char* hex = "0123456789ABCDEF";
  return std::string("<0x") + hex[b >> 4] + hex[b & 15] + ">";
}

}  // namespace

void BpeModel::read_vocab(const VocabAndMerges& lists, const std::string& here) {
  read_vocab_object(lists, here);
  // Byte-level keys: the raw bytes each token stands for.
  if (byte_level_) {
    key_to_id_.reserve(token_to_id_.size());
    std::string bytes;
    for (const auto& [token, id] : token_to_id_) {
      bytes.clear();
      if (byte_level_decode(token, bytes)) key_to_id_.emplace(bytes, id);
    }
    for (int b = 0; b < 256; ++b) {
      std::string ch;
      append_utf8(ch, byte_to_code_point()[size_t(b)]);
      byte_id_[size_t(b)] = vocab_id(ch);
    }
  }
}

// ["a", "b"] pairs or "a b" strings; rank = position. `m` holds "merges" only when it is not an array.
void BpeModel::read_merges(const nlohmann::json& m, const VocabAndMerges& lists, const std::string& here) {
  if (!lists.merges && m.contains("merges") && !m["merges"].is_null()) {
    fail(ErrorKind::corrupt, here + ": \"merges\" must be an array");
  }
  const std::vector<VocabAndMerges::Merge> none;
  const auto& merges = lists.merges ? *lists.merges : none;
  merges_ = std::make_unique<PairMap>(merges.size());
  uint32_t rank = 0;
  std::string merged;
  for (size_t i = 0; i < merges.size(); ++i) {
    const VocabAndMerges::Merge& e = merges[i];
    std::string_view a, b;
    if (e.form == VocabAndMerges::Merge::Form::line) {
      const std::string_view line = lists.slice(e.begin, e.end);
      if (line.starts_with("#version")) continue;
      const size_t sp = line.find(' ');
      if (sp == std::string_view::npos || line.find(' ', sp + 1) != std::string_view::npos) {
        fail(ErrorKind::corrupt, here + ": merges[" + std::to_string(i) + "] '" + std::string(line) +
                                     "' is not two tokens separated by one space");
      }
      a = line.substr(0, sp);
      b = line.substr(sp + 1);
    } else if (e.form == VocabAndMerges::Merge::Form::pair) {
      a = lists.slice(e.begin, e.split);
      b = lists.slice(e.split, e.end);
    } else {
      fail(ErrorKind::corrupt, here + ": merges[" + std::to_string(i) + "] must be \"a b\" or [\"a\", \"b\"]");
    }
    const int32_t ia = vocab_id(a), ib = vocab_id(b);
    if (ia < 0 || ib < 0) {
      fail(ErrorKind::corrupt, here + ": merges[" + std::to_string(i) + "] names token '" + std::string(ia < 0 ? a : b) +
                                   "', which is not in the vocab");
    }
    if (b.size() < prefix_.size()) {
      fail(ErrorKind::corrupt, here + ": merges[" + std::to_string(i) + "]: '" + std::string(b) +
                                   "' is shorter than continuing_subword_prefix");
    }
    merged.assign(a).append(b.substr(prefix_.size()));
    const int32_t im = vocab_id(merged);
    if (im < 0) {
      fail(ErrorKind::corrupt, here + ": merges[" + std::to_string(i) + "] makes '" + merged + "', which is not in the vocab");
    }
    merges_->insert(ia, ib, rank++, im);
  }
}

std::unique_ptr<BpeModel> BpeModel::from_json(const nlohmann::json& m, const VocabAndMerges& lists, bool byte_level,
                                               const std::string& where) {
  if (m.is_null()) fail(ErrorKind::corrupt, where + ": missing \"model\"");
  if (!m.is_object()) fail(ErrorKind::corrupt, where + ": \"model\" must be an object");
  const std::string type = m.contains("type") && m["type"].is_string() ? m["type"].get<std::string>() : "BPE";
  if (type != "BPE") fail(ErrorKind::unsupported, where + ": unsupported model type '" + type + "'");
  const std::string here = where + ": model BPE";

  std::unique_ptr<BpeModel> bpe(new BpeModel());
  bpe->byte_level_ = byte_level;
  if (m.contains("dropout") && !m["dropout"].is_null()) {
    if (!m["dropout"].is_number()) fail(ErrorKind::corrupt, here + ": \"dropout\" must be a number or null");
    if (m["dropout"].get<double>() != 0.0) fail(ErrorKind::unsupported, here + ": dropout (non-deterministic) is not supported");
  }
  bpe->ignore_merges_ = optional_bool(m, "ignore_merges", here);
  bpe->byte_fallback_ = optional_bool(m, "byte_fallback", here);
  bpe->fuse_unk_ = optional_bool(m, "fuse_unk", here);
  bpe->prefix_ = optional_string(m, "continuing_subword_prefix", here);
  bpe->suffix_ = optional_string(m, "end_of_word_suffix", here);
  if (byte_level && (!bpe->prefix_.empty() || !bpe->suffix_.empty())) {
    fail(ErrorKind::unsupported, here + ": continuing_subword_prefix / end_of_word_suffix with a ByteLevel pre_tokenizer");
  }

  bpe->read_vocab(lists, here);
  const std::string unk = optional_string(m, "unk_token", here);
  if (!unk.empty()) {
    bpe->unk_id_ = bpe->vocab_id(unk);
    if (bpe->unk_id_ < 0) fail(ErrorKind::corrupt, here + ": unk_token '" + unk + "' is not in the vocab");
  }

  bpe->read_merges(m, lists, here);
  return bpe;
}

// ---------------------------------------------------------------------------------------------
// Encoding

int32_t BpeModel::lookup_unit(std::string_view unit) const {
  const StringIdMap& keys = byte_level_ ? key_to_id_ : token_to_id_;
  auto it = keys.find(unit);
  return it == keys.end() ? -1 : it->second;
}

void BpeModel::initial_symbols(std::string_view word, std::vector<int32_t>& symbols) const {
  symbols.clear();
  int32_t pending_unk = -1;  // HF's `unk`: an unknown unit waiting to be added (fused with later ones)
  std::string unit;
  size_t i = 0;
  while (i < word.size()) {
    const size_t begin = i;
    int32_t id;
    if (byte_level_) {
      id = byte_id_[static_cast<unsigned char>(word[i++])];
    } else {
      next_code_point(word, i);
      unit.assign(begin == 0 ? "" : prefix_).append(word.substr(begin, i - begin));
      if (i == word.size()) unit += suffix_;
      id = lookup_unit(unit);
    }
    if (id >= 0) {
      if (pending_unk >= 0) symbols.push_back(pending_unk);
      pending_unk = -1;
      symbols.push_back(id);
      continue;
    }
    if (byte_level_) {  // the unit HF sees is the byte's alphabet character
      unit.clear();
      append_utf8(unit, byte_to_code_point()[static_cast<unsigned char>(word[begin])]);
    }
    if (byte_fallback_) {
      bool all = true;
      const size_t mark = symbols.size();
      for (unsigned char c : unit) {
        auto it = token_to_id_.find(byte_fallback_token(c));
        if (it == token_to_id_.end()) { all = false; break; }
        symbols.push_back(it->second);
      }
      if (all) continue;  // (HF leaves a pending unk in place here)
      symbols.resize(mark);
    }
    if (unk_id_ >= 0) {
      if (pending_unk >= 0 && !fuse_unk_) symbols.push_back(pending_unk);
      pending_unk = unk_id_;
    }
    // Without unk_token an unknown unit is dropped, as HF does.
  }
  if (pending_unk >= 0) symbols.push_back(pending_unk);
}

void BpeModel::merge_simple(std::vector<int32_t>& symbols) const {
  constexpr uint32_t kNone = UINT32_MAX;
  if (symbols.size() < 2) return;
  std::vector<uint32_t> ranks(symbols.size() - 1);
  std::vector<int32_t> merged(symbols.size() - 1);
  auto rate = [&](size_t i) {
    const PairMap::Slot* s = merges_->find(symbols[i], symbols[i + 1]);
    ranks[i] = s ? s->rank : kNone;
    merged[i] = s ? s->merged : -1;
  };
  for (size_t i = 0; i + 1 < symbols.size(); ++i) rate(i);
  while (!ranks.empty()) {
    const size_t best = size_t(std::min_element(ranks.begin(), ranks.end()) - ranks.begin());  // first of equal ranks
    if (ranks[best] == kNone) break;
    symbols[best] = merged[best];
    symbols.erase(symbols.begin() + std::ptrdiff_t(best) + 1);
    ranks.erase(ranks.begin() + std::ptrdiff_t(best));
    merged.erase(merged.begin() + std::ptrdiff_t(best));
    if (best > 0) rate(best - 1);
    if (best < ranks.size()) rate(best);
  }
}

void BpeModel::merge_heap(std::vector<int32_t>& symbols) const {
  const auto n = int32_t(symbols.size());
  if (n < 2) return;
  std::vector<int32_t> prev(static_cast<size_t>(n)), next(static_cast<size_t>(n));  // linked list over positions; -1 / n at the ends
  for (int32_t i = 0; i < n; ++i) {
    prev[size_t(i)] = i - 1;
    next[size_t(i)] = i + 1;
  }
  // Min-heap of (rank << 32 | position): lowest rank first, leftmost on ties.
  std::vector<uint64_t> heap;
  heap.reserve(size_t(n));
  auto push = [&](int32_t pos) {
    const PairMap::Slot* s = merges_->find(symbols[size_t(pos)], symbols[size_t(next[size_t(pos)])]);
    if (!s) return;
    heap.push_back((uint64_t(s->rank) << 32) | uint32_t(pos));
    std::push_heap(heap.begin(), heap.end(), std::greater<>());
  };
  for (int32_t i = 0; i + 1 < n; ++i) {
    const PairMap::Slot* s = merges_->find(symbols[size_t(i)], symbols[size_t(i) + 1]);
    if (s) heap.push_back((uint64_t(s->rank) << 32) | uint32_t(i));
  }
  std::make_heap(heap.begin(), heap.end(), std::greater<>());
  while (!heap.empty()) {
    std::pop_heap(heap.begin(), heap.end(), std::greater<>());
    const uint64_t top = heap.back();
    heap.pop_back();
    const auto pos = int32_t(top & 0xFFFFFFFFu);
    const auto rank = uint32_t(top >> 32);
    if (symbols[size_t(pos)] < 0) continue;  // merged into its left neighbour since
    const int32_t right = next[size_t(pos)];
    if (right >= n) continue;
    const PairMap::Slot* s = merges_->find(symbols[size_t(pos)], symbols[size_t(right)]);
    if (!s || s->rank != rank) continue;  // stale: the pair at pos changed since it was queued
    symbols[size_t(pos)] = s->merged;
    symbols[size_t(right)] = -1;
    next[size_t(pos)] = next[size_t(right)];
    if (next[size_t(pos)] < n) prev[size_t(next[size_t(pos)])] = pos;
    if (prev[size_t(pos)] >= 0) push(prev[size_t(pos)]);
    if (next[size_t(pos)] < n) push(pos);
  }
  symbols.erase(std::remove(symbols.begin(), symbols.end(), -1), symbols.end());
}

namespace {
constexpr size_t kSimpleMergeMax = 32;  // words up to this many symbols use the quadratic loop
}

void BpeModel::encode_uncached(std::string_view word, std::vector<int32_t>& out) const {
  thread_local std::vector<int32_t> symbols;
  initial_symbols(word, symbols);
  if (symbols.size() <= kSimpleMergeMax) merge_simple(symbols);
  else merge_heap(symbols);
  out.insert(out.end(), symbols.begin(), symbols.end());
  if (symbols.capacity() > (1u << 16)) std::vector<int32_t>().swap(symbols);  // do not pin huge buffers
}

void BpeModel::encode_word_heap(std::string_view word, std::vector<int32_t>& out) const {
  std::vector<int32_t> symbols;
  initial_symbols(word, symbols);
  merge_heap(symbols);
  out.insert(out.end(), symbols.begin(), symbols.end());
}

void BpeModel::encode_word_simple(std::string_view word, std::vector<int32_t>& out) const {
  std::vector<int32_t> symbols;
  initial_symbols(word, symbols);
  merge_simple(symbols);
  out.insert(out.end(), symbols.begin(), symbols.end());
}

void BpeModel::encode_word(std::string_view word, std::vector<int32_t>& out) const {
  if (word.empty()) return;
  if (ignore_merges_) {
    const int32_t id = lookup_unit(word);
    if (id >= 0) {
      out.push_back(id);
      return;
    }
  }
  if (word.size() >= Cache::kMaxWordBytes) {
    encode_uncached(word, out);
    return;
  }
  Cache::Shard& shard = cache_->shards[StringHash{}(word) % Cache::kShards];
  {
    std::lock_guard<std::mutex> lock(shard.mutex);
    auto it = shard.map.find(word);
    if (it != shard.map.end()) {
      out.insert(out.end(), it->second.begin(), it->second.end());
      return;
    }
  }
  const size_t mark = out.size();
  encode_uncached(word, out);
  std::vector<int32_t> ids(out.begin() + std::ptrdiff_t(mark), out.end());
  std::lock_guard<std::mutex> lock(shard.mutex);
  if (shard.map.size() >= Cache::kShardCapacity) shard.map.clear();
  shard.map.emplace(std::string(word), std::move(ids));
}

}  // namespace wick::tok
