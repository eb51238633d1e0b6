#include "tokenizer/added_tokens.h"

#include <algorithm>

#include <nlohmann/json.hpp>

#include "tokenizer/model.h"
#include "tokenizer/normalizer.h"
#include "tokenizer/unicode.h"
#include "wick/error.h"

namespace wick::tok {

// ---------------------------------------------------------------------------------------------
// TokenMatcher

void TokenMatcher::add(std::string_view pattern, int32_t value) {
  if (pattern.empty()) return;
  int32_t node = 0;
  for (unsigned char c : pattern) {
    auto& next = nodes_[size_t(node)].next;
    auto it = std::lower_bound(next.begin(), next.end(), c, [](const auto& e, unsigned char b) { return e.first < b; });
    if (it != next.end() && it->first == c) {
      node = it->second;
    } else {
      const auto child = int32_t(nodes_.size());
      next.insert(it, {c, child});   // `next` may dangle after the push_back below; it is not used again
      nodes_.emplace_back();
      node = child;
    }
  }
  if (nodes_[size_t(node)].value < 0) nodes_[size_t(node)].value = value;  // the first of duplicates wins
  first_byte_[static_cast<unsigned char>(pattern[0])] = true;
}

bool TokenMatcher::find(std::string_view text, size_t from, size_t& begin, size_t& end, int32_t& value) const {
  if (empty()) return false;
  const auto* p = reinterpret_cast<const unsigned char*>(text.data());
  for (size_t i = from; i < text.size(); ++i) {
    if (!first_byte_[p[i]]) continue;
    int32_t node = 0, best = -1;
    size_t best_end = 0;
    for (size_t k = i; k < text.size(); ++k) {
      const auto& next = nodes_[size_t(node)].next;
      auto it = std::lower_bound(next.begin(), next.end(), p[k], [](const auto& e, unsigned char b) { return e.first < b; });
      if (it == next.end() || it->first != p[k]) break;
      node = it->second;
      if (nodes_[size_t(node)].value >= 0) {
        best = nodes_[size_t(node)].value;
        best_end = k + 1;
      }
    }
    if (best >= 0) {
      begin = i;
      end = best_end;
      value = best;
      return true;
    }
  }
  return false;
}

// ---------------------------------------------------------------------------------------------
// AddedVocabulary

namespace {

bool get_flag(const nlohmann::json& t, const char* key, bool fallback, const std::string& where) {
  if (!t.contains(key) || t[key].is_null()) return fallback;
  if (!t[key].is_boolean()) fail(ErrorKind::corrupt, where + ": \"" + key + "\" must be a boolean");
  return t[key].get<bool>();
}

// The code point ending at `end` (> 0) of valid UTF-8.
uint32_t code_point_before(std::string_view s, size_t end, size_t& begin) {
  begin = end - 1;
  while (begin > 0 && (static_cast<unsigned char>(s[begin]) & 0xC0) == 0x80) --begin;
  size_t i = begin;
  return next_code_point(s, i);
}

bool ends_with_word(std::string_view s) {  // Rust regex \w$
  if (s.empty()) return false;
  size_t b;
  return is_word_char(code_point_before(s, s.size(), b));
}

bool starts_with_word(std::string_view s) {  // Rust regex ^\w
  if (s.empty()) return false;
  size_t i = 0;
  return is_word_char(next_code_point(s, i));
}

size_t trailing_space_start(std::string_view s) {  // start of Rust regex \s*$
  size_t end = s.size();
  while (end > 0) {
    size_t b;
    if (!is_white_space(code_point_before(s, end, b))) break;
    end = b;
  }
  return end;
}

size_t leading_space_end(std::string_view s) {  // end of Rust regex ^\s*
  size_t i = 0;
  while (i < s.size()) {
    size_t j = i;
    if (!is_white_space(next_code_point(s, j))) break;
    i = j;
  }
  return i;
}

}  // namespace

AddedVocabulary AddedVocabulary::from_json(const nlohmann::json& j, const Normalizer& normalizer,
                                           const std::string& where) {
  AddedVocabulary v;
  if (j.is_null()) return v;
  if (!j.is_array()) fail(ErrorKind::corrupt, where + ": \"added_tokens\" must be an array");
  for (const auto& t : j) {
    const std::string here = where + ": added_tokens[" + std::to_string(v.tokens_.size()) + "]";
    if (!t.is_object() || !t.contains("id") || !t["id"].is_number_integer() || !t.contains("content") ||
        !t["content"].is_string()) {
      fail(ErrorKind::corrupt, here + ": needs an integer \"id\" and a string \"content\"");
    }
    AddedToken a;
    const auto id = t["id"].get<int64_t>();
    if (id < 0 || id > kMaxTokenId)
      fail(ErrorKind::corrupt, here + ": id " + std::to_string(id) + " out of range (wick takes ids 0 to " +
                                   std::to_string(kMaxTokenId) + ")");
    a.id = int32_t(id);
    a.content = t["content"].get<std::string>();
    a.special = get_flag(t, "special", false, here);
    a.lstrip = get_flag(t, "lstrip", false, here);
    a.rstrip = get_flag(t, "rstrip", false, here);
    a.single_word = get_flag(t, "single_word", false, here);
    a.normalized = get_flag(t, "normalized", !a.special, here);
    if (a.content.empty()) continue;  // HF ignores empty added tokens
    v.tokens_.push_back(std::move(a));
  }
  for (size_t i = 0; i < v.tokens_.size(); ++i) {
    const AddedToken& a = v.tokens_[i];
    if (!a.normalized) {
      v.raw_.add(a.content, int32_t(i));
      continue;
    }
    std::string pattern;
    if (!normalizer.normalize(a.content, pattern)) pattern = a.content;
    v.normalized_.add(pattern, int32_t(i));
  }
  return v;
}

void AddedVocabulary::split(std::string_view text, const TokenMatcher& matcher, std::vector<Segment>& out) const {
  if (text.empty()) return;
  size_t start_offset = 0, pos = 0, b, e;
  int32_t index;
  while (matcher.find(text, pos, b, e, index)) {
    pos = e;  // non-overlapping matches, independent of the strip rules below (as aho-corasick's find_iter)
    const AddedToken& tok = tokens_[size_t(index)];
    size_t start = b, stop = e;
    if (tok.single_word) {
      const bool start_space = b == 0 || !ends_with_word(text.substr(0, b));
      const bool stop_space = e == text.size() || !starts_with_word(text.substr(e));
      if (!start_space || !stop_space) continue;
    }
    if (tok.lstrip) start = std::max(trailing_space_start(text.substr(0, b)), start_offset);
    if (tok.rstrip) stop += leading_space_end(text.substr(e));
    if (start_offset < start) out.push_back({start_offset, start, -1});
    out.push_back({start, stop, tok.id});
    start_offset = stop;
  }
  if (start_offset < text.size()) out.push_back({start_offset, text.size(), -1});
}

}  // namespace wick::tok
