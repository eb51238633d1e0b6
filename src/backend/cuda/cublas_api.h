// cuBLAS and cuBLASLt, opened when the first CUDA backend is made instead of linked into every wick program: the two
// libraries are some 600 MB, and the dynamic loader's work on them cost each process about 0.33 s at start (every
// CPU-only `wick tokenize`, every test process) whether it touched a GPU or not. The types and constants still come
// from their headers; the functions come from this table.
#pragma once

#include <cublasLt.h>
#include <cublas_v2.h>

#include <dlfcn.h>

#include <string>

#include "wick/error.h"

namespace wick::cuda {

/// Opens the shared library `name` as the dynamic loader finds it, else from the directory of the CUDA runtime this
/// process uses; not_found naming it and `what` (what wick needs it as) when neither has it. Kept open for good.
void* open_library(const std::string& name, const std::string& what);

/// out = the function `symbol` of `lib`; not_found naming `lib_name` when it has none.
template <class F>
void load(void* lib, const std::string& lib_name, const char* symbol, F& out) {
  dlerror();
  void* p = dlsym(lib, symbol);
  if (!p) fail(ErrorKind::not_found, "CUDA backend: " + lib_name + " has no function " + symbol);
  out = reinterpret_cast<F>(p);
}

/// The cuBLAS / cuBLASLt functions the CUDA backend calls (cublas_v2.h's macros name the _v2 entry points).
struct CublasApi {
  decltype(&::cublasCreate_v2) create;
  decltype(&::cublasDestroy_v2) destroy;
  decltype(&::cublasSetStream_v2) set_stream;
  decltype(&::cublasSetMathMode) set_math_mode;
  decltype(&::cublasSetWorkspace_v2) set_workspace;
  // (cublas_api.h also has an inline C++ overload taking a cudaDataType compute type: the exported one is this)
  cublasStatus_t (*gemm_ex)(cublasHandle_t, cublasOperation_t, cublasOperation_t, int, int, int, const void*,
                            const void*, cudaDataType, int, const void*, cudaDataType, int, const void*, void*,
                            cudaDataType, int, cublasComputeType_t, cublasGemmAlgo_t);
  decltype(&::cublasLtCreate) lt_create;
  decltype(&::cublasLtDestroy) lt_destroy;
  decltype(&::cublasLtMatmul) lt_matmul;
  decltype(&::cublasLtMatmulAlgoGetHeuristic) lt_algo_get_heuristic;
  decltype(&::cublasLtMatmulDescCreate) lt_desc_create;
  decltype(&::cublasLtMatmulDescDestroy) lt_desc_destroy;
  decltype(&::cublasLtMatmulDescSetAttribute) lt_desc_set_attribute;
  decltype(&::cublasLtMatmulPreferenceCreate) lt_preference_create;
  decltype(&::cublasLtMatmulPreferenceDestroy) lt_preference_destroy;
  decltype(&::cublasLtMatmulPreferenceSetAttribute) lt_preference_set_attribute;
  decltype(&::cublasLtMatrixLayoutCreate) lt_layout_create;
  decltype(&::cublasLtMatrixLayoutDestroy) lt_layout_destroy;
  decltype(&::cublasLtMatrixLayoutSetAttribute) lt_layout_set_attribute;
};

/// The table, loaded on the first call (libcublas.so.N and libcublasLt.so.N of the major version wick was built
/// with, found as the dynamic loader finds libraries, else beside the CUDA runtime wick runs with); later calls
/// return the same table. Error{not_found} naming the library and the loader's message when one cannot be opened or
/// lacks a function (a later call tries again).
const CublasApi& cublas();

}  // namespace wick::cuda
