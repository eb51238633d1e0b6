// The logit summary on the device (summary.cu; wick/logit_summary.h): the best ids of a row of logits, its maximum
// and normaliser, and gathered logits, so that only a few hundred bytes of the row cross to the host.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace wick::cuda {

/// Bytes of device workspace summarize() needs for a row of n logits and `count` best ids, or -1 where it cannot
/// run (n ≥ 2^24, count above 256, or more than 8192 candidates to merge: count · ⌈n / 4096⌉).
int64_t summary_workspace_bytes(int64_t n, int count);

struct SummaryParams {
  const float* logits = nullptr;   // [n]
  int64_t n = 0;
  int count = 0;                   // best ids wanted
  const int32_t* gather = nullptr; // [gathered] ids whose logits are wanted too
  int64_t gathered = 0;
  float* out = nullptr;            // [2 + 2·count + gathered]
  void* workspace = nullptr;       // summary_workspace_bytes(n, count)
};
/// out: max, Σexp(l − max), the best `count` ids (as floats, best first, ties to the lower id) and their logits,
/// then logits[gather[i]].
void summarize(const SummaryParams& p, cudaStream_t stream);

}  // namespace wick::cuda
