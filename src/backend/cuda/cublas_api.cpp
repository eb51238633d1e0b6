#include "backend/cuda/cublas_api.h"

#include <cuda_runtime.h>
#include <dlfcn.h>

#include <filesystem>
#include <string>

#include "wick/error.h"

namespace wick::cuda {

// Opens `name` as the dynamic loader finds it, else from the directory of the CUDA runtime this process uses (a
// toolkit outside the loader's paths, as /usr/local/cuda/lib is). Kept open for the process's life.
void* open_library(const std::string& name, const std::string& what) {
  if (void* h = dlopen(name.c_str(), RTLD_NOW | RTLD_LOCAL)) return h;
  std::string why = dlerror();
  Dl_info info{};
  if (dladdr(reinterpret_cast<void*>(&cudaGetDeviceCount), &info) && info.dli_fname) {
    const auto beside = std::filesystem::path(info.dli_fname).parent_path() / name;
    if (void* h = dlopen(beside.c_str(), RTLD_NOW | RTLD_LOCAL)) return h;
    why += "; " + std::string(dlerror());
  }
  fail(ErrorKind::not_found, "CUDA backend: cannot load " + name + " (" + what + "): " + why);
}

namespace {

CublasApi load_all() {
  const std::string major = std::to_string(CUBLAS_VER_MAJOR);
  const std::string lt_name = "libcublasLt.so." + major, blas_name = "libcublas.so." + major;
  const std::string what = "cuBLAS " + major + ", which wick was built against";
  void* lt = open_library(lt_name, what);  // first: libcublas needs it, and finds it loaded
  void* blas = open_library(blas_name, what);
  CublasApi a{};
  load(blas, blas_name, "cublasCreate_v2", a.create);
  load(blas, blas_name, "cublasDestroy_v2", a.destroy);
  load(blas, blas_name, "cublasSetStream_v2", a.set_stream);
  load(blas, blas_name, "cublasSetMathMode", a.set_math_mode);
  load(blas, blas_name, "cublasSetWorkspace_v2", a.set_workspace);
  load(blas, blas_name, "cublasGemmEx", a.gemm_ex);
  load(lt, lt_name, "cublasLtCreate", a.lt_create);
  load(lt, lt_name, "cublasLtDestroy", a.lt_destroy);
  load(lt, lt_name, "cublasLtMatmul", a.lt_matmul);
  load(lt, lt_name, "cublasLtMatmulAlgoGetHeuristic", a.lt_algo_get_heuristic);
  load(lt, lt_name, "cublasLtMatmulDescCreate", a.lt_desc_create);
  load(lt, lt_name, "cublasLtMatmulDescDestroy", a.lt_desc_destroy);
  load(lt, lt_name, "cublasLtMatmulDescSetAttribute", a.lt_desc_set_attribute);
  load(lt, lt_name, "cublasLtMatmulPreferenceCreate", a.lt_preference_create);
  load(lt, lt_name, "cublasLtMatmulPreferenceDestroy", a.lt_preference_destroy);
  load(lt, lt_name, "cublasLtMatmulPreferenceSetAttribute", a.lt_preference_set_attribute);
  load(lt, lt_name, "cublasLtMatrixLayoutCreate", a.lt_layout_create);
  load(lt, lt_name, "cublasLtMatrixLayoutDestroy", a.lt_layout_destroy);
  load(lt, lt_name, "cublasLtMatrixLayoutSetAttribute", a.lt_layout_set_attribute);
  return a;
}

}  // namespace

const CublasApi& cublas() {
  static const CublasApi api = load_all();  // a throw leaves it unset: the next call tries again
  return api;
}

}  // namespace wick::cuda
