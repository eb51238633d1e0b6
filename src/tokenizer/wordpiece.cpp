#include "tokenizer/wordpiece.h"

#include <nlohmann/json.hpp>

#include "tokenizer/unicode.h"
#include "wick/error.h"

namespace wick::tok {

std::unique_ptr<WordPieceModel> WordPieceModel::from_json(const nlohmann::json& m, const VocabAndMerges& lists,
                                                          const std::string& where) {
  const std::string here = where + ": model WordPiece";
  std::unique_ptr<WordPieceModel> wp(new WordPieceModel());
  wp->read_vocab_object(lists, here);
  auto string_field = [&](const char* key, const std::string& fallback) {
    if (!m.contains(key) || m[key].is_null()) return fallback;
    if (!m[key].is_string()) fail(ErrorKind::corrupt, here + ": \"" + key + "\" must be a string");
    return m[key].get<std::string>();
  };
  const std::string unk = string_field("unk_token", "[UNK]");
  wp->prefix_ = string_field("continuing_subword_prefix", "##");
  if (m.contains("max_input_chars_per_word") && !m["max_input_chars_per_word"].is_null()) {
    if (!m["max_input_chars_per_word"].is_number_unsigned()) {
      fail(ErrorKind::corrupt, here + ": \"max_input_chars_per_word\" must be a non-negative integer");
    }
    wp->max_chars_ = m["max_input_chars_per_word"].get<size_t>();
  }
  wp->unk_id_ = wp->vocab_id(unk);
  if (wp->unk_id_ < 0) fail(ErrorKind::corrupt, here + ": unk_token '" + unk + "' is not in the vocab");
  return wp;
}

void WordPieceModel::encode_word(std::string_view word, std::vector<int32_t>& out) const {
  size_t chars = 0;
  for (unsigned char c : word) chars += (c & 0xC0) != 0x80;
  if (chars > max_chars_) {
    out.push_back(unk_id_);
    return;
  }
  const size_t mark = out.size();
  std::string key;
  for (size_t start = 0; start < word.size();) {
    // The longest piece word[start, end) in the vocab; shorten by one character at a time.
    size_t end = word.size();
    int32_t id = -1;
    while (start < end) {
      key.assign(start > 0 ? prefix_ : std::string());
      key.append(word.substr(start, end - start));
      id = vocab_id(key);
      if (id >= 0) break;
      do --end;
      while (end > start && (static_cast<unsigned char>(word[end]) & 0xC0) == 0x80);
    }
    if (id < 0) {
      out.resize(mark);
      out.push_back(unk_id_);
      return;
    }
    out.push_back(id);
    start = end;
  }
}

}  // namespace wick::tok
