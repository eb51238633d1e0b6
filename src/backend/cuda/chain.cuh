// Chained launches (programmatic dependent launch, Hopper and later): a kernel of a decode step starts while the
// kernel before it finishes, so its weight loads overlap that kernel's tail instead of queueing behind it.
//
// The rules every chained kernel follows: it calls chain_release() (its successor may then launch as soon as all
// of this kernel's blocks have called it or exited; first thing, unless an early successor costs more than it
// gains), loads only what no earlier kernel of the step writes (weights, adapter factors) before chain_wait(),
// and reads any other kernel's output and writes anything only after it. chain_wait() returns once the kernel
// before has completed with its writes visible; as that kernel wrote nothing before its own wait, every earlier
// kernel has completed too. A kernel launched unchained (or after an ordinary kernel) behaves as usual:
// chain_wait() then returns at once.
#pragma once

#include <cuda_runtime.h>


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

/// Launches `kernel` with its one argument `arg`; `chained`: it may start before the kernel ahead of it in
/// `stream` ends (it must follow the rules above). Stream capture records the chain as a programmatic edge of the
/// graph. `cluster` > 1: in thread block clusters of that many blocks (grid.x a multiple of it, Hopper and later).
template <class... Params, class Arg>
cudaError_t launch_kernel(void (*kernel)(Params...), dim3 grid, dim3 block, size_t shared_bytes, cudaStream_t stream,
                          bool chained, const Arg& arg, int cluster = 1) {
  cudaLaunchAttribute attrs[2]{};
  unsigned n = 0;
  if (chained) {
    attrs[n].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attrs[n++].val.programmaticStreamSerializationAllowed = 1;
  }
  if (cluster > 1) {
    attrs[n].id = cudaLaunchAttributeClusterDimension;
    attrs[n++].val.clusterDim = {unsigned(cluster), 1, 1};
  }
  cudaLaunchConfig_t config{};
  config.gridDim = grid;
  config.blockDim = block;
  config.dynamicSmemBytes = shared_bytes;
  config.stream = stream;
  config.attrs = attrs;
  config.numAttrs = n;
  return cudaLaunchKernelEx(&config, kernel, arg);
}

}  // namespace wick::cuda
