// Helpers for the generation tests.
#pragma once

#include <string>

#include <nlohmann/json.hpp>

#include "wick/tokenizer.h"

namespace wick::test {

/// A crafted tokenizer for the tiny fixture models (vocab 384): ids 0-51 are the letters a-z A-Z,
/// ids 52-383 two-letter tokens ("aa", "ab", ...), so generated text is plain ASCII and stop strings
/// can be placed across token boundaries.
inline Tokenizer tiny_tokenizer() {
  const std::string letters = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
  nlohmann::json vocab = nlohmann::json::object(), merges = nlohmann::json::array();
  for (size_t i = 0; i < letters.size(); ++i) vocab[std::string(1, letters[i])] = i;
  for (size_t k = 0; k < 384 - letters.size(); ++k) {
    const char a = letters[k / letters.size()], b = letters[k % letters.size()];
    vocab[std::string{a, b}] = letters.size() + k;
    merges.push_back(std::string{a, ' ', b});
  }
  const nlohmann::json model = {{"type", "BPE"}, {"vocab", vocab}, {"merges", merges}};
  return Tokenizer::from_json(nlohmann::json{{"model", model}, {"decoder", nullptr}}.dump(), {}, "tiny tokenizer");
}

}  // namespace wick::test
