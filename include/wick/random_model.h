// Random Qwen2 models and sentence-transformers encoders for tests and speed work (no model hub here: wick makes its
// own).
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>

#include "wick/config.h"

namespace wick {

struct RandomModelOptions {
  DType dtype = DType::bf16;  ///< dtype of the weight files
  uint64_t seed = 0;
};

/// Writes a Hugging Face directory (config.json, generation_config.json, model.safetensors) with
/// random weights shaped by `config`: matrices uniform with variance 1/fan_in, embeddings with
/// variance 1, norms in [0.5, 1.5], biases with standard deviation 0.1. Same seed, same files.
void write_random_model(const ModelConfig& config, const std::filesystem::path& dir, const RandomModelOptions& options);

/// The encoder shapes write_random_embedder knows: "minilm-l6" (all-MiniLM-L6-v2: 384 wide, 6 layers, 12 heads, ffn
/// 1536), "bert-base" (768, 12 layers, 12 heads, ffn 3072) and "tiny-bert" (32, 2 layers, 4 heads, ffn 64: for
/// tests); all with BERT's vocabulary of 30522 and 512 positions.
bool is_random_embedder_shape(const std::string& like);

/// Writes a sentence-transformers folder around a random BertModel of the shape `like` names: config.json,
/// model.safetensors (as write_random_model fills them; LayerNorms in [0.5, 1.5], biases with standard deviation 0.1,
/// a pooler as checkpoints carry one), a WordPiece tokenizer.json (lowercasing BertNormalizer, BERT's special tokens at
/// BERT's ids, the printable ASCII characters, their "##" continuations and synthetic words), modules.json,
/// 1_Pooling/config.json (mean), 2_Normalize and sentence_bert_config.json (max_seq_length 512). bad_input for an
/// unknown `like`.
void write_random_embedder(const std::string& like, const std::filesystem::path& dir,
                           const RandomModelOptions& options);

}  // namespace wick
