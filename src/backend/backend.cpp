#include "backend/backend.h"

#include "wick/error.h"

namespace wick {

#ifdef WICK_WITH_CUDA
std::unique_ptr<Backend> make_cuda_backend();
#endif

std::unique_ptr<Backend> make_backend(Device device) {
  if (device == Device::cpu) return make_cpu_backend();
#ifdef WICK_WITH_CUDA
  return make_cuda_backend();
#else
  fail(ErrorKind::unsupported, "--device cuda: this build of wick has no CUDA backend (configure with nvcc present)");
#endif
}

}  // namespace wick
