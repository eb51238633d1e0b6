// The logits a pass leaves on its device, read from there: one tensor on one backend — or, for a causal LM split over
// the vocabulary (tensor parallelism), each rank's columns on its rank. A split model's reads run on every rank's
// thread at once and are joined on the host: whole rows side by side, summaries (wick/logit_summary.h) each reduced
// over its rank's slice and merged — so no rank ever gathers the whole vocabulary (at 32 rows of Qwen's 151,936 ids
// that gather was 19 MB a step) and every rank reduces only its share.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <vector>

#include "backend/backend.h"
#include "wick/logit_summary.h"

namespace wick {

struct TensorParallel;

class DeviceLogits {
 public:
  /// `logits` [rows, n] on `backend`; `tp`: the split model whose rank 0 `backend` is (read on rank 0's thread, where
  /// its device is current), or null.
  DeviceLogits(Backend& backend, Tensor logits, const TensorParallel* tp = nullptr);
  /// Every rank's [rows, slice] logits of a causal LM split over a vocabulary of `vocab` ids, in rank order.
  DeviceLogits(const TensorParallel& tp, std::vector<Tensor> slices, int64_t vocab);

  int64_t rows() const { return parts_[0].dim(0); }
  /// Every row, whole, on the host: [rows, n].
  Tensor download() const;
  /// Row r, whole, on the host: [1, n].
  Tensor download_row(int64_t r) const;
  /// The summaries of rows `which` (in that order): each one's `count` best ids and the logits of the ids in
  /// gather[i] (gather empty, or one list per row of `which`), as Backend::summarize_rows gives them.
  std::vector<LogitSummary> summarize(std::span<const int64_t> which, int32_t count,
                                      const std::vector<std::vector<int32_t>>& gather) const;

 private:
  // fn(k) for each part k on the thread where its device is current: the caller's for a whole model, rank 0's for a
  // split model's single tensor, every rank's at once for its slices.
  void on_devices(const std::function<void(int part)>& fn) const;
  Backend& backend(int part) const;

  Backend* backend_ = nullptr;              // a whole tensor's
  const TensorParallel* tp_ = nullptr;
  std::vector<Tensor> parts_;               // the tensor, or each rank's slice
  std::vector<int64_t> begins_;             // where each slice starts in the vocabulary (slices only)
};

/// The summary of a row of logits from the summaries of its column slices (slices[k] of the columns from begins[k],
/// ascending; each made with `count` best ids and the ids of `gather` that fall in it, as local ids in gather's
/// order): the best `count` ids of all of them (ties: the lower id), the row's max and Σexp(l − max), and gather's
/// logits in gather's order — what summarize_logits gives for the whole row (Σexp up to rounding).
LogitSummary merge_slice_summaries(std::span<const LogitSummary> slices, std::span<const int64_t> begins,
                                   int32_t count, std::span<const int32_t> gather);

}  // namespace wick
