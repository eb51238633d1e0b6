#include "backend/cpu/cpu_weights.h"

#include <cblas.h>

#include <algorithm>
#include <string>
#include <vector>

#include "backend/cpu/cpu_backward.h"
#include "core/thread_pool.h"
#include "wick/error.h"

namespace wick::cpu {

namespace {

constexpr int64_t kPanelRows = 256;  // weight rows widened at a time (a few MB of f32)
constexpr int64_t kQuantizeGrain = 64;  // rows a thread quantises at a time

// Row r of a matrix, as bytes (a q8_0 row is its blocks).
const std::byte* row_at(const Tensor& w, int64_t r) {
  return static_cast<const std::byte*>(w.raw()) + size_t(r) * (w.nbytes() / size_t(w.dim(0)));
}

// Rows [r0, r1) of a narrow matrix [·, cols] widened to f32 into panel (its first (r1 - r0) · cols floats).
void widen_rows(const Tensor& w, int64_t r0, int64_t r1, std::vector<float>& panel) {
  const int64_t cols = w.dim(1);
  panel.resize(size_t((r1 - r0) * cols));
  parallel_for(r1 - r0, 8, [&](int64_t a, int64_t b) {
    for (int64_t r = a; r < b; ++r) convert_to_f32(row_at(w, r0 + r), w.dtype(), panel.data() + r * cols, size_t(cols));
  });
}

}  // namespace

Tensor quantize_weight(const Tensor& w) {
  expect(w.rank() == 2, "quantize_weight", "a matrix, found " + to_string(w.shape()));
  const int64_t rows = w.dim(0), cols = w.dim(1);
  Tensor out = Tensor::empty(w.shape(), DType::q8_0);
  auto* dst = static_cast<std::byte*>(out.raw());
  const size_t out_row = rows ? out.nbytes() / size_t(rows) : 0;
  parallel_for(rows, kQuantizeGrain, [&](int64_t r0, int64_t r1) {
    std::vector<float> row(static_cast<size_t>(cols));
    for (int64_t r = r0; r < r1; ++r) {
      convert_to_f32(row_at(w, r), w.dtype(), row.data(), size_t(cols));
      try {
        convert_from_f32(row.data(), DType::q8_0, dst + size_t(r) * out_row, size_t(cols));
      } catch (const Error& e) {
        fail(e.kind(), "row " + std::to_string(r) + " of " + to_string(w.shape()) + ": " + e.what());
      }
    }
  });
  return out;
}

void matmul_narrow_b(const Tensor& a, const Tensor& b, Tensor& out, const MatmulParams& p) {
  const int64_t m = out.dim(0), n = out.dim(1), k = b.dim(0);
  expect(!p.transpose_b && a.rank() == 2 && b.rank() == 2 && b.dim(1) == n && a.dim(p.transpose_a ? 0 : 1) == k &&
             a.dim(p.transpose_a ? 1 : 0) == m,
         "matmul", "a " + to_string(a.shape()) + " by a " + std::string(to_string(b.dtype())) + " b " +
                       to_string(b.shape()) + " into " +
                       to_string(out.shape()) + (p.transpose_b ? " (b transposed: not taken)" : ""));
  if (m == 0 || n == 0) return;
  if (k == 0) {  // out = beta · out
    for (int64_t i = 0; i < m * n; ++i) out.data<float>()[i] = p.beta == 0.0f ? 0.0f : p.beta * out.data<float>()[i];
    return;
  }
  const float* ap = a.data<float>();
  std::vector<float> panel;
  for (int64_t k0 = 0; k0 < k; k0 += kPanelRows) {
    const int64_t k1 = std::min(k, k0 + kPanelRows);
    widen_rows(b, k0, k1, panel);
    // op(a)'s columns [k0, k1): a's columns (a [m, k]) or its rows (a [k, m], transposed).
    const float* a_block = p.transpose_a ? ap + k0 * m : ap + k0;
    cblas_sgemm(CblasRowMajor, p.transpose_a ? CblasTrans : CblasNoTrans, CblasNoTrans, int(m), int(n),
                int(k1 - k0), p.alpha, a_block, int(a.dim(1)), panel.data(), int(n), k0 == 0 ? p.beta : 1.0f,
                out.data<float>(), int(n));
  }
}

}  // namespace wick::cpu
