#include "model/train_ops.h"

#include <string>
#include <utility>

#include "model/head_loss.h"
#include "wick/error.h"

namespace wick {

namespace {

// Overloads of a visitor, one per step type.
template <class... F>
struct Visit : F... {
  using F::operator()...;
};
template <class... F>
Visit(F...) -> Visit<F...>;  // clang 14 does not deduce aggregate template arguments (C++20's P1816)

}  // namespace

TrainOps::TrainOps(Backend& b, const ModelConfig& c, const TrainBatch& batch, const LoraSource* lora,
                   LoraGradients& grads, const TrainOpsOptions& options)
    : b_(b), c_(c), batch_(batch), lora_(lora), grads_(grads), options_(options),
      layer_inputs_(size_t(c.num_layers)) {}

Tensor TrainOps::copy(const Tensor& t) {
  Tensor out = b_.alloc(t.shape(), t.dtype());
  b_.copy_rows(t, out, 0);
  return out;
}

Tensor TrainOps::normalize(const Normed& n) {
  Tensor out = b_.alloc(n.x->shape(), n.x->dtype());
  b_.rmsnorm(*n.x, *n.weight, float(c_.rms_norm_eps), out);
  return out;
}

// Steps arrive layer by layer. With recompute, a layer's records go when the next layer starts; the stream as the
// layer first read it (its input) stays, to run the layer again from.
void TrainOps::record(int64_t layer, Step step) {
  if (layer != layer_ && options_.recompute && !replaying_ && layer_ >= 0 && layer_ < c_.num_layers)
    while (!tape_.empty() && tape_.back().layer == layer_) tape_.pop_back();
  layer_ = layer;
  if (layer >= 0 && layer < c_.num_layers && !layer_inputs_[size_t(layer)].defined()) {
    if (const auto* s = std::get_if<QkvStep>(&step)) layer_inputs_[size_t(layer)] = s->x;
    if (const auto* s = std::get_if<MlpStep>(&step)) layer_inputs_[size_t(layer)] = s->x;
  }
  tape_.push_back({layer, std::move(step)});
}

bool TrainOps::restore_input(int64_t layer, Tensor& x) {
  if (!options_.recompute) return false;
  const Tensor& in = layer_inputs_.at(size_t(layer));
  if (!in.defined()) fail(ErrorKind::internal, "train ops: no saved input of layer " + std::to_string(layer));
  b_.copy_rows(in, x, 0);
  replaying_ = true;
  return true;
}

// --- Forward: the plain ops, keeping what each step's backward reads ---

void TrainOps::embed(const Tensor& table, Tensor& x) {
  b_.embedding(table, batch_.ids, x);
  record(-1, EmbedStep{.stream = x.raw()});
}

void TrainOps::attention_inputs(const Normed& h, const Projection& q, const Projection& k, const Projection& v,
                                int64_t layer, Tensor& q_out) {
  const int64_t T = q_out.dim(0), d = c_.head_dim;
  QkvStep s{.x = copy(*h.x), .normed = normalize(h), .k = b_.alloc({T, c_.kv_dim()}, b_.compute_dtype()),
            .v = b_.alloc({T, c_.kv_dim()}, b_.compute_dtype()), .norm = h.weight, .proj = {q, k, v},
            .stream = h.x->raw(), .q_out = q_out.raw()};
  linear(b_, s.normed, q, lora_, q_out, dropout_of(q));
  linear(b_, s.normed, k, lora_, s.k, dropout_of(k));
  linear(b_, s.normed, v, lora_, s.v, dropout_of(v));
  Tensor qh = q_out.reshape({T, c_.num_heads, d}), kh = s.k.reshape({T, c_.num_kv_heads, d});
  b_.rope(qh, batch_.positions, c_.rope_theta);
  b_.rope(kh, batch_.positions, c_.rope_theta);
  k_ = s.k;
  v_ = s.v;
  record(layer, std::move(s));
}

void TrainOps::attention(const Tensor& q, int64_t layer, Tensor& out) {
  AttentionStep s{.q = copy(q), .k = k_, .v = v_, .q_in = q.raw(), .out = out.raw()};
  const int64_t T = q.dim(0), d = c_.head_dim;
  const Tensor qh = s.q.reshape({T, c_.num_heads, d});
  const Tensor kh = s.k.reshape({T, c_.num_kv_heads, d}), vh = s.v.reshape({T, c_.num_kv_heads, d});
  for (const Span& sp : batch_.spans) {
    const int64_t b = sp.begin, e = sp.begin + sp.count;
    Tensor rows = out.rows(b, e);
    b_.attention(qh.rows(b, e), kh.rows(b, e), vh.rows(b, e), batch_.positions.rows(b, e), rows,
                 attention_params(c_));
  }
  record(layer, std::move(s));
}

void TrainOps::add_projection(const Tensor& in, const Projection& w, Tensor& x) {
  ProjectionStep s{.in = copy(in), .proj = w, .in_key = in.raw(), .stream = x.raw()};
  Tensor y = b_.alloc(x.shape(), x.dtype());
  linear(b_, in, w, lora_, y, dropout_of(w));
  b_.add(x, y, x);
  record(w.layer, std::move(s));
}

void TrainOps::gated_mlp_input(const Normed& m, const Projection& gate, const Projection& up, Tensor& out) {
  MlpStep s{.x = copy(*m.x), .normed = normalize(m), .gate = b_.alloc(out.shape(), out.dtype()),
            .up = b_.alloc(out.shape(), out.dtype()), .norm = m.weight, .proj = {gate, up}, .stream = m.x->raw(),
            .out = out.raw()};
  linear(b_, s.normed, gate, lora_, s.gate, dropout_of(gate));
  linear(b_, s.normed, up, lora_, s.up, dropout_of(up));
  b_.swiglu(s.gate, s.up, out);
  record(gate.layer, std::move(s));
}

void TrainOps::logits(const Normed& n, const Tensor& head, Tensor&) {
  HeadStep s{.norm = n.weight, .head = head, .stream = n.x->raw()};
  if (batch_.last_only) {
    s.rows = b_.alloc({int64_t(batch_.spans.size()), c_.hidden_size}, n.x->dtype());
    for (size_t i = 0; i < batch_.spans.size(); ++i) {
      const int64_t last = batch_.spans[i].begin + batch_.spans[i].count - 1;
      b_.copy_rows(n.x->rows(last, last + 1), s.rows, int64_t(i));
    }
  } else {
    s.rows = copy(*n.x);
  }
  s.normed = normalize(rmsnorm(s.rows, *n.weight));
  record(c_.num_layers, std::move(s));
}

// --- Backward: the twins, last step first ---

double TrainOps::backward_from(int64_t layer) {
  double loss = 0;
  const Visit visit{[&](const HeadStep& s) { loss += backward(s); }, [&](const auto& s) { backward(s); }};
  while (!tape_.empty() && tape_.back().layer >= layer) {
    std::visit(visit, tape_.back().step);
    tape_.pop_back();
  }
  return loss;
}

double TrainOps::backward(const HeadStep& s) {
  if (options_.loss_only)
    return head_cross_entropy(b_, s.normed, s.head, batch_.targets, {}, {.chunk_rows = options_.loss_chunk_rows});
  Tensor d_normed = b_.alloc(s.normed.shape(), s.normed.dtype());
  Tensor* d_head = grads_.head.defined() ? &grads_.head : nullptr;
  const double loss = head_cross_entropy(b_, s.normed, s.head, batch_.targets, {.dx = &d_normed, .d_head = d_head},
                                         {.chunk_rows = options_.loss_chunk_rows, .scale = options_.loss_scale});
  if (!batch_.last_only) {
    norm_backward(s.rows, *s.norm, d_normed, s.stream);
    return loss;
  }
  Tensor d_rows = b_.alloc(s.rows.shape(), s.rows.dtype());
  b_.rmsnorm_backward(s.rows, *s.norm, float(c_.rms_norm_eps), d_normed, d_rows);
  const int64_t T = batch_.ids.numel();
  Tensor dx = b_.alloc({T, c_.hidden_size}, s.rows.dtype());  // zero but at each sequence's last token
  b_.zero(dx);
  for (size_t i = 0; i < batch_.spans.size(); ++i)
    b_.copy_rows(d_rows.rows(int64_t(i), int64_t(i) + 1), dx, batch_.spans[i].begin + batch_.spans[i].count - 1);
  add_grad(s.stream, dx);
  return loss;
}

void TrainOps::backward(const ProjectionStep& s) {
  Tensor d_in = b_.alloc(s.in.shape(), s.in.dtype());
  linear_backward(b_, s.in, s.proj, lora_, peek_grad(s.stream), &d_in, grads_of(s.proj),
                  {.dropout = dropout_of(s.proj)});  // x passes through
  add_grad(s.in_key, d_in);
}

void TrainOps::backward(const MlpStep& s) {
  const Tensor d_out = take_grad(s.out);
  Tensor d_gate = b_.alloc(s.gate.shape(), s.gate.dtype()), d_up = b_.alloc(s.up.shape(), s.up.dtype());
  b_.swiglu_backward(s.gate, s.up, d_out, d_gate, d_up);
  Tensor d_normed = b_.alloc(s.normed.shape(), s.normed.dtype());
  linear_backward(b_, s.normed, s.proj[0], lora_, d_gate, &d_normed, grads_of(s.proj[0]),
                  {.dropout = dropout_of(s.proj[0])});
  linear_backward(b_, s.normed, s.proj[1], lora_, d_up, &d_normed, grads_of(s.proj[1]),
                  {.accumulate_dx = true, .dropout = dropout_of(s.proj[1])});
  norm_backward(s.x, *s.norm, d_normed, s.stream);
}

void TrainOps::backward(const AttentionStep& s) {
  const Tensor d_out = take_grad(s.out);
  const int64_t T = s.q.dim(0), d = c_.head_dim;
  Tensor dq = b_.alloc(s.q.shape(), s.q.dtype()), dk = b_.alloc(s.k.shape(), s.k.dtype());
  Tensor dv = b_.alloc(s.v.shape(), s.v.dtype());
  b_.zero(dk);  // attention_backward accumulates into the keys' and values' gradients
  b_.zero(dv);
  const Tensor qh = s.q.reshape({T, c_.num_heads, d});
  const Tensor kh = s.k.reshape({T, c_.num_kv_heads, d}), vh = s.v.reshape({T, c_.num_kv_heads, d});
  const Tensor dqh = dq.reshape({T, c_.num_heads, d});
  const Tensor dkh = dk.reshape({T, c_.num_kv_heads, d}), dvh = dv.reshape({T, c_.num_kv_heads, d});
  for (const Span& sp : batch_.spans) {
    const int64_t b = sp.begin, e = sp.begin + sp.count;
    b_.attention_backward({.q = qh.rows(b, e), .k = kh.rows(b, e), .v = vh.rows(b, e),
                           .positions = batch_.positions.rows(b, e)},
                          d_out.rows(b, e), {.dq = dqh.rows(b, e), .dk = dkh.rows(b, e), .dv = dvh.rows(b, e)},
                          attention_params(c_));
  }
  add_grad(s.q_in, dq);
  add_grad(s.k.raw(), dk);
  add_grad(s.v.raw(), dv);
}

void TrainOps::backward(const QkvStep& s) {
  Tensor dq = take_grad(s.q_out), dk = take_grad(s.k.raw());
  const Tensor dv = take_grad(s.v.raw());
  const int64_t T = dq.dim(0), d = c_.head_dim;
  Tensor dqh = dq.reshape({T, c_.num_heads, d}), dkh = dk.reshape({T, c_.num_kv_heads, d});
  b_.rope_backward(dqh, batch_.positions, c_.rope_theta);
  b_.rope_backward(dkh, batch_.positions, c_.rope_theta);
  Tensor d_normed = b_.alloc(s.normed.shape(), s.normed.dtype());
  linear_backward(b_, s.normed, s.proj[0], lora_, dq, &d_normed, grads_of(s.proj[0]),
                  {.dropout = dropout_of(s.proj[0])});
  linear_backward(b_, s.normed, s.proj[1], lora_, dk, &d_normed, grads_of(s.proj[1]),
                  {.accumulate_dx = true, .dropout = dropout_of(s.proj[1])});
  linear_backward(b_, s.normed, s.proj[2], lora_, dv, &d_normed, grads_of(s.proj[2]),
                  {.accumulate_dx = true, .dropout = dropout_of(s.proj[2])});
  norm_backward(s.x, *s.norm, d_normed, s.stream);
}

void TrainOps::backward(const EmbedStep& s) { take_grad(s.stream); }  // the embedding is frozen

void TrainOps::norm_backward(const Tensor& x, const Tensor& norm, const Tensor& d_normed, const void* stream) {
  Tensor dx = b_.alloc(x.shape(), x.dtype());
  b_.rmsnorm_backward(x, norm, float(c_.rms_norm_eps), d_normed, dx);
  add_grad(stream, dx);
}

LoraGrads* TrainOps::grads_of(const Projection& p) {
  if (!lora_ || !lora_->factors(p.layer, p.kind)) return nullptr;
  LoraGrads& g = grads_.slots.at(size_t(lora_slot(p.layer, p.kind)));
  return g.a.defined() ? &g : nullptr;
}

LoraDropout TrainOps::dropout_of(const Projection& p) const {
  if (options_.lora_dropout <= 0.0f) return {};
  // splitmix64's increment separates the streams of (layer, projection); the mask hashes the element index in.
  return {.p = options_.lora_dropout,
          .seed = options_.dropout_seed ^ (uint64_t(lora_slot(p.layer, p.kind)) + 1) * 0xD1B54A32D192ED03ull};
}

// --- Gradients between steps ---

void TrainOps::add_grad(const void* key, Tensor g) {
  auto [it, fresh] = grad_.try_emplace(key, g);
  if (!fresh) b_.add(it->second, g, it->second);
}

Tensor TrainOps::take_grad(const void* key) {
  auto it = grad_.find(key);
  if (it == grad_.end()) fail(ErrorKind::internal, "train ops: a step's output received no gradient");
  Tensor g = std::move(it->second);
  grad_.erase(it);
  return g;
}

const Tensor& TrainOps::peek_grad(const void* key) const {
  auto it = grad_.find(key);
  if (it == grad_.end()) fail(ErrorKind::internal, "train ops: the residual stream received no gradient");
  return it->second;
}

}  // namespace wick
