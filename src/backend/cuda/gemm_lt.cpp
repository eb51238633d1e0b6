// cuBLASLt GEMMs with fused epilogues (gemm_lt.h). Row-major out[rows, outs] = x[rows, in] · W[outs, in]ᵀ is the
// column-major outᵀ = W · xᵀ: A = W read transposed, B = x, the bias along outᵀ's rows (m = outs), as cuBLASLt's
// BIAS epilogue broadcasts it.
#include "backend/cuda/gemm_lt.h"

#include "backend/cuda/cuda_check.h"

namespace wick::cuda {

namespace {

template <typename T>
void set(cublasLtMatmulDesc_t d, cublasLtMatmulDescAttributes_t a, const T& v) {
  check(cublasLtMatmulDescSetAttribute(d, a, &v, sizeof(v)), "cublasLtMatmulDescSetAttribute");
}

template <typename T>
void set(cublasLtMatrixLayout_t l, cublasLtMatrixLayoutAttribute_t a, const T& v) {
  check(cublasLtMatrixLayoutSetAttribute(l, a, &v, sizeof(v)), "cublasLtMatrixLayoutSetAttribute");
}

cublasLtMatrixLayout_t layout(uint64_t rows, uint64_t cols, int64_t ld, int32_t batches, int64_t batch_stride) {
  cublasLtMatrixLayout_t l = nullptr;
  check(cublasLtMatrixLayoutCreate(&l, CUDA_R_16BF, rows, cols, ld), "cublasLtMatrixLayoutCreate");
  if (batches > 1) {
    set(l, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, batches);
    set(l, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, batch_stride);
  }
  return l;
}

}  // namespace

struct LtGemm::Plan {
  cublasLtMatmulDesc_t op = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, d = nullptr;
  cublasLtMatmulAlgo_t algo{};
  bool found = false;
  ~Plan() {
    if (d) cublasLtMatrixLayoutDestroy(d);
    if (b) cublasLtMatrixLayoutDestroy(b);
    if (a) cublasLtMatrixLayoutDestroy(a);
    if (op) cublasLtMatmulDescDestroy(op);
  }
};

LtGemm::LtGemm(void* workspace, size_t workspace_bytes) : workspace_(workspace), workspace_bytes_(workspace_bytes) {
  check(cublasLtCreate(&handle_), "cublasLtCreate");
}

LtGemm::~LtGemm() {
  plans_.clear();
  cublasLtDestroy(handle_);
}

bool LtGemm::run(const LtLinear& p, cudaStream_t stream) {
  const Key key{p.rows, p.in, p.outs, p.groups, p.bias != nullptr, p.gelu_tanh};
  // Packed batches of texts give a new row count almost every call: the plans stay bounded (a query is ~10 µs).
  if (plans_.size() >= kMaxPlans && !plans_.contains(key)) plans_.clear();
  std::unique_ptr<Plan>& plan = plans_[key];
  if (!plan) {
    plan = std::make_unique<Plan>();
    Plan& q = *plan;
    check(cublasLtMatmulDescCreate(&q.op, CUBLAS_COMPUTE_32F, CUDA_R_32F), "cublasLtMatmulDescCreate");
    set(q.op, CUBLASLT_MATMUL_DESC_TRANSA, CUBLAS_OP_T);
    set(q.op, CUBLASLT_MATMUL_DESC_TRANSB, CUBLAS_OP_N);
    cublasLtEpilogue_t epilogue = CUBLASLT_EPILOGUE_DEFAULT;
    if (p.bias) epilogue = p.gelu_tanh ? CUBLASLT_EPILOGUE_GELU_BIAS : CUBLASLT_EPILOGUE_BIAS;
    else if (p.gelu_tanh) epilogue = CUBLASLT_EPILOGUE_GELU;
    set(q.op, CUBLASLT_MATMUL_DESC_EPILOGUE, epilogue);
    if (p.bias) {
      set(q.op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, p.bias);  // placeholder; each call sets its own
      if (p.groups > 1) set(q.op, CUBLASLT_MATMUL_DESC_BIAS_BATCH_STRIDE, int64_t(p.outs));
    }
    const auto groups = int32_t(p.groups);
    q.a = layout(uint64_t(p.in), uint64_t(p.outs), p.in, groups, p.outs * p.in);
    q.b = layout(uint64_t(p.in), uint64_t(p.rows), p.in, groups, 0);  // every group reads the same x
    q.d = layout(uint64_t(p.outs), uint64_t(p.rows), p.outs, groups, p.rows * p.outs);
    cublasLtMatmulPreference_t pref = nullptr;
    check(cublasLtMatmulPreferenceCreate(&pref), "cublasLtMatmulPreferenceCreate");
    const uint64_t bytes = workspace_bytes_;
    check(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &bytes,
                                                  sizeof(bytes)),
             "cublasLtMatmulPreferenceSetAttribute");
    cublasLtMatmulHeuristicResult_t result{};
    int found = 0;
    const cublasStatus_t s =
        cublasLtMatmulAlgoGetHeuristic(handle_, q.op, q.a, q.b, q.d, q.d, pref, 1, &result, &found);
    cublasLtMatmulPreferenceDestroy(pref);
    q.found = s == CUBLAS_STATUS_SUCCESS && found > 0;
    if (q.found) q.algo = result.algo;
  }
  if (!plan->found) return false;
  if (p.bias) set(plan->op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, p.bias);
  const float alpha = 1.0f, beta = 0.0f;
  check(cublasLtMatmul(handle_, plan->op, &alpha, p.w, plan->a, p.x, plan->b, &beta, p.out, plan->d, p.out,
                          plan->d, &plan->algo, workspace_, workspace_bytes_, stream),
           "cublasLtMatmul");
  return true;
}

}  // namespace wick::cuda
