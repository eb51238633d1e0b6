// Copies from global to shared memory that bypass the registers (cp.async, Ampere and later): the issuing thread
// does not wait for them, so a load that would otherwise hold a register (and make the compiler wait for it
// where it spills that register) costs the warp nothing until the copy is waited for.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace wick::cuda {

__device__ __forceinline__ uint32_t shared_address(const void* p) { return uint32_t(__cvta_generic_to_shared(p)); }

/// 16 bytes global → shared, cached in L2 only; zero-filled when !valid.
__device__ __forceinline__ void cp_async16(void* dst, const void* src, bool valid) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(shared_address(dst)), "l"(src),
               "r"(valid ? 16 : 0)
               : "memory");
}

/// 4, 8 or 16 bytes global → shared, through L1 (src and dst aligned to the size).
template <int Bytes>
__device__ __forceinline__ void cp_async_ca(void* dst, const void* src) {
  static_assert(Bytes == 4 || Bytes == 8 || Bytes == 16, "cp.async.ca copies 4, 8 or 16 bytes");
  asm volatile("cp.async.ca.shared.global [%0], [%1], %2;\n" ::"r"(shared_address(dst)), "l"(src), "n"(Bytes)
               : "memory");
}

/// Closes a group: the copies this thread issued since the last commit.
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }

/// Waits until at most N of this thread's committed groups are still in flight. What another thread copied is
/// visible to this one after both waited and synchronised (__syncwarp or a barrier).
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}

}  // namespace wick::cuda
