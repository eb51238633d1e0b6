// Training checkpoints: a folder that is a PEFT adapter (adapter_config.json, adapter_model.safetensors) plus the
// optimizer's moments (optimizer.safetensors) and the run's position (trainer_state.json: steps, the batcher's
// epoch and index, the seed, the model and data it belongs to, the log so far). Written into a temporary folder
// beside the target and renamed into place, so a process killed while writing leaves every earlier checkpoint
// whole and no partial one under the target's name.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "train/dataset.h"
#include "train/optimizer.h"
#include "wick/adapter.h"
#include "wick/train.h"

namespace wick {

struct Checkpoint {
  LoraConfig config;
  std::map<std::string, Tensor> tensors;  // PEFT key → CPU f32
  AdamWState optimizer;
  int64_t step = 0;  // optimizer steps done
  BatchPosition position;
  uint64_t seed = 0;
  std::string model;  // model_fingerprint() of the model trained
  std::string data;   // data_fingerprint() of the training set
  std::vector<StepReport> history;
};

/// The shape of a model, as one line ("causal_lm: hidden 896, 24 layers, 14/2 heads of 64, ffn 4864, vocab 151936").
std::string model_fingerprint(const ModelConfig& c);
/// The training set's size and a hash of every example's ids and labels.
std::string data_fingerprint(const std::vector<Example>& examples);

/// Writes `ck` as the folder `dir` (replacing one there). bad_input naming the folder when it cannot be written.
void write_checkpoint(const std::filesystem::path& dir, const Checkpoint& ck);
/// Reads a checkpoint folder. not_found / corrupt naming the file at fault.
Checkpoint read_checkpoint(const std::filesystem::path& dir);

/// Test hook: when the environment sets WICK_CHECKPOINT_WRITE_DELAY_MS, each checkpoint write sleeps that long
/// between its files, so a test can kill the process mid-write.
int64_t checkpoint_write_delay_ms();

}  // namespace wick
