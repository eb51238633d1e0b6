// BERT-family encoders as Hugging Face folders hold them: BertModel (MiniLM, E5, BGE, GTE), XLMRobertaModel and
// RobertaModel (multilingual E5), MPNetModel (relative-position buckets). Post-norm layers over a packed batch (no
// padding): x = LN(x + Wo·attention(x)); x = LN(x + W2·gelu(W1·x)). What the embedder (src/embed) pools.
#pragma once

#include <cstdint>
#include <filesystem>
#include <span>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "model/linear.h"

namespace wick {

/// Which family's embeddings and attention: BERT (absolute positions from 0, token types), RoBERTa / XLM-R
/// (positions from padding_idx + 1), MPNet (positions as RoBERTa, no token types, a relative-position bias).
enum class EncoderKind : uint8_t { bert, roberta, mpnet };

/// An encoder's config.json.
struct EncoderConfig {
  EncoderKind kind = EncoderKind::bert;
  std::string model_type;  ///< as config.json spells it ("bert", "xlm-roberta", "roberta", "mpnet")
  int64_t vocab_size = 0;
  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;
  int64_t num_layers = 0;
  int64_t num_heads = 0;
  int64_t head_dim = 0;
  int64_t max_position_embeddings = 512;
  int64_t type_vocab_size = 0;  ///< 0: no token-type embeddings (MPNet)
  double layer_norm_eps = 1e-12;
  bool gelu_tanh = false;                      ///< hidden_act gelu_new / gelu_pytorch_tanh (else the exact erf gelu)
  int32_t pad_token_id = 0;                    ///< RoBERTa and MPNet count positions from pad_token_id + 1 (MPNet: 1)
  int64_t relative_attention_num_buckets = 0;  ///< MPNet only

  /// Parses and validates a config.json; `source` names the file in error messages. A model_type wick does not
  /// implement is `unsupported`, naming the file and the field.
  static EncoderConfig parse(const std::string& json_text, const std::string& source);
  /// Reads `dir/config.json`.
  static EncoderConfig load(const std::filesystem::path& dir);

  /// The position of a sequence's first token (0 for BERT, pad_token_id + 1 otherwise).
  int64_t position_offset() const { return kind == EncoderKind::bert ? 0 : int64_t(pad_token_id) + 1; }
  /// The longest sequence the position table holds.
  int64_t max_sequence_length() const { return max_position_embeddings - position_offset(); }
};

/// Whether a config.json's model_type names an encoder this file implements (else a decoder, or nothing wick runs).
bool is_encoder_model_type(const std::string& model_type);

struct EncoderLayerWeights {
  Projection qkv;                             // q, k, v stacked (Backend::linear_stack): [3 · hidden, hidden] + bias
  Projection o;                               // [hidden, hidden] + bias
  Tensor attention_norm_w, attention_norm_b;  // [hidden]
  Projection up;                              // intermediate.dense [ffn, hidden] + bias
  Projection down;                            // output.dense [hidden, ffn] + bias
  Tensor output_norm_w, output_norm_b;        // [hidden]
};

struct EncoderWeights {
  Tensor word;                        // [vocab, hidden]
  Tensor position;                    // [max_position_embeddings, hidden]
  Tensor token_type;                  // [type_vocab_size, hidden], or undefined (MPNet)
  Tensor embed_norm_w, embed_norm_b;  // [hidden]
  Tensor relative_bias;               // [num_buckets, heads] (MPNet), or undefined
  std::vector<EncoderLayerWeights> layers;
};

/// An encoder on a backend. forward() is const and may run on several threads at once (CPU).
class Encoder {
 public:
  /// Loads `dir`: config.json and model.safetensors (or a sharded index), tensor names with or without the
  /// checkpoint's prefix ("bert.", "roberta.", "mpnet."); pooler and task heads ignored. Every expected tensor is
  /// checked before anything is uploaded; all problems in one error naming the folder. Weight matrices go through
  /// Backend::upload_weight (bf16 / int8 on the CPU as the backend keeps them), the rest in the compute dtype.
  static Encoder load(const std::filesystem::path& dir, Backend& backend);

  const EncoderConfig& config() const { return config_; }
  Backend& backend() const { return *backend_; }

  /// The last layer's hidden states of a packed batch, [rows, hidden] on the backend in its compute dtype.
  /// ids: the sequences' token ids one after another (with their special tokens); starts [sequences + 1]: sequence s
  /// is ids [starts[s], starts[s + 1]). bad_input for an id outside the vocabulary, an empty sequence, or one longer
  /// than the position table (max_sequence_length()).
  Tensor forward(std::span<const int32_t> ids, std::span<const int32_t> starts) const;

 private:
  Encoder(Backend& backend, EncoderConfig config, EncoderWeights weights);
  Backend* backend_;
  EncoderConfig config_;
  EncoderWeights weights_;
};

}  // namespace wick
