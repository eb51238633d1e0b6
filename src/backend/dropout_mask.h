// The dropout mask every backend draws: a pure function of (seed, element index), so the forward, its backward and a
// recomputed forward (gradient checkpointing) see the same mask without storing it, on any backend and any number of
// threads. Element i is kept when a 24-bit uniform drawn from splitmix64(seed + i·golden) is ≥ p.
#pragma once

#include <cstdint>

#if defined(__CUDACC__)
#define WICK_HOST_DEVICE __host__ __device__
#else
#define WICK_HOST_DEVICE
#endif

namespace wick {

WICK_HOST_DEVICE inline bool dropout_keeps(uint64_t seed, uint64_t index, float p) {
  uint64_t z = seed + (index + 1) * 0x9E3779B97F4A7C15ull;  // splitmix64
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  z ^= z >> 31;
  return float(z >> 40) * 0x1.0p-24f >= p;
}

}  // namespace wick
