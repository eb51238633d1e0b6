// What a sampler needs of one row of logits when it does not need all of them: the best few ids and the row's
// normaliser, reduced where the logits are (on the GPU, so only this summary crosses PCIe).
#pragma once

#include <cstdint>
#include <span>
#include <vector>

namespace wick {

/// A summary of one row of raw logits [vocab].
struct LogitSummary {
  std::vector<int32_t> ids;     ///< the `count` ids with the highest logits, best first (ties: lower id first)
  std::vector<float> values;    ///< their logits
  std::vector<int32_t> gathered_ids;  ///< the ids asked for
  std::vector<float> gathered;        ///< their logits
  float max = 0;                ///< the highest logit
  float sum_exp = 0;            ///< Σ exp(logit − max) over the whole row
  int64_t vocab = 0;            ///< the row's length
};

/// The summary of `row` computed on the host (the reference the device reduction is tested against).
/// `count` is clamped to the row's length; every gathered id must lie inside the row.
LogitSummary summarize_logits(std::span<const float> row, int32_t count, std::span<const int32_t> gather);

}  // namespace wick
