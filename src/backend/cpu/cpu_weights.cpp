#include "backend/cpu/cpu_weights.h"

#include <cblas.h>

#include <algorithm>
#include <vector>

#include "backend/cpu/cpu_backward.h"
#include "core/thread_pool.h"

namespace wick::cpu {

namespace {

constexpr int64_t kPanelRows = 256;  // weight rows widened at a time (a few MB of f32)

// Rows [r0, r1) of a 16-bit matrix [·, cols] widened to f32 into panel (its first (r1 - r0) · cols floats).
void widen_rows(const Tensor& w, int64_t r0, int64_t r1, std::vector<float>& panel) {
  const int64_t cols = w.dim(1);
  panel.resize(size_t((r1 - r0) * cols));
  const auto* src = static_cast<const uint16_t*>(w.raw());
  parallel_for(r1 - r0, 8, [&](int64_t a, int64_t b) {
    convert_to_f32(src + (r0 + a) * cols, w.dtype(), panel.data() + a * cols, size_t((b - a) * cols));
  });
}

}  // namespace

void matmul_half_b(const Tensor& a, const Tensor& b, Tensor& out, const MatmulParams& p) {
  const int64_t m = out.dim(0), n = out.dim(1), k = b.dim(0);
  expect(!p.transpose_b && a.rank() == 2 && b.rank() == 2 && b.dim(1) == n && a.dim(p.transpose_a ? 0 : 1) == k &&
             a.dim(p.transpose_a ? 1 : 0) == m,
         "matmul", "a " + to_string(a.shape()) + " by a 16-bit b " + to_string(b.shape()) + " into " +
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
