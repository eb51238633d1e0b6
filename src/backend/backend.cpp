#include "backend/backend.h"

#include <span>
#include <string>
#include <vector>

#include "wick/error.h"
#include "wick/logit_summary.h"

namespace wick {

LogitSummary Backend::summarize(const Tensor& logits, int32_t count, const std::vector<int32_t>& gather) {
  const Tensor row = device() == Device::cpu && logits.dtype() == DType::f32 ? logits : download(logits);
  return summarize_logits(std::span<const float>(row.data<float>(), size_t(row.numel())), count, gather);
}

// Declared again where the CUDA backend checks its arguments the same way (cuda_backend.cpp).
void check_summary_rows(const Tensor& logits, std::span<const std::vector<int32_t>> gather) {
  const char* op = "summarize_rows: ";
  if (logits.rank() != 2 || logits.dtype() != DType::f32)
    fail(ErrorKind::bad_input, op + std::string("logits must be f32 [rows, n], found ") + to_string(logits.shape()) +
                                   " " + std::string(to_string(logits.dtype())));
  const int64_t rows = logits.dim(0), n = logits.dim(1);
  if (!gather.empty() && int64_t(gather.size()) != rows)
    fail(ErrorKind::bad_input, op + std::string("gather lists: ") + std::to_string(gather.size()) + " for " +
                                   std::to_string(rows) + " rows (give none, or one per row)");
  std::string outside;  // the first few ids outside their row, with the count of the rest
  int64_t bad = 0;
  for (size_t r = 0; r < gather.size(); ++r)
    for (int32_t id : gather[r])
      if ((id < 0 || id >= n) && ++bad <= 4)
        outside += (outside.empty() ? "" : ", ") + std::to_string(id) + " (row " + std::to_string(r) + ")";
  if (bad > 4) outside += ", and " + std::to_string(bad - 4) + " more";
  if (bad)
    fail(ErrorKind::bad_input, op + std::string("gathered ids outside a row of ") + std::to_string(n) + ": " + outside);
}

std::vector<LogitSummary> Backend::summarize_rows(const Tensor& logits, int32_t count,
                                                  const std::vector<std::vector<int32_t>>& gather) {
  check_summary_rows(logits, gather);
  const Tensor host = device() == Device::cpu ? logits : download(logits);
  const int64_t rows = host.dim(0), n = host.dim(1);
  std::vector<LogitSummary> out;
  for (int64_t r = 0; r < rows; ++r)
    out.push_back(summarize_logits(std::span<const float>(host.data<float>() + r * n, size_t(n)), count,
                                   gather.empty() ? std::span<const int32_t>() : gather[size_t(r)]));
  return out;
}

namespace {

[[noreturn]] void no_training_op(const Backend& backend, const char* op) {
  fail(ErrorKind::unsupported, backend.name() + ": " + op + " (training) is not available on this backend yet");
}

[[noreturn]] void no_encoder_op(const Backend& backend, const char* op) {
  fail(ErrorKind::unsupported, backend.name() + ": " + op + " (encoders) is not available on this backend yet");
}

}  // namespace

void Backend::layer_norm(const Tensor&, const Tensor&, const Tensor&, const Tensor&, float, Tensor&) {
  no_encoder_op(*this, "layer_norm");
}
void Backend::gelu(const Tensor&, bool, Tensor&) { no_encoder_op(*this, "gelu"); }

void Backend::linear_gelu(const Tensor& x, const Tensor& w, const Tensor& bias, bool tanh, Tensor& out) {
  linear(x, w, bias, out);
  gelu(out, tanh, out);
}

void Backend::linear_stack(const Tensor& x, const Tensor& w, const Tensor& bias, Tensor& out) {
  const int64_t rows = x.rank() == 0 ? 0 : x.dim(0);
  const int64_t groups = rows == 0 || out.rank() == 0 ? 0 : out.dim(0) / rows;
  const int64_t outs = groups == 0 || w.rank() == 0 ? 0 : w.dim(0) / groups;
  if (rows == 0 || groups * rows != out.dim(0) || outs * groups != w.dim(0) || out.numel() != out.dim(0) * outs ||
      (bias.defined() && bias.numel() != groups * outs))
    fail(ErrorKind::internal, name() + " linear_stack: x " + to_string(x.shape()) + ", w " + to_string(w.shape()) +
                                  ", bias " + (bias.defined() ? to_string(bias.shape()) : std::string("none")) +
                                  ", out " + to_string(out.shape()) + " are not groups of one projection");
  for (int64_t g = 0; g < groups; ++g) {
    Tensor part = out.rows(g * rows, (g + 1) * rows);
    linear(x, w.rows(g * outs, (g + 1) * outs), bias.defined() ? bias.rows(g * outs, (g + 1) * outs) : Tensor(),
           part);
  }
}
void Backend::encoder_attention(const Tensor&, const Tensor&, const Tensor&, const EncoderSpans&, const RelativeBias&,
                                Tensor&, const AttentionParams&) {
  no_encoder_op(*this, "encoder_attention");
}
void Backend::encoder_pool(const Tensor&, const Tensor&, PoolMode, bool, Tensor&) { no_encoder_op(*this, "encoder_pool"); }

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
std::unique_ptr<Backend> make_cuda_backend(int index);
#endif

std::unique_ptr<Backend> make_backend(Device device, CpuWeights cpu_weights, int index) {
  if (device == Device::cpu) return make_cpu_backend(cpu_weights);
#ifdef WICK_WITH_CUDA
  return make_cuda_backend(index);
#else
  (void)index;
  fail(ErrorKind::unsupported, "--device cuda: this build of wick has no CUDA backend (configure with nvcc present)");
#endif
}

}  // namespace wick
