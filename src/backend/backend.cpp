#include "backend/backend.h"

#include "wick/error.h"
#include "wick/logit_summary.h"

namespace wick {

LogitSummary Backend::summarize(const Tensor& logits, int32_t count, const std::vector<int32_t>& gather) {
  const Tensor row = device() == Device::cpu && logits.dtype() == DType::f32 ? logits : download(logits);
  return summarize_logits(std::span<const float>(row.data<float>(), size_t(row.numel())), count, gather);
}

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
