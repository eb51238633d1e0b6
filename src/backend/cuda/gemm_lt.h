// bf16 GEMMs through cuBLASLt with the bias in the epilogue, and several projections of one input in one launch
// (strided batches): the encoder's linears, where a separate bias pass over the output costs as much as a
// third of the GEMM.
#pragma once

#include <cublasLt.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <map>
#include <memory>
#include <tuple>

namespace wick::cuda {

struct LtLinear {
  const void* x = nullptr;     // [rows, in] bf16
  const void* w = nullptr;     // [groups · outs, in] bf16: `groups` stacked projections
  const void* bias = nullptr;  // [groups · outs] bf16, or null
  void* out = nullptr;         // [groups · rows, outs] bf16: group g's rows at g · rows
  int64_t rows = 0, in = 0, outs = 0, groups = 1;
  bool gelu_tanh = false;  // GELU (the tanh approximation) after the bias, in the epilogue
};

/// A cuBLASLt handle with the descriptors and the algorithm it picked for each shape, kept (up to kMaxPlans shapes,
/// then forgotten all at once): a shape costs one heuristic query, the first time. Uses the caller's workspace; not thread-safe (one per backend, used on its
/// stream).
class LtGemm {
 public:
  LtGemm(void* workspace, size_t workspace_bytes);
  ~LtGemm();
  LtGemm(const LtGemm&) = delete;
  LtGemm& operator=(const LtGemm&) = delete;

  /// Queues out = x · Wᵀ (+ bias) (→ GELU) for each group on `stream`; false (nothing queued) where cuBLASLt has no
  /// algorithm for the shape, so that the caller can take another path.
  bool run(const LtLinear& p, cudaStream_t stream);

 private:
  struct Plan;
  // rows, in, outs, groups, bias, gelu, and the alignments of W, x and out the algorithm may assume
  using Key = std::tuple<int64_t, int64_t, int64_t, int64_t, bool, bool, uint32_t, uint32_t, uint32_t>;
  static constexpr size_t kMaxPlans = 1024;
  // The descriptors of one shape and the algorithm cuBLASLt's heuristic picks for it (found false: none).
  std::unique_ptr<Plan> plan(const LtLinear& p, uint32_t align_a, uint32_t align_b, uint32_t align_d) const;
  cublasLtHandle_t handle_ = nullptr;
  void* workspace_;
  size_t workspace_bytes_;
  std::map<Key, std::unique_ptr<Plan>> plans_;
};

}  // namespace wick::cuda
