// Helpers for the adapter tests: reference rows, greedy decoding through the cache, weight snapshots.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "../model/model_test_util.h"
#include "model/linear.h"
#include "test_util.h"
#include "wick/adapter.h"
#include "wick/model.h"
#include "wick/safetensors.h"

namespace wick::test {

/// The fixture rows of a reference file: every row of a causal LM's input_ids; a classifier's rows cut
/// at their lengths.
inline std::vector<std::vector<int32_t>> reference_rows(const SafetensorsFile& ref) {
  const Tensor ids = ref.tensor("input_ids");
  std::vector<std::vector<int32_t>> rows;
  const bool cls = ref.find("lengths") != nullptr;
  for (int64_t r = 0; r < ids.dim(0); ++r)
    rows.push_back(int_row(ids, r, cls ? ref.tensor("lengths").data<int32_t>()[r] : -1));
  return rows;
}

/// Bitwise equality of two CPU f32 tensors of one shape.
inline bool bit_equal(const Tensor& a, const Tensor& b) {
  return a.shape() == b.shape() && a.dtype() == b.dtype() && std::memcmp(a.raw(), b.raw(), a.nbytes()) == 0;
}

/// Greedy decoding of `n` tokens with the EOS ids masked (transformers' min_new_tokens), through the
/// KV cache, with `lora` in effect.
inline std::vector<int32_t> greedy(const Model& model, const LoraSource* lora, const std::vector<int32_t>& prompt,
                                   int64_t n, const std::vector<int32_t>& eos = {2, 3}) {
  KVCache cache = model.make_cache(int64_t(prompt.size()) + n);
  const ForwardOptions opts{.logits = LogitsFor::last_token, .lora = lora};
  Tensor logits = model.forward(std::vector<SequenceInput>{{prompt, &cache}}, opts);
  std::vector<int32_t> out;
  for (int64_t i = 0; i < n; ++i) {
    float* row = logits.data<float>();
    for (int32_t e : eos) row[e] = -std::numeric_limits<float>::infinity();
    const int32_t next = int32_t(std::max_element(row, row + logits.dim(1)) - row);
    out.push_back(next);
    if (i + 1 == n) break;
    const int32_t step[] = {next};
    logits = model.forward(std::vector<SequenceInput>{{step, &cache}}, opts);
  }
  return out;
}

/// A CPU copy of every weight tensor the model computes with (embedding, norms, projections, head).
inline std::vector<Tensor> weight_snapshot(const Model& model) {
  std::vector<Tensor> out;
  for (auto& [name, tensor] : model.state_dict()) out.push_back(std::move(tensor));
  return out;
}

/// How many tensors of two snapshots differ in any bit.
inline int changed_tensors(const std::vector<Tensor>& a, const std::vector<Tensor>& b) {
  int n = 0;
  for (size_t i = 0; i < a.size(); ++i) n += !bit_equal(a[i], b[i]);
  return n;
}

/// LoRA on every projection of every layer.
inline LoraConfig all_projections(int64_t r, double alpha) {
  LoraConfig c;
  c.r = r;
  c.lora_alpha = alpha;
  c.target_modules = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"};
  return c;
}

}  // namespace wick::test
