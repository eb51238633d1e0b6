// Chained launches (programmatic dependent launch, Hopper and later): a kernel of a decode step starts while the
// kernel before it finishes, so its weight loads overlap that kernel's tail instead of queueing behind it.
//
// The rules every chained kernel follows: it calls chain_release() first (its successor may then launch as soon
// as all of this kernel's blocks are running), loads only what no earlier kernel of the step writes (weights,
// adapter factors) before chain_wait(), and reads any other kernel's output and writes anything only after it.
// chain_wait() returns once the kernel before has completed with its writes visible; as that kernel wrote
// nothing before its own wait, every earlier kernel has completed too. A kernel launched unchained (or after an
// ordinary kernel) behaves as usual: chain_wait() then returns at once.
#pragma once

#include <cuda_runtime.h>

#include <utility>

namespace wick::cuda {

/// Lets the next kernel in the stream, if launched chained, start once every block of this one is running.
__device__ __forceinline__ void chain_release() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}

/// Waits until the kernel before this one (if this one was launched chained) has completed and its writes are
/// visible.
__device__ __forceinline__ void chain_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}

/// Launches `kernel`; `chained`: it may start before the kernel ahead of it in `stream` ends (it must follow
/// the rules above). Stream capture records the chain as a programmatic edge of the graph.
template <class... Params, class... Args>
cudaError_t launch_kernel(void (*kernel)(Params...), dim3 grid, dim3 block, size_t shared_bytes, cudaStream_t stream,
                          bool chained, Args&&... args) {
  cudaLaunchAttribute attr{};
  attr.id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr.val.programmaticStreamSerializationAllowed = 1;
  cudaLaunchConfig_t config{};
  config.gridDim = grid;
  config.blockDim = block;
  config.dynamicSmemBytes = shared_bytes;
  config.stream = stream;
  config.attrs = &attr;
  config.numAttrs = chained ? 1 : 0;
  return cudaLaunchKernelEx(&config, kernel, std::forward<Args>(args)...);
}

}  // namespace wick::cuda
