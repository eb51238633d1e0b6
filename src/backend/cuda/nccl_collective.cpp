// The GPUs' collectives: NCCL, opened at the first use (as cuBLAS is: cublas_api.h) and driven as one process with a
// thread per GPU. The communicators are made non-blocking, so that creating them can be given up on after a
// timeout (a GPU that never answers is an error, not a hang) and an abort reaches a rank stuck in a call.
#include <cuda_runtime.h>
#include <nccl.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include "backend/collective.h"
#include "backend/cuda/cublas_api.h"
#include "backend/cuda/cuda_check.h"
#include "wick/error.h"

namespace wick {

namespace {

struct NcclApi {
  decltype(&::ncclGetUniqueId) get_unique_id;
  decltype(&::ncclCommInitRankConfig) comm_init_rank_config;
  decltype(&::ncclCommGetAsyncError) comm_get_async_error;
  decltype(&::ncclCommFinalize) comm_finalize;
  decltype(&::ncclCommDestroy) comm_destroy;
  decltype(&::ncclCommAbort) comm_abort;
  decltype(&::ncclAllReduce) all_reduce;
  decltype(&::ncclGroupStart) group_start;
  decltype(&::ncclGroupEnd) group_end;
  decltype(&::ncclGetErrorString) error_string;
};

const NcclApi& nccl() {
  static const NcclApi api = [] {
    const std::string name = "libnccl.so." + std::to_string(NCCL_MAJOR);
    void* lib = cuda::open_library(name, "NCCL, for --tensor-parallel on GPUs; or set LD_LIBRARY_PATH to its folder");
    NcclApi a{};
    cuda::load(lib, name, "ncclGetUniqueId", a.get_unique_id);
    cuda::load(lib, name, "ncclCommInitRankConfig", a.comm_init_rank_config);
    cuda::load(lib, name, "ncclCommGetAsyncError", a.comm_get_async_error);
    cuda::load(lib, name, "ncclCommFinalize", a.comm_finalize);
    cuda::load(lib, name, "ncclCommDestroy", a.comm_destroy);
    cuda::load(lib, name, "ncclCommAbort", a.comm_abort);
    cuda::load(lib, name, "ncclAllReduce", a.all_reduce);
    cuda::load(lib, name, "ncclGroupStart", a.group_start);
    cuda::load(lib, name, "ncclGroupEnd", a.group_end);
    cuda::load(lib, name, "ncclGetErrorString", a.error_string);
    return a;
  }();
  return api;
}

ncclDataType_t nccl_type(DType t) {
  switch (t) {
    case DType::bf16: return ncclBfloat16;
    case DType::f16: return ncclFloat16;
    case DType::f32: return ncclFloat32;
    default: fail(ErrorKind::internal, "NCCL collective: a tensor of dtype " + std::string(to_string(t)));
  }
}

// Puts the calling thread's current device back when it leaves scope.
class CallerDevice {
 public:
  CallerDevice() { cuda::check(cudaGetDevice(&device_), "cudaGetDevice"); }
  ~CallerDevice() { cudaSetDevice(device_); }
  CallerDevice(const CallerDevice&) = delete;
  CallerDevice& operator=(const CallerDevice&) = delete;

 private:
  int device_ = 0;
};

class NcclCollective final : public Collective {
 public:
  NcclCollective(std::span<Backend* const> ranks, double timeout_s) : backends_(ranks.begin(), ranks.end()) {
    const NcclApi& api = nccl();
    const CallerDevice kept;  // each rank's GPU is made current below; the caller's comes back
    // NVLink multicast (NVLS) stays off: the machines this runs on require it (and a 2-GPU all-reduce of a few KB
    // gains nothing from it).
    setenv("NCCL_NVLS_ENABLE", "0", 1);
    const int n = int(backends_.size());
    // Every failure names the split and leaves no communicator behind (the constructor's caller gets no object to
    // destroy them).
    const auto failed = [&](const std::string& why) {
      destroy(true);
      fail(ErrorKind::unsupported, "--tensor-parallel " + std::to_string(n) + ": NCCL could not join the GPUs: " + why);
    };
    const auto why = [&](const char* call, ncclResult_t res) {
      return std::string(call) + ": " + api.error_string(res);
    };
    ncclUniqueId id{};
    if (const ncclResult_t res = api.get_unique_id(&id); res != ncclSuccess) failed(why("ncclGetUniqueId", res));
    comms_.assign(size_t(n), nullptr);
    ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
    config.blocking = 0;
    if (const ncclResult_t res = api.group_start(); res != ncclSuccess) failed(why("ncclGroupStart", res));
    for (int r = 0; r < n; ++r) {
      backends_[size_t(r)]->bind_thread();
      const ncclResult_t res = api.comm_init_rank_config(&comms_[size_t(r)], n, id, r, &config);
      if (res != ncclSuccess && res != ncclInProgress) {
        api.group_end();
        failed("rank " + std::to_string(r) + ": " + why("ncclCommInitRankConfig", res));
      }
    }
    if (const ncclResult_t res = api.group_end(); res != ncclSuccess && res != ncclInProgress)
      failed(why("ncclGroupEnd", res));
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_s);
    for (int r = 0; r < n; ++r) {
      ncclResult_t state = ncclInProgress;
      while (state == ncclInProgress) {
        if (const ncclResult_t res = api.comm_get_async_error(comms_[size_t(r)], &state); res != ncclSuccess)
          failed("rank " + std::to_string(r) + ": " + why("ncclCommGetAsyncError", res));
        if (state == ncclInProgress && std::chrono::steady_clock::now() > deadline)
          failed("rank " + std::to_string(r) + " did not connect within " + std::to_string(int(timeout_s)) +
                 " s (a GPU that does not answer, or peers that cannot reach each other)");
        if (state == ncclInProgress) std::this_thread::sleep_for(std::chrono::milliseconds(1));
      }
      if (state != ncclSuccess) failed("rank " + std::to_string(r) + ": " + api.error_string(state));
    }
  }
  ~NcclCollective() override { destroy(aborted_.load()); }

  int ranks() const override { return int(comms_.size()); }
  bool capturable() const override { return true; }

  void all_reduce(Tensor& x, int rank) override {
    settle(rank, nccl().all_reduce(x.raw(), x.raw(), size_t(x.numel()), nccl_type(x.dtype()), ncclSum,
                                   comms_[size_t(rank)], stream(rank)),
           "ncclAllReduce");
  }

  void abort() override {
    if (aborted_.exchange(true)) return;
    for (ncclComm_t c : comms_)
      if (c) nccl().comm_abort(c);
    comms_aborted_ = true;
  }

 private:
  cudaStream_t stream(int rank) { return static_cast<cudaStream_t>(backends_[size_t(rank)]->native_stream()); }

  void ok(ncclResult_t res, const char* what) {
    if (res != ncclSuccess && res != ncclInProgress)
      fail(ErrorKind::internal, std::string("NCCL: ") + what + ": " + nccl().error_string(res));
  }

  // A non-blocking communicator may still be enqueuing the call: wait for it before the next one.
  void settle(int rank, ncclResult_t res, const char* what) {
    if (aborted_.load()) fail(ErrorKind::internal, "tensor parallelism: another rank failed during a collective");
    ok(res, what);
    ncclResult_t state = res;
    while (state == ncclInProgress) {
      ok(nccl().comm_get_async_error(comms_[size_t(rank)], &state), "ncclCommGetAsyncError");
      if (aborted_.load()) fail(ErrorKind::internal, "tensor parallelism: another rank failed during a collective");
    }
    ok(state, what);
  }

  void destroy(bool abort_them) {
    if (comms_aborted_) return;
    for (size_t r = 0; r < comms_.size(); ++r) {
      if (!comms_[r]) continue;
      const cuda::DeviceGuard guard(device_of(r));
      if (abort_them) {
        nccl().comm_abort(comms_[r]);
      } else {
        ncclResult_t state = nccl().comm_finalize(comms_[r]);
        while (state == ncclInProgress)
          if (nccl().comm_get_async_error(comms_[r], &state) != ncclSuccess) break;
        nccl().comm_destroy(comms_[r]);
      }
      comms_[r] = nullptr;
    }
  }

  int device_of(size_t rank) {
    const CallerDevice kept;
    int device = 0;
    backends_[rank]->bind_thread();
    cudaGetDevice(&device);
    return device;
  }

  std::vector<Backend*> backends_;
  std::vector<ncclComm_t> comms_;
  std::atomic<bool> aborted_{false};
  bool comms_aborted_ = false;
};

}  // namespace

std::unique_ptr<Collective> make_nccl_collective(std::span<Backend* const> ranks, double timeout_s) {
  for (Backend* b : ranks)
    if (!b || b->device() != Device::cuda)
      fail(ErrorKind::internal, "make_nccl_collective: every rank must be a CUDA backend");
  return std::make_unique<NcclCollective>(ranks, timeout_s);
}

}  // namespace wick
