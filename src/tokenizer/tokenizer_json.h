// Reading tokenizer.json in one pass without a JSON tree for its two big lists: "model.vocab" (an object of 150k
// keys in Qwen's) and "model.merges" (an array of 150k entries) stream into flat VocabAndMerges lists; every other
// key becomes the usual nlohmann tree. Keys may come in any order ("type" after "vocab", "merges" before "vocab"):
// nothing is checked while reading, the model checks its lists once the whole file is read.
#pragma once

#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "tokenizer/model.h"

namespace wick::tok {

struct TokenizerJson {
  nlohmann::json tree;  // the whole file less "model.vocab" when an object and "model.merges" when an array
  VocabAndMerges lists;
};

/// Reads tokenizer.json's text. Error{corrupt} "<origin>: not valid JSON (...)" as parse_json gives it. A key
/// written twice keeps its last value, as in a tree.
TokenizerJson read_tokenizer_json(std::string_view text, const std::string& origin);

}  // namespace wick::tok
