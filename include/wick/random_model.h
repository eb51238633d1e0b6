// Random Qwen2 models for tests and speed work (no model hub here: wick makes its own).
#pragma once

#include <cstdint>
#include <filesystem>

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

}  // namespace wick
