#include "model/device_logits.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>

#include "model/model_impl.h"
#include "model/tensor_parallel.h"
#include "wick/error.h"

namespace wick {

DeviceLogits::DeviceLogits(Backend& backend, Tensor logits, const TensorParallel* tp)
    : backend_(&backend), tp_(tp), parts_{std::move(logits)} {}

DeviceLogits::DeviceLogits(const TensorParallel& tp, std::vector<Tensor> slices, int64_t vocab)
    : tp_(&tp), parts_(std::move(slices)) {
  for (int r = 0; r < int(parts_.size()); ++r) begins_.push_back(vocab_slice(vocab, {r, int(parts_.size())}).begin);
}

Backend& DeviceLogits::backend(int part) const { return backend_ ? *backend_ : *tp_->backends[size_t(part)]; }

void DeviceLogits::on_devices(const std::function<void(int part)>& fn) const {
  const auto bound = [&](int k) {
    backend(k).bind_thread();
    fn(k);
  };
  if (!tp_) fn(0);
  else if (parts_.size() == 1) tp_->threads->run_on(0, [&] { bound(0); });
  else tp_->threads->run(bound);  // a read does not touch the collective: nothing to abort
}

Tensor DeviceLogits::download() const {
  std::vector<Tensor> host(parts_.size());
  on_devices([&](int k) { host[size_t(k)] = backend(k).download(parts_[size_t(k)]); });
  return host.size() == 1 ? host[0] : join_columns(host);
}

Tensor DeviceLogits::download_row(int64_t r) const {
  std::vector<Tensor> host(parts_.size());
  on_devices([&](int k) { host[size_t(k)] = backend(k).download(parts_[size_t(k)].rows(r, r + 1)); });
  return host.size() == 1 ? host[0] : join_columns(host);
}

std::vector<LogitSummary> DeviceLogits::summarize(std::span<const int64_t> which, int32_t count,
                                                  const std::vector<std::vector<int32_t>>& gather) const {
  if (which.empty()) return {};
  bool every_row = int64_t(which.size()) == rows();
  for (size_t i = 0; i < which.size(); ++i) every_row = every_row && which[i] == int64_t(i);
  // Each slice's ids of every row's gather list (local ids, in the list's order).
  const size_t n = parts_.size();
  std::vector<std::vector<std::vector<int32_t>>> local(n);
  if (n == 1) {
    local[0] = gather;
  } else if (!gather.empty()) {
    if (gather.size() != which.size())
      fail(ErrorKind::bad_input, "summarize_rows: gather lists: " + std::to_string(gather.size()) + " for " +
                                     std::to_string(which.size()) + " rows (give none, or one per row)");
    const int64_t vocab = begins_.back() + parts_.back().dim(1);
    for (size_t k = 0; k < n; ++k) local[k].resize(gather.size());
    for (size_t i = 0; i < gather.size(); ++i)
      for (const int32_t id : gather[i]) {
        if (id < 0 || id >= vocab)
          fail(ErrorKind::bad_input, "summarize_rows: gathered id " + std::to_string(id) + " (row " +
                                         std::to_string(i) + ") outside a row of " + std::to_string(vocab));
        const size_t k = size_t(std::upper_bound(begins_.begin(), begins_.end(), int64_t(id)) - begins_.begin()) - 1;
        local[k][i].push_back(int32_t(id - begins_[k]));
      }
  }
  std::vector<std::vector<LogitSummary>> per(n);
  on_devices([&](int k) {
    Backend& b = backend(k);
    const Tensor& all = parts_[size_t(k)];
    Tensor picked = all;
    if (!every_row) {
      picked = b.alloc({int64_t(which.size()), all.dim(1)}, DType::f32);
      for (size_t i = 0; i < which.size(); ++i) b.copy_rows(all.rows(which[i], which[i] + 1), picked, int64_t(i));
    }
    per[size_t(k)] = b.summarize_rows(picked, count, local[size_t(k)]);
  });
  if (n == 1) return std::move(per[0]);
  std::vector<LogitSummary> out;
  std::vector<LogitSummary> row(n);
  for (size_t i = 0; i < which.size(); ++i) {
    for (size_t k = 0; k < n; ++k) row[k] = std::move(per[k][i]);
    out.push_back(merge_slice_summaries(row, begins_, count, gather.empty() ? std::span<const int32_t>() : gather[i]));
  }
  return out;
}

LogitSummary merge_slice_summaries(std::span<const LogitSummary> slices, std::span<const int64_t> begins,
                                   int32_t count, std::span<const int32_t> gather) {
  constexpr float kNegInf = -std::numeric_limits<float>::infinity();
  LogitSummary out;
  out.max = kNegInf;
  for (const LogitSummary& s : slices) {
    out.vocab += s.vocab;
    out.max = std::max(out.max, s.max);
  }
  double z = 0;  // Σexp(l − max) of each slice, moved from its max to the row's
  if (out.max != kNegInf)
    for (const LogitSummary& s : slices)
      if (s.max != kNegInf) z += double(s.sum_exp) * std::exp(double(s.max) - double(out.max));
  out.sum_exp = float(z);

  // The row's best ids are among the slices' best: NaN ranks below every number, ties go to the lower id.
  struct Candidate {
    int32_t id;
    float value;
  };
  std::vector<Candidate> all;
  for (size_t k = 0; k < slices.size(); ++k)
    for (size_t i = 0; i < slices[k].ids.size(); ++i)
      all.push_back({int32_t(begins[k] + slices[k].ids[i]), slices[k].values[i]});
  const auto rank = [](float v) { return std::isnan(v) ? kNegInf : v; };
  const size_t c = std::min(all.size(), size_t(std::clamp<int64_t>(count, 0, out.vocab)));
  std::partial_sort(all.begin(), all.begin() + long(c), all.end(), [&](const Candidate& a, const Candidate& b) {
    return rank(a.value) > rank(b.value) || (rank(a.value) == rank(b.value) && a.id < b.id);
  });
  for (size_t i = 0; i < c; ++i) {
    out.ids.push_back(all[i].id);
    out.values.push_back(all[i].value);
  }

  std::vector<size_t> next(slices.size(), 0);  // each slice's next gathered value
  for (const int32_t id : gather) {
    const auto owner = std::upper_bound(begins.begin(), begins.end(), int64_t(id));
    const size_t k = owner == begins.begin() ? slices.size() : size_t(owner - begins.begin()) - 1;
    if (k == slices.size() || id >= begins[k] + slices[k].vocab || next[k] >= slices[k].gathered.size())
      fail(ErrorKind::internal, "logit summary: gathered id " + std::to_string(id) + " is in no slice's summary");
    out.gathered_ids.push_back(id);
    out.gathered.push_back(slices[k].gathered[next[k]++]);
  }
  return out;
}

}  // namespace wick
