// The CPU's two kinds of products with bf16 weights, for tests that compare logits with an f32 reference: the
// default path rounds the activations to bf16 where the CPU has AVX512_BF16 (avx512bf16: logits a few 10⁻³ relative
// off the reference, within bf16's tolerance), and multiplies them in f32 elsewhere (the reference's products: 1e-4
// and tighter). Tests check the default at the tolerance of the path it takes, and the f32 products at theirs by
// forcing avx512 in place of avx512bf16 for a scope. Needs the backend layer (cpu_kernels.h).
#pragma once

#include <algorithm>

#include "backend/cpu/cpu_kernels.h"

namespace wick::test {

/// Max-relative error of logits (or hidden states) from a model with bf16 weights when its activations are rounded
/// to bf16: measured 2.6–4.7·10⁻³ on the tiny fixtures (bf16's unit roundoff is 3.9·10⁻³), bounded at 1e-2.
constexpr double kRoundedActivationsTolerance = 1e-2;

/// Whether products with bf16 weights round the activations to bf16 now (the avx512bf16 path).
inline bool cpu_rounds_activations() { return cpu::active_isa() == cpu::Isa::avx512bf16; }

/// The tolerance of the default path, given that of the f32 products.
inline double default_path_tolerance(double f32_products) {
  return cpu_rounds_activations() ? std::max(f32_products, kRoundedActivationsTolerance) : f32_products;
}

/// For its scope, the f32 products: avx512 in place of avx512bf16 (nothing changes on a CPU without AVX512_BF16).
class F32CpuProducts {
 public:
  F32CpuProducts() : forced_(cpu_rounds_activations()) {
    if (forced_) cpu::force_isa(cpu::Isa::avx512);
  }
  ~F32CpuProducts() {
    if (forced_) cpu::reset_isa();
  }
  F32CpuProducts(const F32CpuProducts&) = delete;
  F32CpuProducts& operator=(const F32CpuProducts&) = delete;

 private:
  bool forced_;
};

/// Calls check(tolerance) on the default path, then, where that rounds activations, again with the f32 products:
/// `f32_products` is their tolerance.
template <class Check>
void on_each_cpu_path(double f32_products, Check&& check) {
  const bool rounds = cpu_rounds_activations();
  check(default_path_tolerance(f32_products));
  if (!rounds) return;
  const F32CpuProducts exact;
  check(f32_products);
}

}  // namespace wick::test
