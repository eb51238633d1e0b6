// A Qwen2 model: configuration, weights on a backend, and the forward pass.
#pragma once

#include <filesystem>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "wick/config.h"
#include "wick/kv_cache.h"
#include "wick/logit_summary.h"
#include "wick/tensor.h"

namespace wick {

class Backend;
class LoraSource;
class LoraAdapter;

struct LoadOptions {
  Device device = Device::cpu;
  /// How the CPU backend holds the weight matrices (wick/dtype.h): as the file has them (bf16), f32, or quantised to
  /// 8 bits at load. The GPU ignores it (bf16).
  CpuWeights cpu_weights = CpuWeights::native;
  /// Threads of the CPU backend's loops, for the whole process (0: WICK_NUM_THREADS, else the CPUs in the process's
  /// affinity mask). Takes effect only before the process's first CPU work; a different count afterwards is
  /// bad_input.
  int cpu_threads = 0;
  /// Loads the body only, as ModelHead::none whatever config.json's architecture: no head is read (an embedder's
  /// folder, such as gte-Qwen2's, may say Qwen2ForCausalLM and hold none); only hidden_states() runs.
  bool hidden_states_only = false;
  /// Tensor parallelism: the model split over this many devices (CUDA: GPUs 0 … N − 1, joined by NCCL; the CPU:
  /// N ranks in one process, the reference), each holding its share of every layer (whole attention heads and KV
  /// heads, a slice of the MLP and of the vocabulary). The number must divide the attention heads, the KV heads and
  /// the MLP width (bad_input otherwise); unsupported, naming the GPU, when the machine has fewer GPUs, or when NCCL
  /// cannot join them within 60 s. On GPUs each GPU records its decode steps (the engine's: record_paged_steps; one
  /// sequence's one-token steps), the NCCL calls inside. Merging an adapter merges each rank's share into its share of
  /// the weights; exporting joins the shares back. A split model cannot train (unsupported); everything else is as on
  /// one device.
  int tensor_parallel = 1;
};

/// The new tokens of one sequence and the cache they extend (positions continue from cache->length()).
struct SequenceInput {
  std::span<const int32_t> tokens;
  KVCache* cache = nullptr;
};

/// The new tokens of one sequence whose keys and values live in a KVBlockPool (Model::forward_paged).
struct PagedSequence {
  std::span<const int32_t> tokens;   ///< new tokens, at positions past, past + 1, ...
  int64_t past = 0;                  ///< positions [0, past) are in the blocks already
  std::span<const int32_t> blocks;   ///< the block table: at least ⌈(past + tokens) / block_size⌉ block ids
  const LoraSource* lora = nullptr;  ///< this sequence's adapter (nullptr: the base model)
};

enum class LogitsFor {
  every_token,  ///< one row per input token, in input order
  last_token,   ///< one row per sequence, at its last new token
};

struct ForwardOptions {
  LogitsFor logits = LogitsFor::last_token;
  /// The LoRA adapter in effect (see DESIGN.md's single chokepoint); nullptr for the base model.
  const LoraSource* lora = nullptr;
};

/// A loaded Qwen2 model. forward() is const and may run on several threads at once for
/// different caches.
class Model {
 public:
  /// Loads a Hugging Face directory: config.json, generation_config.json (optional), and
  /// model.safetensors or a sharded model.safetensors.index.json. Every tensor is checked against
  /// the config before anything is allocated; all mismatches are reported in one error.
  /// On a GPU the model is warmed up before it is returned (a prefill and a recorded decode step), so that the first
  /// request runs as fast as later ones.
  static std::shared_ptr<Model> load(const std::filesystem::path& dir, const LoadOptions& options = {});
  ~Model();
  Model(const Model&) = delete;
  Model& operator=(const Model&) = delete;

  const ModelConfig& config() const;
  /// The devices the model is split over (LoadOptions::tensor_parallel; 1: one).
  int tensor_parallel() const;
  const GenerationDefaults& generation_defaults() const;
  Device device() const;
  /// The dtype the model keeps its activations (and KV cache) in on its device (f32 on the CPU, bf16 on CUDA).
  DType compute_dtype() const;
  /// The dtype of its weight matrices (projections, embedding, head): bf16 on CUDA; on the CPU q8_0 where
  /// LoadOptions::cpu_weights is int8, bf16 or f16 where the files hold that and it is native (read in place from the
  /// files' mapping), else f32.
  DType weight_dtype() const;
  /// A copy of a CPU tensor on the model's device in compute_dtype(): how an adapter's factors are made ready
  /// for this model.
  Tensor upload(const Tensor& host) const;

  /// An empty cache for up to `capacity` positions (≤ max_position_embeddings).
  KVCache make_cache(int64_t capacity) const;

  /// Runs each sequence's new tokens through the model, appending them to its cache, and returns
  /// CPU f32 logits: [rows, vocab] for a causal LM, [rows, num_labels] for a classifier, where rows
  /// follow options.logits. Fails with bad_input (and leaves every cache unchanged) when a token is
  /// outside the vocabulary or a cache would overflow; unsupported on a model without a head (ModelHead::none), as
  /// every pass that returns logits.
  Tensor forward(std::span<const SequenceInput> batch, const ForwardOptions& options = {}) const;

  /// The final-norm hidden states of every token (the head's input), each sequence run alone from position 0:
  /// CPU f32 [total tokens, hidden], the sequences' rows one after another. What an embedder pools (gte-Qwen2's and
  /// Qwen3-Embedding's last token). Runs on a model with or without a head; bad_input for an empty batch or
  /// sequence, a token outside the vocabulary, or a sequence longer than max_position_embeddings.
  Tensor hidden_states(std::span<const std::span<const int32_t>> sequences) const;

  /// An empty pool of `num_blocks` blocks of `block_size` positions each, for every layer, on the model's device.
  KVBlockPool make_block_pool(int64_t num_blocks, int64_t block_size) const;

  /// forward() for sequences whose keys and values are rows of `pool` named by their block tables, each with its
  /// own adapter (the batch may mix any adapters and none): every new token's keys and values are written into
  /// its block row, and each token attends to its sequence's positions [0, its own]. Logits as forward(): [rows,
  /// vocab] (or num_labels) CPU f32, rows per `logits`. Sequences may read the same blocks (a shared prefix) but
  /// no two may write one row. Validated whole before anything is written: bad_input for a token outside the
  /// vocabulary, a block table too short or naming a block outside the pool, a position past
  /// max_position_embeddings, a row written twice, or a pool of another model's shape; unsupported when
  /// sequences with different adapters would need different embeddings or heads (modules_to_save).
  Tensor forward_paged(KVBlockPool& pool, std::span<const PagedSequence> batch,
                       LogitsFor logits = LogitsFor::last_token) const;

  /// What forward_summary() summarizes, and what to do when the summary is not enough.
  struct SummaryRequest {
    int32_t count = 0;                 ///< the best ids to return
    std::vector<int32_t> gather = {};  ///< ids whose logits to return as well
    /// Called with the summary while the step's logits are still on the device; returning false has the whole
    /// row downloaded too (SummaryResult::row). Null: the summary is always enough. An exception it throws
    /// leaves forward_summary after the cache has advanced, as forward() would have left it.
    std::function<bool(const LogitSummary&)> enough = {};
  };
  struct SummaryResult {
    LogitSummary summary = {};
    Tensor row = {};  ///< the last token's logits, [1, vocab] CPU f32, when `enough` returned false; else undefined
  };
  /// forward() for one sequence that returns, instead of its last token's logits, their summary
  /// (wick/logit_summary.h), reduced where the logits are: on a GPU only the summary crosses to the host.
  SummaryResult forward_summary(const SequenceInput& input, const ForwardOptions& options,
                                const SummaryRequest& request) const;

  /// How forward_paged_read reads the logits of one sequence of its batch (its last new token's row).
  struct RowRead {
    bool wanted = true;             ///< false: nothing of the row is read (a prefill chunk short of its prompt's end)
    /// count > 0: the row's summary, reduced on the device together with the other rows' (its `enough` called
    /// once with it; returning false has the whole row downloaded too). count 0: the whole row.
    SummaryRequest summary = {};
  };
  /// forward_paged() whose rows are read as `reads` says, one per sequence: on a GPU the summaries of every row
  /// cross to the host in one copy, and whole rows only where asked for. Result r: row r's summary (count > 0)
  /// and its logits [1, vocab] CPU f32 when the whole row was asked for or its summary was not enough; nothing for
  /// rows not wanted. Validated as forward_paged(), and bad_input when reads and batch differ in length. An
  /// exception an `enough` throws leaves after every block row was written.
  std::vector<SummaryResult> forward_paged_read(KVBlockPool& pool, std::span<const PagedSequence> batch,
                                                std::span<const RowRead> reads) const;

  /// Records the decode steps of batches of up to `rows` sequences over `pool` (on a GPU: CUDA graphs, with and
  /// without adapters), so that an engine's first decode steps run as fast as its later ones. Nothing on the CPU.
  void record_paged_steps(KVBlockPool& pool, int64_t rows) const;
  /// How many decode steps of paged batches were recorded as graphs so far (each replayed for every later step of
  /// its batch size, context range and with or without adapters). Always 0 on the CPU.
  int64_t paged_graphs_recorded() const;

  /// How many one-token decode steps were recorded as CUDA graphs so far: per KV cache in use (a few are
  /// kept), one for the base model and one for any unmerged adapter, each replayed for every later step.
  /// Swapping adapters records none (the graph reads the adapter from device memory); merging or unmerging
  /// one does (the weights move). A split model: each rank's (its steps without an adapter, over NCCL). Always 0
  /// on the CPU.
  int64_t decode_graphs_recorded() const;

  /// The LoRA adapter in effect for new requests (nullptr: the base model). Setting it is a pointer
  /// exchange (which returns the one that was in effect); a request that took a snapshot keeps its adapter
  /// while another thread swaps.
  std::shared_ptr<const LoraSource> active_lora() const;
  std::shared_ptr<const LoraSource> set_active_lora(std::shared_ptr<const LoraSource> lora);

  /// Folds `lora` into the weights: W + scale·B·A in new tensors for every projection it has factors for, its
  /// replaced head or embedding swapped in; the base tensors are kept, so unmerge_lora() restores them
  /// bit-exactly. The sum is taken in f32 and stored in the weights' dtype: rounded once to bf16, or on 8-bit weights
  /// (CpuWeights::int8) quantised again — q8_0 of (the dequantised W + scale·B·A), each value within half its
  /// block's new step of that sum, so the merged model is near the unmerged one (the adapter exact on top of the
  /// 8-bit weights), not equal to it. Waits for forward passes in flight and forgets recorded decode steps (they
  /// read the old tensors). bad_input, changing nothing, when an adapter is already merged. A split model merges each
  /// rank's share of the adapter into its share of the weights. (merge_adapter() is the checked form for a
  /// LoraAdapter.)
  void merge_lora(std::shared_ptr<const LoraSource> lora);
  /// Puts the base tensors back; returns what was merged (or nullptr).
  std::shared_ptr<const LoraSource> unmerge_lora();
  /// What is folded into the weights, or nullptr.
  std::shared_ptr<const LoraSource> merged_lora() const;

  /// Puts `adapter` in effect for new requests, unmerged (through the LoRA chokepoint): a pointer
  /// exchange that leaves the base weights alone. Fails with bad_input, changing nothing, when the
  /// adapter was made for a model of another shape or device.
  void apply_adapter(std::shared_ptr<const LoraAdapter> adapter);
  /// Back to the base model for new requests; returns the adapter that was in effect (or nullptr).
  std::shared_ptr<const LoraAdapter> remove_adapter();
  /// Whether an adapter is in effect unmerged (a merged one is part of the weights).
  bool has_adapter() const;
  /// The adapter in effect unmerged, or nullptr; info() gives its name, rank, alpha, targets and size.
  std::shared_ptr<const LoraAdapter> current_adapter() const;

  /// Folds `adapter` into the base weights (W + scale·B·A in new tensors, stored as merge_lora() says; saved modules
  /// replace theirs) for adapter-free speed. The base tensors are kept, so unmerge_adapter() restores them bit-exactly.
  /// Waits for forward passes in flight; requests still running see the merged weights from their next
  /// step. bad_input, changing nothing, when an adapter is already merged or the shapes differ.
  void merge_adapter(std::shared_ptr<const LoraAdapter> adapter);
  /// Puts the base tensors back; returns the adapter that was merged (or nullptr when none was).
  std::shared_ptr<const LoraAdapter> unmerge_adapter();
  /// The adapter folded into the weights, or nullptr.
  std::shared_ptr<const LoraAdapter> merged_adapter() const;

  /// Every tensor of the model as a Hugging Face directory stores it, by name (in a fixed order), as CPU f32 copies
  /// of the weights as they are now (a merged adapter included; a tied lm_head is the embedding, not listed). A split
  /// model's ranks' shares are joined back into the whole tensors.
  std::vector<std::pair<std::string, Tensor>> state_dict() const;

  /// Writes the weights as they are now (a merged adapter included) as a Hugging Face directory that
  /// transformers loads: config.json (dtype float32), generation_config.json when the model has one,
  /// and model.safetensors in f32 (state_dict()).
  void save_pretrained(const std::filesystem::path& dir) const;

  /// The CLI's `wick logits`: a fresh cache per row; a causal LM returns [rows, len, vocab] (rows of
  /// equal length), a classifier [rows, num_labels] scored at each row's own last token.
  Tensor logits(const std::vector<std::vector<int32_t>>& rows, const LoraSource* lora = nullptr) const;

  struct Impl;  // src/model/model_impl.h

 private:
  friend struct ModelTraining;  // src/model/training.h: the training passes of the train layer
  explicit Model(std::unique_ptr<Impl> impl);
  // One prefill and one decode step, results discarded: the first pass's one-time costs paid at load.
  void warm_up() const;
  std::unique_ptr<Impl> impl_;
};

}  // namespace wick
