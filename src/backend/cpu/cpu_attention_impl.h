// Attention's inner loops and the gated MLP's activation, written once over an ISA file's F32Ops (cpu_gemm_tile_impl.h lists the interface; these
// also use set1, store, store_tail, add, sub, mul, div, fmadd, min, max, hmax, round, scale2, zero_below and
// load_tail_fill): one query's scores against a run of keys, the softmax's exponentials, and the
// probability-weighted sum of a run of values. Included only by ISA files; internal linkage (cpu_kernels_impl.h).
#pragma once

#include <cstdint>

#include "backend/cpu/cpu_gemm_tile_impl.h"

namespace wick::cpu {
namespace {

// Σ_i q[i]·k[i] over d, in Ops::kStep lanes (zeros past d), reduced by sum4's tree like the gemm's outputs.
template <class Ops>
typename Ops::Acc dot_lanes(const float* q, const float* k, int64_t d) {
  typename Ops::Acc acc = Ops::zero();
  int64_t i = 0;
  for (; i + Ops::kStep <= d; i += Ops::kStep) acc = Ops::madd(acc, Ops::load_x(q + i), Ops::load_x(k + i));
  if (i < d) acc = Ops::madd(acc, Ops::load_x_tail(q + i, int(d - i)), Ops::load_x_tail(k + i, int(d - i)));
  return acc;
}

// scores[j] = scale · q·k_j for the n keys k_j = k + j · stride, four at a time.
template <class Ops>
void attention_scores(const AttentionRun& r) {
  int64_t j = 0;
  for (; j + 4 <= r.n; j += 4) {
    float s[4];
    Ops::sum4(dot_lanes<Ops>(r.q, r.k + j * r.stride, r.d), dot_lanes<Ops>(r.q, r.k + (j + 1) * r.stride, r.d),
              dot_lanes<Ops>(r.q, r.k + (j + 2) * r.stride, r.d), dot_lanes<Ops>(r.q, r.k + (j + 3) * r.stride, r.d),
              s);
    for (int u = 0; u < 4; ++u) r.scores[j + u] = r.scale * s[u];
  }
  for (; j < r.n; ++j) r.scores[j] = r.scale * sum1<Ops>(dot_lanes<Ops>(r.q, r.k + j * r.stride, r.d));
}

// out[0, d) += Σ_j p[j] · v_j for the n values v_j = v + j · stride: columns kept in registers across the run, four
// vectors of them at a time (four independent chains of multiply-adds for the FMA pipes, where one chain waited out
// each multiply-add's latency), then one vector at a time. Each column sums its values in the order of j whatever
// the grouping, so the results are the same bits.
template <class Ops>
void attention_values(const AttentionRun& r) {
  constexpr int kChains = 4;
  int64_t i = 0;
  for (; i + kChains * Ops::kStep <= r.d; i += kChains * Ops::kStep) {
    typename Ops::Acc acc[kChains];
#pragma GCC unroll 4
    for (int c = 0; c < kChains; ++c) acc[c] = Ops::load_x(r.out + i + c * Ops::kStep);
    for (int64_t j = 0; j < r.n; ++j) {
      const typename Ops::Acc p = Ops::set1(r.p[j]);
      const float* v = r.v + j * r.stride + i;
#pragma GCC unroll 4
      for (int c = 0; c < kChains; ++c) acc[c] = Ops::madd(acc[c], p, Ops::load_x(v + c * Ops::kStep));
    }
#pragma GCC unroll 4
    for (int c = 0; c < kChains; ++c) Ops::store(r.out + i + c * Ops::kStep, acc[c]);
  }
  for (; i + Ops::kStep <= r.d; i += Ops::kStep) {
    typename Ops::Acc acc = Ops::load_x(r.out + i);
    for (int64_t j = 0; j < r.n; ++j) acc = Ops::madd(acc, Ops::set1(r.p[j]), Ops::load_x(r.v + j * r.stride + i));
    Ops::store(r.out + i, acc);
  }
  if (i < r.d) {
    const int left = int(r.d - i);
    typename Ops::Acc acc = Ops::load_x_tail(r.out + i, left);
    for (int64_t j = 0; j < r.n; ++j)
      acc = Ops::madd(acc, Ops::set1(r.p[j]), Ops::load_x_tail(r.v + j * r.stride + i, left));
    Ops::store_tail(r.out + i, acc, left);
  }
}

// exp(x) for f32 lanes, from the ISA's arithmetic (Cephes' expf: x = n·ln2 + r, |r| ≤ ln2/2, a degree-6 polynomial of
// r, then · 2ⁿ): relative error ≈ 1e-7, exp(x) = 0 for x below −87.3 (−∞ included), +∞ far above 88.7; no NaN
// for a number x.
// Ops supplies the pieces that differ by ISA: fmadd, round to nearest, and scaling by 2ⁿ.
template <class Ops>
typename Ops::Acc exp_lanes(typename Ops::Acc x) {
  using A = typename Ops::Acc;
  const A lo = Ops::set1(-87.33654f);
  const A clamped = Ops::min(Ops::max(x, lo), Ops::set1(88.7f));  // above: 2¹²⁸ at most (inf, not garbage)
  const A n = Ops::round(Ops::mul(clamped, Ops::set1(1.44269504088896341f)));
  A r = Ops::fmadd(n, Ops::set1(-0.693359375f), clamped);
  r = Ops::fmadd(n, Ops::set1(2.12194440e-4f), r);
  A p = Ops::set1(1.9875691500e-4f);
  p = Ops::fmadd(p, r, Ops::set1(1.3981999507e-3f));
  p = Ops::fmadd(p, r, Ops::set1(8.3334519073e-3f));
  p = Ops::fmadd(p, r, Ops::set1(4.1665795894e-2f));
  p = Ops::fmadd(p, r, Ops::set1(1.6666665459e-1f));
  p = Ops::fmadd(p, r, Ops::set1(5.0000001201e-1f));
  p = Ops::fmadd(p, Ops::mul(r, r), Ops::add(r, Ops::set1(1.0f)));
  return Ops::zero_below(Ops::scale2(p, n), x, lo);
}

// s[j] = exp(s[j] − max_j s) for j < n; returns Σ_j of them (each lane sums its own, then sum4's tree).
template <class Ops>
float softmax_exp(float* s, int64_t n) {
  typename Ops::Acc m = Ops::set1(-__builtin_inff());
  int64_t j = 0;
  for (; j + Ops::kStep <= n; j += Ops::kStep) m = Ops::max(m, Ops::load_x(s + j));
  if (j < n) m = Ops::max(m, Ops::load_tail_fill(s + j, int(n - j), -__builtin_inff()));
  const typename Ops::Acc top = Ops::set1(Ops::hmax(m));
  typename Ops::Acc sum = Ops::zero();
  for (j = 0; j + Ops::kStep <= n; j += Ops::kStep) {
    const typename Ops::Acc e = exp_lanes<Ops>(Ops::sub(Ops::load_x(s + j), top));
    Ops::store(s + j, e);
    sum = Ops::add(sum, e);
  }
  if (j < n) {
    const int left = int(n - j);
    const typename Ops::Acc e = exp_lanes<Ops>(Ops::sub(Ops::load_tail_fill(s + j, left, -__builtin_inff()), top));
    Ops::store_tail(s + j, e, left);
    sum = Ops::add(sum, e);  // exp(−∞) = 0 in the lanes past n
  }
  return sum1<Ops>(sum);
}

// out[i] = silu(gate[i]) · up[i] = gate[i] · up[i] / (1 + exp(−gate[i])).
template <class Ops>
void silu_mul(const float* gate, const float* up, float* out, int64_t n) {
  using A = typename Ops::Acc;
  const A one = Ops::set1(1.0f), zero = Ops::zero();
  const auto lanes = [&](A g, A u) { return Ops::div(Ops::mul(g, u), Ops::add(one, exp_lanes<Ops>(Ops::sub(zero, g)))); };
  int64_t i = 0;
  for (; i + Ops::kStep <= n; i += Ops::kStep) Ops::store(out + i, lanes(Ops::load_x(gate + i), Ops::load_x(up + i)));
  if (i < n) {
    const int left = int(n - i);
    Ops::store_tail(out + i, lanes(Ops::load_x_tail(gate + i, left), Ops::load_x_tail(up + i, left)), left);
  }
}

}  // namespace
}  // namespace wick::cpu
