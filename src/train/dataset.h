// Training data: a JSONL file turned into token ids and labels, as TRL's SFTTrainer prepares them, and the
// batches an epoch is cut into.
//
// One example per line (blank lines skipped), any of:
//   {"text": "..."}                          loss on every token
//   {"prompt": "...", "completion": "..."}   loss on the completion only
//   {"messages": [{"role", "content"}, ...]} chat template; loss on assistant turns only
//   {"input_ids": [...], "labels": [...]?}   pre-tokenised; labels default to the ids
// and, for a sequence classifier, "label": the class (beside "text" or "input_ids").
// Label rules follow TRL's SFTTrainer (its tokenization since v0.20; checked against trl/trainer/sft_trainer.py
// of 2026): text and completion get EOS (DatasetOptions::append_eos); conversations are labelled on assistant
// turns (tokenize_chat). One deliberate difference: a prompt and its completion are tokenized separately and
// concatenated, where TRL tokenizes prompt + completion together and masks len(tokenize(prompt)) tokens. The
// two agree unless BPE merges across the boundary ("Answer: " + "yes"); TRL then warns, and its first
// completion token is one the model never produces after that prompt at inference.
//
// Errors (all name the file, and the 1-based line where there is one). Kind corrupt: a line that is not
// JSON, not an object, has none (or more than one) of the key sets above, a field of the wrong type, or
// input_ids and labels of different lengths. Kind bad_input: a role other than system/user/assistant/tool,
// content holding a ChatML marker, an id outside [0, vocab), a line with no target tokens (every label the
// shifted loss reads, labels[1:], is -100 after truncation), a file with no examples, a text line without
// a tokenizer. Both give exit code 2 in the CLI.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <vector>

#include "wick/tokenizer.h"

namespace wick {

/// Label of a position that takes no loss (PyTorch's CrossEntropyLoss ignore_index).
inline constexpr int32_t kIgnoreLabel = -100;

/// One training sequence. labels[i] is the label of token ids[i], NOT shifted: as with a transformers
/// causal LM's `labels`, the loss shifts (position i predicts labels[i + 1]), so labels[0] never counts.
struct Example {
  std::vector<int32_t> ids;     // [len], 2 <= len <= seq_len
  std::vector<int32_t> labels;  // [len], a token id or kIgnoreLabel
  int64_t line = 0;             // 1-based line in the file
  int32_t class_label = -1;     // a sequence classifier's class (the line's "label"); -1 for a causal LM
};

struct DatasetOptions {
  int64_t seq_len = 0;  ///< keep the first seq_len tokens of each example (TRL's truncation_mode keep_start)
  /// Bound for pre-tokenised ids and labels; unset = the tokenizer's vocab_size(). Give the model's vocab
  /// (its embedding may be larger than the tokenizer's).
  std::optional<int32_t> vocab_size = std::nullopt;
  /// TRL appends the tokenizer's EOS token to `text` and to `completion` unless they already end with it
  /// (nothing is appended when the tokenizer names no eos_token). Conversations get none: the template
  /// closes each turn itself.
  bool append_eos = true;
  /// A sequence classifier's classes: every line must then carry "label", an integer in [0, num_labels), and the
  /// token labels are not read (the loss is the class at the last token). Unset: a causal LM ("label" ignored).
  std::optional<int64_t> num_labels = std::nullopt;
};

/// Reads every example of a JSONL file. `tokenizer` may be null only when every line is pre-tokenised
/// (then options.vocab_size is required). Whole examples are kept in memory.
std::vector<Example> load_jsonl(const std::filesystem::path& path, const Tokenizer* tokenizer,
                                const DatasetOptions& options);

/// Token ids of a conversation rendered with the tokenizer's chat template (no generation prompt), and
/// labels that are the ids on assistant turns and kIgnoreLabel elsewhere, as TRL's assistant_only_loss
/// gives them with a template whose generation block is `content + '<|im_end|>'`: for each assistant turn,
/// every token that overlaps the text from after "<|im_start|>assistant\n" to its "<|im_end|>" inclusive
/// (transformers' char_to_token rule). For Qwen3 templates that text includes the <think> block the
/// template writes. Only ChatML templates are supported (others are Error{unsupported}); content holding
/// "<|im_start|>" or "<|im_end|>" is Error{bad_input}, since it would move the turn boundaries.
struct ChatTokens {
  std::vector<int32_t> ids, labels;  // [len] each
};
ChatTokens tokenize_chat(const Tokenizer& tokenizer, const std::vector<ChatMessage>& messages);

/// Where a Batcher stands: `index` examples of epoch `epoch`'s order have been handed out. Save it with a
/// checkpoint and give it back to resume with the same batches.
struct BatchPosition {
  int64_t epoch = 0;
  int64_t index = 0;
  bool operator==(const BatchPosition&) const = default;
};

/// Cuts epochs of `num_examples` examples into batches of example indices. Without shuffle an epoch is
/// file order; with it, epoch e is a Fisher-Yates shuffle driven by std::mt19937_64(seed + e) with an
/// unbiased bounded draw of our own (std::shuffle and std::uniform_int_distribution differ between
/// standard libraries; mt19937_64 does not), so the order is the same on every platform. The last batch of
/// an epoch may be smaller (PyTorch DataLoader's drop_last=False); a batch never spans two epochs.
class Batcher {
 public:
  struct Options {
    int64_t batch_size = 1;
    bool shuffle = true;
    uint64_t seed = 0;
  };
  Batcher(int64_t num_examples, const Options& options, BatchPosition start = {});

  /// The next batch's example indices; moves the position (to {epoch + 1, 0} after an epoch's last batch).
  std::vector<int64_t> next();
  BatchPosition position() const { return position_; }
  /// Throws Error{bad_input} unless 0 <= epoch and 0 <= index < num_examples.
  void set_position(BatchPosition position);
  /// The order of epoch `epoch`: a permutation of 0..num_examples-1.
  std::vector<int64_t> epoch_order(int64_t epoch) const;

 private:
  int64_t num_examples_;
  Options options_;
  BatchPosition position_;
  int64_t order_epoch_ = -1;    // the epoch `order_` holds
  std::vector<int64_t> order_;  // [num_examples]
};

}  // namespace wick
