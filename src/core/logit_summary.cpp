#include "wick/logit_summary.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <string>

#include "wick/error.h"

namespace wick {

LogitSummary summarize_logits(std::span<const float> row, int32_t count, std::span<const int32_t> gather) {
  const int64_t n = int64_t(row.size());
  LogitSummary s;
  s.vocab = n;
  // NaN ranks below every number (as on the device); ties go to the lower id.
  const auto value = [&](int32_t i) {
    const float v = row[size_t(i)];
    return std::isnan(v) ? -std::numeric_limits<float>::infinity() : v;
  };
  const auto better = [&](int32_t a, int32_t b) { return value(a) > value(b) || (value(a) == value(b) && a < b); };
  std::vector<int32_t> order(static_cast<size_t>(n));
  std::iota(order.begin(), order.end(), 0);
  const size_t c = size_t(std::clamp<int64_t>(count, 0, n));
  std::partial_sort(order.begin(), order.begin() + long(c), order.end(), better);
  s.ids.assign(order.begin(), order.begin() + long(c));
  for (int32_t id : s.ids) s.values.push_back(row[size_t(id)]);
  for (int32_t id : gather) {
    if (id < 0 || id >= n) fail(ErrorKind::internal, "logit summary: id " + std::to_string(id) + " outside the row");
    s.gathered_ids.push_back(id);
    s.gathered.push_back(row[size_t(id)]);
  }
  float m = -std::numeric_limits<float>::infinity();
  for (int64_t i = 0; i < n; ++i) m = std::max(m, value(int32_t(i)));
  s.max = m;
  double z = 0;
  if (m != -std::numeric_limits<float>::infinity())
    for (int64_t i = 0; i < n; ++i) z += std::exp(double(value(int32_t(i))) - double(m));
  s.sum_exp = float(z);
  return s;
}

}  // namespace wick
