// Sampling and stop flags shared by `wick generate` and `wick chat`.
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "wick/generator.h"

namespace wick::cli {

/// Flags left unset keep the model's generation_config.json (transformers' behaviour); any sampling
/// flag turns sampling on even when that file says do_sample: false.
struct SamplingFlags {
  std::optional<float> temperature, top_p, min_p, repeat_penalty, presence_penalty, frequency_penalty;
  std::optional<int32_t> top_k;
  std::optional<uint64_t> seed;
  int32_t top_logprobs = 0;
  bool greedy = false;
  std::vector<std::string> stop;

  void add_to(CLI::App* cmd) {
    cmd->add_option("--temperature", temperature, "divide logits by T (0 = greedy)");
    cmd->add_option("--top-k", top_k, "keep the K most likely tokens (0 = off)");
    cmd->add_option("--top-p", top_p, "nucleus sampling: keep the smallest set of mass P, in (0, 1]");
    cmd->add_option("--min-p", min_p, "drop tokens below P times the most likely one's probability");
    cmd->add_option("--repeat-penalty", repeat_penalty, "transformers' repetition_penalty over prompt + output");
    cmd->add_option("--presence-penalty", presence_penalty, "OpenAI presence penalty, in [-2, 2]");
    cmd->add_option("--frequency-penalty", frequency_penalty, "OpenAI frequency penalty, in [-2, 2]");
    cmd->add_option("--seed", seed, "RNG seed: the same seed gives the same tokens");
    cmd->add_option("--top-logprobs", top_logprobs, "alternatives reported per token with --json (0..20)");
    cmd->add_option("--stop", stop, "stop when the text contains this string (repeatable)");
    cmd->add_flag("--greedy", greedy, "argmax decoding (same as --temperature 0)");
  }

  SamplingParams resolve(const Model& model) const {
    SamplingParams p = SamplingParams::from_defaults(model.generation_defaults());
    if (greedy) p = SamplingParams::greedy_params();
    else if (p.greedy() && (temperature || top_k || top_p || min_p)) p = SamplingParams{};  // sampling, all filters off
    if (temperature) p.temperature = *temperature;
    if (top_k) p.top_k = *top_k;
    if (top_p) p.top_p = *top_p;
    if (min_p) p.min_p = *min_p;
    if (repeat_penalty) p.repetition_penalty = *repeat_penalty;
    if (presence_penalty) p.presence_penalty = *presence_penalty;
    if (frequency_penalty) p.frequency_penalty = *frequency_penalty;
    p.seed = seed;
    p.top_logprobs = top_logprobs;
    return p;
  }
};

/// The model directory's tokenizer when it has a tokenizer.json; nullopt otherwise.
inline std::optional<Tokenizer> tokenizer_if_present(const std::string& model_dir) {
  if (!std::filesystem::exists(std::filesystem::path(model_dir) / "tokenizer.json")) return std::nullopt;
  return Tokenizer::load(model_dir);
}

}  // namespace wick::cli
