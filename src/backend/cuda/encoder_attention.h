// Bidirectional attention within each sequence of a packed batch on tensor cores (encoder_attention.cu): the
// attention of BERT-family encoders, with MPNet's relative-position bias.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace wick::cuda {

struct EncoderAttentionParams {
  const void* q = nullptr;          // [rows, heads, head_dim] bf16
  const void* k = nullptr;          // [rows, kv_heads, head_dim] bf16, 16-byte aligned
  const void* v = nullptr;          // as k
  const int32_t* starts = nullptr;  // [sequences + 1] on the device: sequence s is rows [starts[s], starts[s + 1])
  void* out = nullptr;              // [rows, heads · head_dim] bf16
  int64_t rows = 0, sequences = 0;
  int64_t max_len = 0;  // the longest sequence; a longer one is cut to it, its later rows unwritten (callers validate)
  int64_t heads = 0, kv_heads = 0, head_dim = 0;
  float scale = 1.0f;
  // The relative-position bias, or null: table [num_buckets, heads] bf16, added to the score of query i and key j
  // at bucket(j − i) (transformers' MPNet relative_position_bucket).
  const void* bias = nullptr;
  int64_t num_buckets = 0, max_distance = 0;
};

/// The longest sequence the kernel takes with a relative bias: its block keeps the bias of every distance
/// (2·max_len − 1 floats of shared memory, 32 KB at this length). Without a bias, any length.
constexpr int64_t kEncoderMaxBiasLen = 4096;

/// Whether encoder_attention takes these shapes: head_dim a multiple of 16 up to 128, and with a relative bias
/// max_len at most kEncoderMaxBiasLen.
bool encoder_attention_supports(const EncoderAttentionParams& p);

/// Queues the attention; false (nothing launched) where encoder_attention_supports says no.
bool encoder_attention(const EncoderAttentionParams& p, cudaStream_t stream);

}  // namespace wick::cuda
