#include "backend/backend.h"

#include "wick/error.h"
#include "wick/logit_summary.h"

namespace wick {

LogitSummary Backend::summarize(const Tensor& logits, int32_t count, const std::vector<int32_t>& gather) {
  const Tensor row = device() == Device::cpu && logits.dtype() == DType::f32 ? logits : download(logits);
  return summarize_logits(std::span<const float>(row.data<float>(), size_t(row.numel())), count, gather);
}

namespace {

[[noreturn]] void no_training_op(const Backend& backend, const char* op) {
  fail(ErrorKind::unsupported, backend.name() + ": " + op + " (training) is not available on this backend yet");
}

}  // namespace

void Backend::matmul(const Tensor&, const Tensor&, Tensor&, const MatmulParams&) { no_training_op(*this, "matmul"); }
void Backend::rmsnorm_backward(const Tensor&, const Tensor&, float, const Tensor&, Tensor&) {
  no_training_op(*this, "rmsnorm_backward");
}
void Backend::rope_backward(Tensor&, const Tensor&, double) { no_training_op(*this, "rope_backward"); }
void Backend::swiglu_backward(const Tensor&, const Tensor&, const Tensor&, Tensor&, Tensor&) {
  no_training_op(*this, "swiglu_backward");
}
void Backend::attention_backward(const AttentionInputs&, const Tensor&, AttentionGrads, const AttentionParams&) {
  no_training_op(*this, "attention_backward");
}
double Backend::cross_entropy(const Tensor&, const Tensor&, float, Tensor&) { no_training_op(*this, "cross_entropy"); }
void Backend::embedding_backward(const Tensor&, const Tensor&, Tensor&) { no_training_op(*this, "embedding_backward"); }
void Backend::dropout(const Tensor&, float, uint64_t, Tensor&) { no_training_op(*this, "dropout"); }

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
