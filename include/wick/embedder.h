// Sentence embeddings from Hugging Face folders as they are: sentence-transformers folders (modules.json with a
// Transformer, a Pooling and optionally a Normalize module; sentence_bert_config.json; prompts from
// config_sentence_transformers.json) around a BERT-family encoder (BertModel, XLMRobertaModel, RobertaModel,
// MPNetModel) or a Qwen2 decoder (last-token pooling, as gte-Qwen2 does), and plain model folders (mean pooling, as
// sentence-transformers makes for them). embed() gives what SentenceTransformer.encode gives, in f32.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "wick/dtype.h"
#include "wick/tensor.h"

namespace wick {

/// How a sequence's token vectors become one vector (sentence-transformers' Pooling modes wick implements).
enum class EmbedPooling : uint8_t {
  mean,        ///< pooling_mode_mean_tokens: the mean over the tokens
  max,         ///< pooling_mode_max_tokens: the elementwise max
  cls,         ///< pooling_mode_cls_token: the first token
  last_token,  ///< pooling_mode_lasttoken: the last token (decoder embedders)
};

struct EmbedderOptions {
  Device device = Device::cpu;
  /// How the CPU keeps the weight matrices (wick/dtype.h): as the files hold them, f32, or 8-bit.
  CpuWeights cpu_weights = CpuWeights::native;
  /// Threads of the CPU loops for the whole process (0: WICK_NUM_THREADS, else the CPUs of the affinity mask); as
  /// LoadOptions::cpu_threads.
  int cpu_threads = 0;
  /// The most token rows of one forward pass: texts, sorted by length, are packed into passes of at most this many
  /// tokens without padding (a text longer than it runs alone).
  int64_t batch_tokens = 16384;
};

struct EmbedOptions {
  /// A prompt of prompts() by name, prepended to every text. Unset: the folder's default_prompt_name, if any.
  std::optional<std::string> prompt_name = std::nullopt;
  /// A prompt given literally; it wins over prompt_name (as in sentence-transformers).
  std::optional<std::string> prompt = std::nullopt;
  /// Texts beyond max_seq_length() tokens (special tokens and prompt included) are truncated, as
  /// sentence-transformers does; false: such a text is bad_input, naming it.
  bool truncate = true;
  /// Matryoshka: keep the first `dimensions` of each embedding (0: all), then renormalise it to unit length when the
  /// model normalises (sentence-transformers' truncate_dim cuts without renormalising). bad_input above dimension().
  int64_t dimensions = 0;
};

/// A loaded embedding model. Immutable after load; embed() may run on several threads at once on the CPU.
class Embedder {
 public:
  /// Loads a sentence-transformers folder, or a plain Hugging Face model folder (config.json, model.safetensors,
  /// tokenizer.json). Errors name the file and the field: unsupported for a model_type, a pooling mode (weighted
  /// mean, mean-sqrt-len, several at once) or a module (Dense, ...) wick does not implement; not_found for a missing
  /// file or weight tensor; corrupt for a malformed one.
  static Embedder load(const std::filesystem::path& dir, const EmbedderOptions& options = {});
  ~Embedder();
  Embedder(Embedder&&) noexcept;
  Embedder& operator=(Embedder&&) noexcept;

  /// The length of an embedding.
  int64_t dimension() const;
  /// Where the model runs (EmbedderOptions::device).
  Device device() const;
  /// The most tokens of a text, special tokens and prompt included (sentence_bert_config.json's max_seq_length, else
  /// the least of the model's positions and the tokenizer's model_max_length).
  int64_t max_seq_length() const;
  EmbedPooling pooling() const;
  /// Whether embeddings are normalised to unit length (a Normalize module).
  bool normalizes() const;
  /// The folder's prompts by name (config_sentence_transformers.json), e.g. {"query": "query: "}.
  const std::map<std::string, std::string>& prompts() const;
  /// The prompt used when EmbedOptions names none, if the folder sets one.
  const std::optional<std::string>& default_prompt_name() const;

  /// One embedding per text, in order: CPU f32 [texts, dimension (or options.dimensions)]. Each text gets the prompt
  /// prepended, is tokenized as it is (whitespace around it kept, as sentence-transformers 6 keeps it; earlier
  /// releases stripped it) with its special tokens and truncated to max_seq_length() (an empty text: the special
  /// tokens alone). bad_input, naming the text by index: invalid UTF-8, an unknown prompt_name, a text over
  /// max_seq_length() with truncate false, or dimensions outside [0, dimension()].
  Tensor embed(const std::vector<std::string>& texts, const EmbedOptions& options = {}) const;

  /// One embedding per sequence of token ids as the tokenizer gives them (special tokens included; no prompt is
  /// added, nothing truncated): CPU f32 [sequences, dimension (or dimensions)]; an empty sequence embeds as zeros, as
  /// an empty text does with a tokenizer that adds no special tokens. bad_input for an id outside the vocabulary or a
  /// sequence over max_seq_length().
  Tensor embed_ids(const std::vector<std::vector<int32_t>>& ids, int64_t dimensions = 0) const;

  /// The token ids embed() runs for one text with these options (prompt, special tokens, truncation).
  std::vector<int32_t> tokenize(const std::string& text, const EmbedOptions& options = {}) const;

  struct Impl;  // src/embed/embedder_impl.h

 private:
  explicit Embedder(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace wick
