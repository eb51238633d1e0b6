// A sentence-transformers folder as its files describe it: which modules, where the Transformer module's model is,
// how it pools, normalises, truncates and prompts. Private to src/embed/.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>

#include "wick/embedder.h"

namespace wick {

struct SentenceFolder {
  std::filesystem::path model_dir;              // the Transformer module's folder: config.json, weights, tokenizer
  std::optional<int64_t> max_seq_length;        // sentence_bert_config.json
  bool do_lower_case = false;                   // sentence_bert_config.json: texts lowercased before tokenizing
  EmbedPooling pooling = EmbedPooling::mean;    // 1_Pooling/config.json (mean for a plain model folder)
  bool include_prompt = true;                   // false: mean and max pooling skip the prompt's tokens
  bool normalize = false;                       // a Normalize module
  std::map<std::string, std::string> prompts;   // config_sentence_transformers.json
  std::optional<std::string> default_prompt_name;
};

/// Reads `dir`: modules.json and the files its modules name, or (no modules.json) a plain model folder as
/// sentence-transformers wraps one (Transformer + mean Pooling). Errors name the file and the field.
SentenceFolder read_sentence_folder(const std::filesystem::path& dir);

/// tokenizer_config.json's model_max_length in `dir`, when it holds a real one (transformers writes 1e30 for none).
std::optional<int64_t> tokenizer_max_length(const std::filesystem::path& dir);

}  // namespace wick
