// The CPU backend's training ops (cpu_backward.cpp), and the helpers and work grains they share with
// cpu_backend.cpp. Private to src/backend/cpu/.
#pragma once

#include <cstdint>
#include <string>

#include "backend/backend.h"
#include "wick/error.h"

namespace wick::cpu {

// The least work per thread-pool task, below which waking another thread costs more than it saves:
constexpr int64_t kRowGrain = 4;                           // rows of a row-wise op (rmsnorm)
constexpr int64_t kTokenGrain = 8;                         // tokens of rope, each with all its heads
constexpr int64_t kElementGrain = int64_t(1) << 16;        // elements of an elementwise op
constexpr int64_t kAttentionGrainWork = int64_t(1) << 15;  // keys · head_dim of attention's (query, head) items

/// A shape check of op `op`: ErrorKind::internal "cpu <op>: <what>" when !ok (callers pass shapes in `what`).
inline void expect(bool ok, const char* op, const std::string& what) {
  if (!ok) fail(ErrorKind::internal, std::string("cpu ") + op + ": " + what);
}

/// Elements per row along dimension 0 (0 for an empty or rank-0 tensor).
inline int64_t row_size(const Tensor& t) { return t.rank() == 0 || t.dim(0) == 0 ? 0 : t.numel() / t.dim(0); }

// The Backend ops of the same names (backend.h documents shapes and semantics).
void matmul(const Tensor& a, const Tensor& b, Tensor& out, const MatmulParams& p);
void rmsnorm_backward(const Tensor& x, const Tensor& weight, float eps, const Tensor& d_out, Tensor& dx);
void swiglu_backward(const Tensor& gate, const Tensor& up, const Tensor& d_out, Tensor& d_gate, Tensor& d_up);
void attention_backward(const AttentionInputs& in, const Tensor& d_out, AttentionGrads grads, const AttentionParams& p);
double cross_entropy(const Tensor& logits, const Tensor& targets, float scale, Tensor& d_logits);
void embedding_backward(const Tensor& ids, const Tensor& d_out, Tensor& d_table);
void dropout(const Tensor& x, float p, uint64_t seed, Tensor& out);

}  // namespace wick::cpu
