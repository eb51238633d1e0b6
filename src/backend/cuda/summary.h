// The logit summary on the device (summary.cu; wick/logit_summary.h): the best ids of each row of logits, its
// maximum and normaliser, and gathered logits, so that only a few hundred bytes a row cross to the host.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace wick::cuda {

/// Bytes of device workspace summarize() needs for `rows` rows of n logits and `count` best ids each, or -1 where
/// it cannot run (n ≥ 2^24, count above 256, more than 8192 candidates to merge a row: count · ⌈n / 4096⌉, or
/// more than 65535 rows).
int64_t summary_workspace_bytes(int64_t rows, int64_t n, int count);

struct SummaryParams {
  const float* logits = nullptr;           // [rows, n]
  int64_t rows = 1;
  int64_t n = 0;
  int count = 0;                           // best ids wanted of each row
  const int32_t* gather = nullptr;         // [gathered]: ids whose logits are wanted too, row after row
  const int32_t* gather_starts = nullptr;  // [rows + 1]: row r's are gather[gather_starts[r], gather_starts[r + 1])
  float* out = nullptr;                    // [rows · (2 + 2·count) + gathered]
  void* workspace = nullptr;               // summary_workspace_bytes(rows, n, count)
};
/// Row r's summary at out + r · (2 + 2·count) + gather_starts[r]: max, Σexp(l − max), the best `count` ids (as
/// floats, best first, ties to the lower id) and their logits, then the logits of its gathered ids. Two launches
/// for all the rows.
void summarize(const SummaryParams& p, cudaStream_t stream);

}  // namespace wick::cuda
