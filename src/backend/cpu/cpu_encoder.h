// The CPU backend's encoder ops (cpu_encoder.cpp): BERT-family layers and sentence-embedding pooling. Private to
// src/backend/cpu/.
#pragma once

#include <cstdint>

#include "backend/backend.h"

namespace wick::cpu {

// The Backend ops of the same names (backend.h documents shapes and semantics).
void layer_norm(const Tensor& x, const Tensor& residual, const Tensor& weight, const Tensor& bias, float eps,
                Tensor& out);
void gelu(const Tensor& x, bool tanh, Tensor& out);
void encoder_attention(const Tensor& q, const Tensor& k, const Tensor& v, const EncoderSpans& spans,
                       const RelativeBias& bias, Tensor& out, const AttentionParams& p);
void encoder_pool(const Tensor& x, const Tensor& spans, PoolMode mode, bool normalize, Tensor& out);

/// transformers' MPNet relative_position_bucket for one relative position (key − query), in its arithmetic: half
/// the buckets for each sign, exact below a quarter of them, logarithmic up to max_distance, the log taken in f32.
int64_t relative_position_bucket(int64_t relative_position, int64_t num_buckets, int64_t max_distance);

}  // namespace wick::cpu
