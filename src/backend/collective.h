// Collectives across the ranks of a model split over several devices (tensor parallelism): every rank's thread calls
// the same operations in the same order, each on its own tensors; a call returns once every rank's part is in (on a
// GPU: once the operation is ordered on the rank's stream). The host one (CPU tensors) is the reference; NCCL's
// (backend/cuda/nccl_collective.cpp) is the GPUs'.
#pragma once

#include <memory>
#include <span>

#include "backend/backend.h"

namespace wick {

class Collective {
 public:
  virtual ~Collective() = default;
  virtual int ranks() const = 0;
  /// x = the sum of every rank's x, in place, the same values on every rank (every rank adds in rank order).
  virtual void all_reduce(Tensor& x, int rank) = 0;
  /// A rank failed: every collective in progress or to come ends with an error on every rank instead of waiting for
  /// it forever. The collective is unusable afterwards.
  virtual void abort() = 0;
  /// Whether its calls can be recorded into a device graph (Backend::capture) and replayed there: NCCL's can; the
  /// host's and the staged one's wait on the host.
  virtual bool capturable() const { return false; }
};

/// Ranks that are threads of this process over CPU tensors (f32).
std::unique_ptr<Collective> make_host_collective(int ranks);

/// Ranks whose tensors live on any backends (`ranks[r]`: rank r's), summed through the host: each
/// rank's part is downloaded, combined as the host collective does (in f32), and written back in its dtype. Slow; for
/// checking a split model's device code where several ranks share one GPU (WICK_TP_ONE_GPU, tests).
std::unique_ptr<Collective> make_staged_collective(std::span<Backend* const> ranks);

/// The ranks' backends, one GPU each (rank r: ranks[r]), joined by NCCL communicators made here (NVLink multicast
/// off); creating them waits at most `timeout_s` seconds, then fails naming the GPUs. unsupported without CUDA;
/// not_found when libnccl.so.2 cannot be loaded.
std::unique_ptr<Collective> make_nccl_collective(std::span<Backend* const> ranks, double timeout_s = 60.0);

}  // namespace wick
