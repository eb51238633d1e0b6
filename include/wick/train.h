// LoRA fine-tuning: a Trainer that makes a PEFT adapter from a JSONL file, step by step as transformers' Trainer
// with PEFT computes it (AdamW, transformers' LR schedules, gradient accumulation over the step's target tokens,
// global-norm clipping), with exact checkpoints, and a live hand-over of the result to an AdapterRegistry.
#pragma once

#include <array>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "wick/adapter.h"
#include "wick/device_turns.h"
#include "wick/model.h"
#include "wick/tensor.h"
#include "wick/tokenizer.h"

namespace wick {

/// What to train and how: the flags of `wick train` (the CLI contract in the README names each). Defaults are
/// PEFT's LoraConfig and transformers' TrainingArguments where those have one.
struct TrainOptions {
  // --- Data ---
  std::filesystem::path data;       ///< --data: JSONL, one example per line (formats: src/train/dataset.h)
  std::filesystem::path eval_data;  ///< --eval: held-out JSONL; its loss every eval_every steps and at the end
  int64_t seq_len = 1024;           ///< --seq-len: examples are cut to their first seq_len tokens
  bool shuffle = true;              ///< --no-shuffle turns it off: batches in file order (reference checks)

  // --- The adapter (PEFT LoraConfig) ---
  std::filesystem::path init_adapter;  ///< --adapter: continue training this PEFT adapter (its shape wins)
  int64_t rank = 8;                    ///< --rank (r)
  double alpha = 16;                   ///< --alpha (lora_alpha); scale alpha / rank, or alpha / √rank with rslora
  bool rslora = false;                 ///< --rslora
  /// --targets: projection names (q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj) or all-linear.
  std::vector<std::string> targets{"q_proj", "v_proj"};
  std::vector<int64_t> layers;  ///< --layers: layers_to_transform; empty = every layer
  /// --dropout: PEFT's lora_dropout, in [0, 1): each LoRA path's input is dropped (and the rest scaled by 1/(1−p))
  /// with a mask drawn from the seed, the step and the projection, so a resumed run draws the same masks. The masks
  /// are wick's own, not torch's: runs with dropout match PEFT in distribution, not number for number.
  double dropout = 0.0;
  /// modules_to_save: trained whole. Default: {"score"} for a sequence classifier (as PEFT's SEQ_CLS), none for
  /// a causal LM; "lm_head" trains an untied LM head.
  std::optional<std::vector<std::string>> modules_to_save{};

  // --- Optimizer and schedule (torch.optim.AdamW, transformers.get_scheduler) ---
  double lr = 2e-4;                         ///< --lr, > 0
  double weight_decay = 0.0;                ///< --weight-decay (TrainingArguments' default)
  std::array<double, 2> betas{0.9, 0.999};  ///< --betas B1,B2
  double eps = 1e-8;                        ///< --eps
  std::string schedule = "linear";          ///< --schedule constant | constant_with_warmup | linear | cosine
  int64_t warmup_steps = 0;                 ///< --warmup N
  std::optional<double> warmup_ratio{};     ///< --warmup RATIO (a number below 1 with a point)
  int64_t steps = 0;                        ///< --steps: optimizer steps; 0 = from epochs
  double epochs = 1;                        ///< --epochs, when steps is 0
  int64_t batch_size = 8;                   ///< --batch-size: sequences per micro-batch (padding-free)
  int64_t grad_accum = 1;                   ///< --grad-accum: micro-batches per optimizer step
  double max_grad_norm = 1.0;               ///< --max-grad-norm: global-norm clipping; 0 = off
  uint64_t seed = 42;                       ///< --seed: the adapter's initialisation and the data order
  bool gradient_checkpointing = false;      ///< --gradient-checkpointing: recompute each layer in the backward

  // --- Output ---
  std::filesystem::path out;     ///< --out: the adapter, train_log.csv and loss.svg; checkpoint-N/ folders
  int64_t checkpoint_every = 0;  ///< --checkpoint-every N steps (0: only the final adapter)
  int64_t eval_every = 0;        ///< --eval-every N steps (0: at the end only)
  std::filesystem::path resume;  ///< --resume: a checkpoint-N folder of this run's shape to continue from

  // --- Sharing the device ---
  /// Shared with other work on the model's device (a server's engine): run() takes a turn of it for each step (with
  /// its evaluation and checkpoint) and for writing the adapter at the end. Null: the trainer has the device to itself.
  std::shared_ptr<DeviceTurns> turns = nullptr;
};

/// One optimizer step, as the step callback sees it.
struct StepReport {
  int64_t step = 0;         ///< 1-based: steps done, this one included
  int64_t total_steps = 0;
  int64_t epoch = 0;        ///< 0-based epoch the step's last batch came from
  double loss = 0;          ///< mean over the step's target tokens (a classifier: its sequences)
  double lr = 0;            ///< the learning rate the step used
  double grad_norm = 0;     ///< global gradient norm before clipping
  int64_t tokens = 0;       ///< tokens the step ran forward and backward
  double seconds = 0;       ///< wall time of the step
  std::optional<double> eval_loss{};  ///< when the step evaluated
};

/// A LoRA fine-tuning run on one model. Not thread-safe itself (one thread drives it); publish() may hand its
/// adapter to a registry that other threads generate from.
class Trainer {
 public:
  /// Reads and checks everything before any work: the options (bad_input naming the flag: rank < 1, lr ≤ 0,
  /// an unknown target, ...), the data (bad_input / corrupt naming the file and line: malformed JSON, no
  /// examples, an example with no target tokens, an unknown chat role), an init adapter or a checkpoint to resume
  /// (bad_input when its model or adapter shape differs), and that `out` can be written. `tokenizer` may be
  /// null when every example is pre-tokenised.
  Trainer(std::shared_ptr<Model> model, std::shared_ptr<const Tokenizer> tokenizer, TrainOptions options);
  ~Trainer();
  Trainer(const Trainer&) = delete;
  Trainer& operator=(const Trainer&) = delete;

  int64_t total_steps() const;
  int64_t steps_done() const;
  /// Examples in the training set.
  int64_t examples() const;
  /// The most memory the run has held: device bytes on a GPU (the backend's allocator), else the process's peak
  /// resident set.
  int64_t peak_memory_bytes() const;

  /// One optimizer step: grad_accum micro-batches forward and backward, clipping, AdamW at the schedule's lr.
  StepReport step();
  /// Steps to total_steps() (from where a resume left off), calling `on_step` after each (false: stop after this
  /// step); evaluates every eval_every steps, checkpoints every checkpoint_every steps, and writes the adapter,
  /// train_log.csv and loss.svg into options.out at the end (also when stopped early).
  void run(const std::function<bool(const StepReport&)>& on_step = {});
  /// The mean loss over the eval set (bad_input when there is none).
  double evaluate();

  /// The adapter as trained so far, as an immutable LoraAdapter of the model (a copy: training goes on).
  std::shared_ptr<const LoraAdapter> adapter(std::string name = "trained") const;
  /// Adds adapter(name) to `registry`, replacing the version held under that name (and activating it when the old
  /// one was active): generations in flight keep the version they started with; the next request gets this one.
  void publish(AdapterRegistry& registry, const std::string& name) const;
  /// Writes a checkpoint into `dir` (created; replaced whole if it exists): the adapter, the optimizer state, the
  /// schedule and data positions. Atomic: written beside `dir` and renamed into place.
  void save_checkpoint(const std::filesystem::path& dir) const;
  /// Every trained tensor as it is now (CPU f32 copies), under its adapter-file key.
  std::map<std::string, Tensor> tensors() const;
  /// The last step's gradient of every trained tensor (before clipping), under its adapter-file key.
  std::map<std::string, Tensor> gradients() const;
  /// Every step so far (a resumed run: from the checkpoint's log on).
  const std::vector<StepReport>& history() const;

  struct Impl;  // src/train/trainer.cpp

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace wick
