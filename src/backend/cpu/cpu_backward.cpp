// The CPU backend's training ops: the general product linear's backward is made of, and the backward twins of
// the forward ops in cpu_backend.cpp (rope's twin lives beside rope there: it is the same rotation, reversed).
// f32 storage; row sums in double as the forward's rmsnorm does.
#include "backend/cpu/cpu_backward.h"

#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <initializer_list>
#include <string>
#include <utility>
#include <vector>

#include "backend/dropout_mask.h"
#include "core/thread_pool.h"

namespace wick::cpu {

namespace {

std::string shapes(std::initializer_list<std::pair<const char*, const Tensor*>> named) {
  std::string s;
  for (const auto& [name, t] : named) s += std::string(s.empty() ? "" : " ") + name + " " + to_string(t->shape());
  return s;
}

// Positions i32 [n], each ≥ 0; returns the keys the sequence sees (max position + 1).
int64_t visible_context(const Tensor& positions, int64_t n, const char* op) {
  expect(positions.numel() == n, op,
         "positions " + to_string(positions.shape()) + " for " + std::to_string(n) + " queries");
  const int32_t* pos = positions.data<int32_t>();
  int64_t ctx = 0;
  for (int64_t i = 0; i < n; ++i) {
    expect(pos[i] >= 0, op, "negative position " + std::to_string(pos[i]));
    ctx = std::max<int64_t>(ctx, int64_t(pos[i]) + 1);
  }
  return ctx;
}

// One (query, head) of attention_backward: recomputes the softmax over the visible keys, then
// dS_j = P_j·(dO·v_j − Σ_k P_k·dO·v_k), dq = scale·Σ_j dS_j·k_j, dk_j += scale·dS_j·q, dv_j += P_j·dO.
// k, v, dk, dv point at this kv head's row 0; `stride` steps one cache row.
struct HeadSlices {
  const float* q;
  const float* d_out;
  float* dq;
  const float* k;
  const float* v;
  float* dk;
  float* dv;
  int64_t stride, d, visible;
};

// Per-task buffers of attention_head_backward: [context] each, dq [head_dim].
struct HeadScratch {
  std::vector<double> prob, dp, dq;
};

void attention_head_backward(const HeadSlices& h, float scale, HeadScratch& scratch) {
  std::vector<double>& prob = scratch.prob;
  std::vector<double>& dp = scratch.dp;
  std::vector<double>& dq = scratch.dq;
  double mx = -INFINITY;
  for (int64_t j = 0; j < h.visible; ++j) {
    const float* kj = h.k + j * h.stride;
    double s = 0.0;
    for (int64_t e = 0; e < h.d; ++e) s += double(h.q[e]) * kj[e];
    prob[size_t(j)] = s * scale;
    mx = std::max(mx, prob[size_t(j)]);
  }
  double sum = 0.0;
  for (int64_t j = 0; j < h.visible; ++j) sum += prob[size_t(j)] = std::exp(prob[size_t(j)] - mx);
  double dot = 0.0;  // Σ_k P_k·(dO·v_k) = dO·out
  for (int64_t j = 0; j < h.visible; ++j) {
    prob[size_t(j)] /= sum;
    const float* vj = h.v + j * h.stride;
    double g = 0.0;
    for (int64_t e = 0; e < h.d; ++e) g += double(h.d_out[e]) * vj[e];
    dp[size_t(j)] = g;
    dot += prob[size_t(j)] * g;
  }
  std::fill(dq.begin(), dq.end(), 0.0);
  for (int64_t j = 0; j < h.visible; ++j) {
    const double ds = prob[size_t(j)] * (dp[size_t(j)] - dot) * scale;
    const float* kj = h.k + j * h.stride;
    float* dkj = h.dk + j * h.stride;
    float* dvj = h.dv + j * h.stride;
    for (int64_t e = 0; e < h.d; ++e) {
      dq[size_t(e)] += ds * kj[e];
      dkj[e] += float(ds * h.q[e]);
      dvj[e] += float(prob[size_t(j)] * h.d_out[e]);
    }
  }
  for (int64_t e = 0; e < h.d; ++e) h.dq[e] = float(dq[size_t(e)]);
}

void check_attention_shapes(const AttentionInputs& in, const Tensor& d_out, const AttentionGrads& g,
                            const AttentionParams& p, int64_t ctx) {
  const int64_t n = in.q.dim(0), qsize = n * p.num_heads * p.head_dim, kv_row = p.num_kv_heads * p.head_dim;
  const auto cache_like = [&](const Tensor& t) { return t.dim(0) == in.k.dim(0) && row_size(t) == kv_row; };
  expect(p.num_kv_heads > 0 && p.num_heads % p.num_kv_heads == 0 && in.q.numel() == qsize && d_out.numel() == qsize &&
             g.dq.numel() == qsize && in.k.dim(0) >= ctx && cache_like(in.k) && cache_like(in.v) && cache_like(g.dk) &&
             cache_like(g.dv),
         "attention_backward",
         "heads " + std::to_string(p.num_heads) + "/" + std::to_string(p.num_kv_heads) + " head_dim " +
             std::to_string(p.head_dim) + ", context " + std::to_string(ctx) + ", shapes " +
             shapes({{"q", &in.q},
                     {"k", &in.k},
                     {"v", &in.v},
                     {"d_out", &d_out},
                     {"dq", &g.dq},
                     {"dk", &g.dk},
                     {"dv", &g.dv}}));
}

// One row of rmsnorm_backward.
struct NormRow {
  const float* x;
  const float* weight;
  const float* d_out;
  float* dx;
  int64_t n;
};

// y_i = w_i·x_i·r, r = (mean(x²) + eps)^(-1/2): dx_i = r·w_i·g_i − x_i·r³·mean_j(w_j·g_j·x_j), sums in double.
void rmsnorm_row_backward(const NormRow& row, float eps) {
  double ss = 0.0, wgx = 0.0;
  for (int64_t i = 0; i < row.n; ++i) {
    ss += double(row.x[i]) * row.x[i];
    wgx += double(row.weight[i]) * row.d_out[i] * row.x[i];
  }
  const double inv = 1.0 / std::sqrt(ss / double(row.n) + double(eps));
  const double coef = inv * inv * inv * wgx / double(row.n);
  for (int64_t i = 0; i < row.n; ++i) row.dx[i] = float(inv * row.weight[i] * row.d_out[i] - coef * row.x[i]);
}

// Row r's loss −log softmax(x)[target] in double, and dx = scale·(softmax − onehot(target)).
double cross_entropy_row(const float* x, int64_t classes, int32_t target, float scale, float* dx) {
  double mx = -INFINITY;
  for (int64_t c = 0; c < classes; ++c) mx = std::max(mx, double(x[c]));
  double sum = 0.0;
  for (int64_t c = 0; c < classes; ++c) sum += std::exp(double(x[c]) - mx);
  const double log_sum = mx + std::log(sum);
  for (int64_t c = 0; c < classes; ++c)
    dx[c] = float(double(scale) * (std::exp(double(x[c]) - log_sum) - (c == target ? 1.0 : 0.0)));
  return log_sum - double(x[target]);
}

}  // namespace

void matmul(const Tensor& a, const Tensor& b, Tensor& out, const MatmulParams& p) {
  const bool ranks = a.rank() == 2 && b.rank() == 2 && out.rank() == 2;
  const int64_t m = ranks ? a.dim(p.transpose_a ? 1 : 0) : 0, k = ranks ? a.dim(p.transpose_a ? 0 : 1) : 0;
  const int64_t kb = ranks ? b.dim(p.transpose_b ? 1 : 0) : 0, n = ranks ? b.dim(p.transpose_b ? 0 : 1) : 0;
  expect(ranks && k == kb && out.dim(0) == m && out.dim(1) == n, "matmul",
         shapes({{"a", &a}, {"b", &b}, {"out", &out}}) + (p.transpose_a ? " (a transposed)" : "") +
             (p.transpose_b ? " (b transposed)" : ""));
  if (m == 0 || n == 0) return;
  // OpenBLAS takes leading dimensions ≥ 1 even for an empty k (then out = beta · out).
  cblas_sgemm(CblasRowMajor, p.transpose_a ? CblasTrans : CblasNoTrans, p.transpose_b ? CblasTrans : CblasNoTrans,
              int(m), int(n), int(k), p.alpha, a.data<float>(), int(std::max<int64_t>(1, a.dim(1))), b.data<float>(),
              int(std::max<int64_t>(1, b.dim(1))), p.beta, out.data<float>(), int(n));
}

void rmsnorm_backward(const Tensor& x, const Tensor& weight, float eps, const Tensor& d_out, Tensor& dx) {
  const int64_t rows = x.rank() == 0 ? 0 : x.dim(0), n = row_size(x);
  expect(weight.numel() == n && d_out.shape() == x.shape() && dx.shape() == x.shape(), "rmsnorm_backward",
         shapes({{"x", &x}, {"weight", &weight}, {"d_out", &d_out}, {"dx", &dx}}));
  parallel_for(rows, kRowGrain, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r)
      rmsnorm_row_backward({.x = x.data<float>() + r * n,
                            .weight = weight.data<float>(),
                            .d_out = d_out.data<float>() + r * n,
                            .dx = dx.data<float>() + r * n,
                            .n = n},
                           eps);
  });
}

void swiglu_backward(const Tensor& gate, const Tensor& up, const Tensor& d_out, Tensor& d_gate, Tensor& d_up) {
  const int64_t n = gate.numel();
  expect(up.numel() == n && d_out.numel() == n && d_gate.numel() == n && d_up.numel() == n, "swiglu_backward",
         shapes({{"gate", &gate}, {"up", &up}, {"d_out", &d_out}, {"d_gate", &d_gate}, {"d_up", &d_up}}));
  const float* g = gate.data<float>();
  const float* u = up.data<float>();
  const float* go = d_out.data<float>();
  float* dg = d_gate.data<float>();
  float* du = d_up.data<float>();
  // silu(g) = g·σ(g); silu'(g) = σ(g)·(1 + g·(1 − σ(g))).
  parallel_for(n, kElementGrain, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) {
      const float sig = 1.0f / (1.0f + std::exp(-g[i]));
      du[i] = go[i] * g[i] * sig;
      dg[i] = go[i] * u[i] * sig * (1.0f + g[i] * (1.0f - sig));
    }
  });
}

void dropout(const Tensor& x, float p, uint64_t seed, Tensor& out) {
  const int64_t n = x.numel();
  expect(out.numel() == n, "dropout", shapes({{"x", &x}, {"out", &out}}));
  expect(p >= 0.0f && p < 1.0f, "dropout", "p " + std::to_string(p) + " outside [0, 1)");
  const float* in = x.data<float>();
  float* o = out.data<float>();
  const float keep_scale = 1.0f / (1.0f - p);
  parallel_for(n, kElementGrain, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) o[i] = dropout_keeps(seed, uint64_t(i), p) ? in[i] * keep_scale : 0.0f;
  });
}

void attention_backward(const AttentionInputs& in, const Tensor& d_out, AttentionGrads grads,
                        const AttentionParams& p) {
  const int64_t n = in.q.rank() == 0 ? 0 : in.q.dim(0);
  const int64_t ctx = visible_context(in.positions, n, "attention_backward");
  check_attention_shapes(in, d_out, grads, p, ctx);
  const int64_t heads = p.num_heads, kvh = p.num_kv_heads, d = p.head_dim, group = heads / kvh;
  const int32_t* pos = in.positions.data<int32_t>();
  const float* qp = in.q.data<float>();
  const float* gp = d_out.data<float>();
  float* dqp = grads.dq.data<float>();
  const float* kp = in.k.data<float>();
  const float* vp = in.v.data<float>();
  float* dkp = grads.dk.data<float>();
  float* dvp = grads.dv.data<float>();
  // One task per kv head: the query heads of a group all add into its dk and dv rows, so they share a task.
  parallel_for(kvh, 1, [&](int64_t kv0, int64_t kv1) {
    HeadScratch scratch{.prob = std::vector<double>(size_t(ctx)),
                        .dp = std::vector<double>(size_t(ctx)),
                        .dq = std::vector<double>(size_t(d))};
    for (int64_t kv = kv0; kv < kv1; ++kv)
      for (int64_t h = kv * group; h < (kv + 1) * group; ++h)
        for (int64_t i = 0; i < n; ++i) {
          const int64_t at = (i * heads + h) * d;
          const HeadSlices s{.q = qp + at,
                             .d_out = gp + at,
                             .dq = dqp + at,
                             .k = kp + kv * d,
                             .v = vp + kv * d,
                             .dk = dkp + kv * d,
                             .dv = dvp + kv * d,
                             .stride = kvh * d,
                             .d = d,
                             .visible = int64_t(pos[i]) + 1};
          attention_head_backward(s, p.scale, scratch);
        }
  });
}

double cross_entropy(const Tensor& logits, const Tensor& targets, float scale, Tensor& d_logits) {
  const int64_t rows = logits.rank() == 2 ? logits.dim(0) : 0, classes = logits.rank() == 2 ? logits.dim(1) : 0;
  expect(logits.rank() == 2 && targets.numel() == rows && d_logits.shape() == logits.shape(), "cross_entropy",
         shapes({{"logits", &logits}, {"targets", &targets}, {"d_logits", &d_logits}}));
  constexpr int32_t kIgnored = -100;  // PyTorch's ignore_index
  const int32_t* t = targets.data<int32_t>();
  for (int64_t r = 0; r < rows; ++r)
    if (t[r] != kIgnored && (t[r] < 0 || t[r] >= classes))
      fail(ErrorKind::bad_input, "cross_entropy: target " + std::to_string(t[r]) + " of row " + std::to_string(r) +
                                     " is outside the classes [0, " + std::to_string(classes) + ") and is not -100");
  const float* x = logits.data<float>();
  float* dx = d_logits.data<float>();
  std::vector<double> loss(size_t(rows), 0.0);  // summed in row order afterwards: the result does not depend on threads
  parallel_for(rows, kRowGrain, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      if (t[r] == kIgnored)
        std::fill(dx + r * classes, dx + (r + 1) * classes, 0.0f);
      else
        loss[size_t(r)] = cross_entropy_row(x + r * classes, classes, t[r], scale, dx + r * classes);
    }
  });
  double total = 0.0;
  for (double l : loss) total += l;
  return total;
}

void embedding_backward(const Tensor& ids, const Tensor& d_out, Tensor& d_table) {
  const int64_t n = ids.numel(), vocab = d_table.rank() == 0 ? 0 : d_table.dim(0), hidden = row_size(d_table);
  expect(d_out.rank() >= 1 && d_out.dim(0) == n && row_size(d_out) == hidden, "embedding_backward",
         shapes({{"ids", &ids}, {"d_out", &d_out}, {"d_table", &d_table}}));
  const int32_t* id = ids.data<int32_t>();
  for (int64_t t = 0; t < n; ++t)
    if (id[t] < 0 || id[t] >= vocab)
      fail(ErrorKind::bad_input, "embedding_backward: token id " + std::to_string(id[t]) +
                                     " is outside the vocabulary [0, " + std::to_string(vocab) + ")");
  // One thread: a repeated id adds into the same row.
  const float* g = d_out.data<float>();
  float* dt = d_table.data<float>();
  for (int64_t t = 0; t < n; ++t) {
    float* row = dt + int64_t(id[t]) * hidden;
    for (int64_t e = 0; e < hidden; ++e) row[e] += g[t * hidden + e];
  }
}

}  // namespace wick::cpu
