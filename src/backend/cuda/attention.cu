// cuda::attention: the dispatch between the two attention kernels by the number of queries.
#include "backend/cuda/attention.h"

#include "backend/cuda/attention_decode.h"
#include "backend/cuda/attention_prefill.h"

namespace wick::cuda {

namespace {

// Up to this many queries take split-K decoding, which spreads the keys over blocks; the tensor-core kernel spreads
// 64-query tiles, which a few queries would leave mostly idle.
constexpr int64_t kDecodeQueries = 4;

}  // namespace

bool attention(const void* q, const void* k, const void* v, const int32_t* positions, void* out,
               const AttentionShape& s, cudaStream_t stream) {
  if (s.queries == 0) return true;
  // attention_prefill declines the head dims it is not built for (above kPrefillMaxHeadDim): decoding takes those.
  if (s.queries > kDecodeQueries && attention_prefill(q, k, v, positions, out, s, stream)) return true;
  return attention_decode(q, k, v, positions, out, s, stream);
}

}  // namespace wick::cuda
