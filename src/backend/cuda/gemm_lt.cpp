// cuBLASLt GEMMs with fused epilogues (gemm_lt.h). Row-major out[rows, outs] = x[rows, in] · W[outs, in]ᵀ is the
// column-major outᵀ = W · xᵀ: A = W read transposed, B = x, the bias along outᵀ's rows (m = outs), as cuBLASLt's
// BIAS epilogue broadcasts it.
#include "backend/cuda/gemm_lt.h"

#include <utility>

#include "backend/cuda/cublas_api.h"
#include "backend/cuda/cuda_check.h"

namespace wick::cuda {

namespace {

template <typename T>
void set(cublasLtMatmulDesc_t d, cublasLtMatmulDescAttributes_t a, const T& v) {
  check(cublas().lt_desc_set_attribute(d, a, &v, sizeof(v)), "cublasLtMatmulDescSetAttribute");
}

template <typename T>
void set(cublasLtMatrixLayout_t l, cublasLtMatrixLayoutAttribute_t a, const T& v) {
  check(cublas().lt_layout_set_attribute(l, a, &v, sizeof(v)), "cublasLtMatrixLayoutSetAttribute");
}

cublasLtMatrixLayout_t layout(uint64_t rows, uint64_t cols, int64_t ld, int32_t batches, int64_t batch_stride) {
  cublasLtMatrixLayout_t l = nullptr;
  check(cublas().lt_layout_create(&l, CUDA_R_16BF, rows, cols, ld), "cublasLtMatrixLayoutCreate");
  if (batches > 1) {
    set(l, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, batches);
    set(l, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, batch_stride);
  }
  return l;
}

// The alignment cuBLASLt may assume of a matrix: the largest power of two, up to its default 256, dividing its address
// and every stride it steps by (leading dimension, batch), in bytes. Views (rows of a stacked tensor, a batch of
// rows) need not be 256-byte aligned; an algorithm picked for an alignment the pointers lack would be refused.
uint32_t alignment(const void* p, int64_t ld_bytes, int64_t batch_bytes) {
  const uint64_t bits = uint64_t(reinterpret_cast<uintptr_t>(p)) | uint64_t(ld_bytes) | uint64_t(batch_bytes) | 256u;
  return uint32_t(bits & (~bits + 1));
}

}  // namespace

struct LtGemm::Plan {
  cublasLtMatmulDesc_t op = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, d = nullptr;
  cublasLtMatmulAlgo_t algo{};
  bool found = false;
  ~Plan() {
    if (d) cublas().lt_layout_destroy(d);
    if (b) cublas().lt_layout_destroy(b);
    if (a) cublas().lt_layout_destroy(a);
    if (op) cublas().lt_desc_destroy(op);
  }
};

LtGemm::LtGemm(void* workspace, size_t workspace_bytes) : workspace_(workspace), workspace_bytes_(workspace_bytes) {
  check(cublas().lt_create(&handle_), "cublasLtCreate");
}

LtGemm::~LtGemm() {
  plans_.clear();
  cublas().lt_destroy(handle_);
}

std::unique_ptr<LtGemm::Plan> LtGemm::plan(const LtLinear& p, uint32_t align_a, uint32_t align_b,
                                           uint32_t align_d) const {
  auto plan = std::make_unique<Plan>();
  Plan& q = *plan;
  check(cublas().lt_desc_create(&q.op, CUBLAS_COMPUTE_32F, CUDA_R_32F), "cublasLtMatmulDescCreate");
  set(q.op, CUBLASLT_MATMUL_DESC_TRANSA, CUBLAS_OP_T);
  set(q.op, CUBLASLT_MATMUL_DESC_TRANSB, CUBLAS_OP_N);
  cublasLtEpilogue_t epilogue = CUBLASLT_EPILOGUE_DEFAULT;
  if (p.bias) epilogue = p.gelu_tanh ? CUBLASLT_EPILOGUE_GELU_BIAS : CUBLASLT_EPILOGUE_BIAS;
  else if (p.gelu_tanh) epilogue = CUBLASLT_EPILOGUE_GELU;
  set(q.op, CUBLASLT_MATMUL_DESC_EPILOGUE, epilogue);
  if (p.bias) {
    set(q.op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, p.bias);  // each call sets its own
    if (p.groups > 1) set(q.op, CUBLASLT_MATMUL_DESC_BIAS_BATCH_STRIDE, int64_t(p.outs));
  }
  const auto groups = int32_t(p.groups);
  q.a = layout(uint64_t(p.in), uint64_t(p.outs), p.in, groups, p.outs * p.in);
  q.b = layout(uint64_t(p.in), uint64_t(p.rows), p.in, groups, 0);  // every group reads the same x
  q.d = layout(uint64_t(p.outs), uint64_t(p.rows), p.outs, groups, p.rows * p.outs);
  cublasLtMatmulPreference_t raw = nullptr;
  check(cublas().lt_preference_create(&raw), "cublasLtMatmulPreferenceCreate");
  const std::unique_ptr<cublasLtMatmulPreferenceOpaque_t, cublasStatus_t (*)(cublasLtMatmulPreference_t)> pref(
      raw, cublas().lt_preference_destroy);
  const uint64_t bytes = workspace_bytes_;
  check(cublas().lt_preference_set_attribute(raw, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &bytes, sizeof(bytes)),
        "cublasLtMatmulPreferenceSetAttribute");
  for (const auto& [attribute, align] : {std::pair{CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, align_a},
                                        std::pair{CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, align_b},
                                        std::pair{CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, align_d},
                                        std::pair{CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, align_d}})
    check(cublas().lt_preference_set_attribute(raw, attribute, &align, sizeof(align)),
          "cublasLtMatmulPreferenceSetAttribute");
  cublasLtMatmulHeuristicResult_t result{};
  int found = 0;
  const cublasStatus_t status =
      cublas().lt_algo_get_heuristic(handle_, q.op, q.a, q.b, q.d, q.d, raw, 1, &result, &found);
  q.found = status == CUBLAS_STATUS_SUCCESS && found > 0;
  if (q.found) q.algo = result.algo;
  return plan;
}

bool LtGemm::run(const LtLinear& p, cudaStream_t stream) {
  constexpr int64_t kBf16 = 2;
  const bool batched = p.groups > 1;
  const uint32_t align_a = alignment(p.w, p.in * kBf16, batched ? p.outs * p.in * kBf16 : 0);
  const uint32_t align_b = alignment(p.x, p.in * kBf16, 0);
  const uint32_t align_d = alignment(p.out, p.outs * kBf16, batched ? p.rows * p.outs * kBf16 : 0);
  const Key key{p.rows, p.in, p.outs, p.groups, p.bias != nullptr, p.gelu_tanh, align_a, align_b, align_d};
  auto it = plans_.find(key);
  if (it == plans_.end()) {
    // Packed batches of texts give a new row count almost every call: the plans stay bounded (a query is ~10 µs).
    if (plans_.size() >= kMaxPlans) plans_.clear();
    it = plans_.emplace(key, plan(p, align_a, align_b, align_d)).first;
  }
  const Plan& chosen = *it->second;
  if (!chosen.found) return false;
  if (p.bias) set(chosen.op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, p.bias);
  const float alpha = 1.0f, beta = 0.0f;
  check(cublas().lt_matmul(handle_, chosen.op, &alpha, p.w, chosen.a, p.x, chosen.b, &beta, p.out, chosen.d, p.out,
                          chosen.d, &chosen.algo, workspace_, workspace_bytes_, stream),
           "cublasLtMatmul");
  return true;
}

}  // namespace wick::cuda
