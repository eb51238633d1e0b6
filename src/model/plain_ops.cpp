#include "model/plain_ops.h"

#include <algorithm>
#include <cstring>

#include "backend/collective.h"
#include "wick/error.h"

namespace wick {

std::optional<AdapterWords> adapter_words(Backend& b, const ModelConfig& c, const FlatBatch& flat) {
  if (b.device() == Device::cpu) return std::nullopt;
  AdapterWords out{.words = std::vector<int32_t>(2 * flat.ids.size(), 0)};
  for (const Span& s : flat.spans) {
    if (!s.lora) continue;
    const LoraSource::Table& t = s.lora->table(c.num_layers);
    if (t.max_rank == 0) continue;
    if (!t.uniform || t.device != b.device() || t.dtype != b.compute_dtype()) return std::nullopt;
    out.max_rank = std::max(out.max_rank, t.max_rank);
    const uint64_t address = uint64_t(reinterpret_cast<uintptr_t>(s.lora->device_table(c.num_layers, b).raw()));
    for (int64_t r = s.begin; r < s.begin + s.count; ++r) std::memcpy(&out.words[size_t(2 * r)], &address, 8);
  }
  if (out.max_rank == 0) return std::nullopt;
  return out;
}

PlainOps::PlainOps(Backend& b, const ModelConfig& c, const PlainBatch& batch, const LoraSource* lora, Activations& a,
                   HeadBuffers& hb)
    : b_(b), c_(c), batch_(batch), lora_(lora), a_(a), hb_(hb) {
  if (batch_.tp) shard_ = batch_.tp->shard.rank;
  FusedRows* rows = b.fused_rows();
  const bool one_cache = !batch_.paged && batch_.spans->size() == 1 && batch_.spans->front().cache;
  if (rows && (batch_.paged || one_cache) && !batch_.mixed_lora && !lora && batch_.ids.numel() <= rows->step_rows() &&
      rows->supports({.hidden = c.hidden_size, .ffn = c.intermediate_size, .heads = c.num_heads,
                      .kv_heads = c.num_kv_heads, .head_dim = c.head_dim}))
    rows_ = rows;
  if (!batch_.mixed_lora || batch_.row_adapters) return;
  for (const Span& s : *batch_.spans) {
    if (!segments_.empty() && segments_.back().lora == s.lora) segments_.back().count += s.count;
    else segments_.push_back({s.begin, s.count, s.lora});
  }
}

void PlainOps::project(const Tensor& in, const Projection& w, Tensor& out) {
  if (const RowAdapters* rows = batch_.row_adapters) {
    linear_rows(b_, in, w, rows->tables, rows->max_rank, out);
  } else if (batch_.mixed_lora) {
    linear_segments(b_, in, w, segments_, out);
  } else {
    linear(b_, in, w, lora_, out);
  }
}

void PlainOps::embed(const Tensor& table, Tensor& x) {
  b_.embedding(table, batch_.ids, x);
  if (const RankOfMany* tp = batch_.tp) tp->collective->all_reduce(x, shard_);  // each token's row is on one rank
  pending_ = Tensor();
}

void PlainOps::normalize(const Normed& n, Tensor& out) {
  const float eps = float(c_.rms_norm_eps);
  if (!pending_.defined()) {
    b_.rmsnorm(*n.x, *n.weight, eps, out);
    return;
  }
  if (pending_.raw() != n.x->raw()) fail(ErrorKind::internal, "plain ops: a norm of another stream than the pending residual's");
  b_.add_rmsnorm(pending_, a_.proj, *n.weight, eps, out);
  pending_ = Tensor();
}

FusedInput PlainOps::normed_input(const Normed& n) {
  settle_residual();
  return {.x = *n.x, .norm = *n.weight, .eps = float(c_.rms_norm_eps)};
}

void PlainOps::settle_residual() {
  if (!pending_.defined()) return;
  b_.add(pending_, a_.proj, pending_);
  pending_ = Tensor();
}

void PlainOps::attention_inputs(const Normed& h, const Projection& q, const Projection& k, const Projection& v,
                                int64_t layer, Tensor& q_out) {
  // The biases ride in rope_kv's launch (the projections' outputs get them there, as linear would add them).
  const QkvBias bias = q.bias.defined() && k.bias.defined() && v.bias.defined()
                           ? QkvBias{.q = q.bias, .k = k.bias, .v = v.bias}
                           : QkvBias{};
  if (rows_ && (bias.defined() || !(q.bias.defined() || k.bias.defined() || v.bias.defined()))) {
    // The pool's rows, or one sequence's cache: rows [capacity, kv_heads, d], a token's at its position.
    const PagedRows* paged = batch_.paged;
    const KVCache* cache = paged ? nullptr : batch_.spans->front().cache;
    Tensor kp = paged ? paged->pool->keys(layer, shard_) : cache->keys(layer, shard_);
    Tensor vp = paged ? paged->pool->values(layer, shard_) : cache->values(layer, shard_);
    rows_->attention_inputs(normed_input(h),
                            {.weight = {q.weight, k.weight, v.weight}, .bias = {bias.q, bias.k, bias.v},
                             .positions = batch_.positions, .slots = paged ? paged->slots : batch_.positions,
                             .rope_theta = c_.rope_theta, .head_dim = c_.head_dim},
                            q_out, kp, vp);
    return;
  }
  normalize(h, a_.normed);
  const auto unbiased = [&](const Projection& p) {
    Projection w = p;
    if (bias.defined()) w.bias = Tensor();
    return w;
  };
  project(a_.normed, unbiased(q), q_out);
  project(a_.normed, unbiased(k), a_.k);
  project(a_.normed, unbiased(v), a_.v);
  const int64_t T = q_out.dim(0), d = c_.head_dim;
  Tensor qh = q_out.reshape({T, c_.num_heads, d});
  Tensor kh = a_.k.reshape({T, c_.num_kv_heads, d});
  const Tensor vh = a_.v.reshape({T, c_.num_kv_heads, d});
  if (const PagedRows* paged = batch_.paged) {  // RoPE, then every new key and value into its pool row
    Tensor kp = paged->pool->keys(layer, shard_), vp = paged->pool->values(layer, shard_);
    b_.rope_kv(qh, kh, vh, batch_.positions, c_.rope_theta, kp, vp, paged->slots, bias);
    return;
  }
  for (const Span& s : *batch_.spans) {
    Tensor qs = qh.rows(s.begin, s.begin + s.count), ks = kh.rows(s.begin, s.begin + s.count);
    const Tensor vs = vh.rows(s.begin, s.begin + s.count), pos = batch_.positions.rows(s.begin, s.begin + s.count);
    Tensor kc = s.cache->keys(layer, shard_), vc = s.cache->values(layer, shard_);  // [capacity, kv_heads, d]
    b_.rope_kv(qs, ks, vs, pos, c_.rope_theta, kc, vc, Tensor(), bias);
  }
}

void PlainOps::attention(const Tensor& q, int64_t layer, Tensor& out) {
  const Tensor qh = q.reshape({q.dim(0), c_.num_heads, c_.head_dim});
  if (const PagedRows* paged = batch_.paged) {
    b_.paged_attention(qh, paged->pool->keys(layer, shard_), paged->pool->values(layer, shard_), paged->keys, out,
                       attention_params(c_));
    return;
  }
  for (const Span& s : *batch_.spans) {
    Tensor rows = out.rows(s.begin, s.begin + s.count);
    b_.attention(qh.rows(s.begin, s.begin + s.count), s.cache->keys(layer, shard_), s.cache->values(layer, shard_),
                 batch_.positions.rows(s.begin, s.begin + s.count), rows, attention_params(c_));
  }
}

void PlainOps::add_projection(const Tensor& in, const Projection& w, Tensor& x) {
  settle_residual();
  if (const RankOfMany* tp = batch_.tp) {  // each rank's product is a part of the sum over the split columns
    if (rows_) {
      // The add rides in the projection's epilogue: rank 0 adds its part into the stream, every other rank its part
      // into zeros, and the sum across ranks is the updated stream. (A row-split projection's bias is rank 0's only:
      // every rank takes this path, whatever its bias.)
      if (shard_ != 0) b_.zero(x);
      if (w.bias.defined()) {
        project(in, w, a_.proj);
        b_.add(x, a_.proj, x);
      } else {
        rows_->residual_linear(in, w.weight, x);
      }
      tp->collective->all_reduce(x, shard_);
      return;
    }
    project(in, w, a_.proj);
    tp->collective->all_reduce(a_.proj, shard_);
    pending_ = x;
    return;
  }
  if (rows_ && !w.bias.defined()) {  // the add rides in the projection's epilogue
    rows_->residual_linear(in, w.weight, x);
    return;
  }
  project(in, w, a_.proj);
  pending_ = x;
}

void PlainOps::gated_mlp_input(const Normed& m, const Projection& gate, const Projection& up, Tensor& out) {
  if (rows_ && !gate.bias.defined() && !up.bias.defined()) {
    rows_->gate_up(normed_input(m), gate.weight, up.weight, out);
    return;
  }
  normalize(m, a_.normed);
  project(a_.normed, gate, out);
  project(a_.normed, up, a_.up);
  b_.swiglu(out, a_.up, out);
}

void PlainOps::logits(const Normed& n, const Tensor& head, Tensor& logits) {
  settle_residual();
  Tensor rows = *n.x;  // the head runs only on the rows asked for
  if (hb_.last_only) {
    rows = hb_.last;
    const std::vector<Span>& spans = *batch_.spans;
    for (size_t s = 0; s < spans.size(); ++s) {
      const int64_t last = spans[s].begin + spans[s].count - 1;
      b_.copy_rows(n.x->rows(last, last + 1), rows, int64_t(s));
    }
  }
  if (!head.defined()) {  // the hidden states are the result
    b_.rmsnorm(rows, *n.weight, float(c_.rms_norm_eps), logits);
    return;
  }
  if (rows_ && rows.dim(0) <= rows_->head_rows()) {
    rows_->linear_f32({.x = rows, .norm = *n.weight, .eps = float(c_.rms_norm_eps)}, head, logits);
    return;
  }
  b_.rmsnorm(rows, *n.weight, float(c_.rms_norm_eps), hb_.normed);
  b_.linear(hb_.normed, head, Tensor(), logits);
}

}  // namespace wick
