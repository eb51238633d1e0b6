// The Qwen2 forward pass, written once against the backend interface.
#include <atomic>
#include <cmath>

#include "backend/backend.h"
#include "model/linear.h"
#include "model/weights.h"
#include "wick/error.h"
#include "wick/model.h"

namespace wick {

struct Model::Impl {
  ModelConfig config;
  GenerationDefaults generation;
  std::unique_ptr<Backend> backend;
  ModelWeights weights;
  std::atomic<std::shared_ptr<const LoraSource>> active_lora;
};

namespace {

// Activations of one forward pass over T tokens (all on the backend).
struct Activations {
  Tensor x;       // [T, hidden]  residual stream
  Tensor normed;  // [T, hidden]
  Tensor q;       // [T, heads · head_dim]
  Tensor k, v;    // [T, kv_heads · head_dim]
  Tensor attn;    // [T, heads · head_dim]
  Tensor proj;    // [T, hidden]  output of o_proj / down_proj
  Tensor gate;    // [T, ffn]
  Tensor up;      // [T, ffn]

  Activations(Backend& b, const ModelConfig& c, int64_t T) {
    const DType dt = b.compute_dtype();
    x = b.alloc({T, c.hidden_size}, dt);
    normed = b.alloc({T, c.hidden_size}, dt);
    q = b.alloc({T, c.q_dim()}, dt);
    k = b.alloc({T, c.kv_dim()}, dt);
    v = b.alloc({T, c.kv_dim()}, dt);
    attn = b.alloc({T, c.q_dim()}, dt);
    proj = b.alloc({T, c.hidden_size}, dt);
    gate = b.alloc({T, c.intermediate_size}, dt);
    up = b.alloc({T, c.intermediate_size}, dt);
  }
};

// Where each sequence's new tokens sit in the flattened batch.
struct Span {
  int64_t begin, count, past;
  KVCache* cache;
};

// Self-attention of one layer: q/k/v projections, RoPE, cache write, causal GQA, o_proj.
void attention_block(Backend& b, const ModelConfig& c, const LayerWeights& l, const std::vector<Span>& spans,
                     const Tensor& positions, const LoraSource* lora, Activations& a, int64_t layer) {
  const int64_t T = a.x.dim(0), d = c.head_dim;
  linear(b, a.normed, l.q, lora, a.q);
  linear(b, a.normed, l.k, lora, a.k);
  linear(b, a.normed, l.v, lora, a.v);
  Tensor q = a.q.reshape({T, c.num_heads, d});
  Tensor k = a.k.reshape({T, c.num_kv_heads, d});
  Tensor v = a.v.reshape({T, c.num_kv_heads, d});
  b.rope(q, positions, c.rope_theta);
  b.rope(k, positions, c.rope_theta);
  for (const Span& s : spans) {
    Tensor kc = s.cache->keys(layer), vc = s.cache->values(layer);  // [capacity, kv_heads, d]
    b.copy_rows(k.rows(s.begin, s.begin + s.count), kc, s.past);
    b.copy_rows(v.rows(s.begin, s.begin + s.count), vc, s.past);
    Tensor out = a.attn.rows(s.begin, s.begin + s.count);
    b.attention(q.rows(s.begin, s.begin + s.count), kc, vc, out,
                {.num_heads = c.num_heads, .num_kv_heads = c.num_kv_heads, .head_dim = d, .past = s.past,
                 .scale = float(1.0 / std::sqrt(double(d)))});
  }
  linear(b, a.attn, l.o, lora, a.proj);
}

// SwiGLU MLP: down(silu(gate(x)) ⊙ up(x)).
void mlp_block(Backend& b, const LayerWeights& l, const LoraSource* lora, Activations& a) {
  linear(b, a.normed, l.gate, lora, a.gate);
  linear(b, a.normed, l.up, lora, a.up);
  b.swiglu(a.gate, a.up, a.gate);
  linear(b, a.gate, l.down, lora, a.proj);
}

void decoder_layer(Backend& b, const ModelConfig& c, const LayerWeights& l, const std::vector<Span>& spans,
                   const Tensor& positions, const LoraSource* lora, Activations& a, int64_t layer) {
  const float eps = float(c.rms_norm_eps);
  b.rmsnorm(a.x, l.input_norm, eps, a.normed);
  attention_block(b, c, l, spans, positions, lora, a, layer);
  b.add(a.x, a.proj, a.x);
  b.rmsnorm(a.x, l.post_attention_norm, eps, a.normed);
  mlp_block(b, l, lora, a);
  b.add(a.x, a.proj, a.x);
}

}  // namespace

Model::Model(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Model::~Model() = default;

std::shared_ptr<Model> Model::load(const std::filesystem::path& dir, const LoadOptions& options) {
  auto impl = std::make_unique<Impl>();
  impl->config = ModelConfig::load(dir);
  impl->generation = GenerationDefaults::load(dir);
  if (impl->generation.eos_token_ids.empty()) impl->generation.eos_token_ids = impl->config.eos_token_ids;
  const TensorStore store = TensorStore::open_dir(dir);
  impl->backend = make_backend(options.device);
  impl->weights = load_weights(impl->config, store, *impl->backend, dir.string());
  return std::shared_ptr<Model>(new Model(std::move(impl)));
}

const ModelConfig& Model::config() const { return impl_->config; }
const GenerationDefaults& Model::generation_defaults() const { return impl_->generation; }
Device Model::device() const { return impl_->backend->device(); }

KVCache Model::make_cache(int64_t capacity) const {
  const ModelConfig& c = impl_->config;
  if (capacity <= 0 || capacity > c.max_position_embeddings)
    fail(ErrorKind::bad_input, "KV cache capacity " + std::to_string(capacity) + " is outside [1, " +
                                   std::to_string(c.max_position_embeddings) + "] (max_position_embeddings)");
  const Shape shape{c.num_layers, capacity, c.num_kv_heads, c.head_dim};
  Backend& b = *impl_->backend;
  return KVCache(b.alloc(shape, b.compute_dtype()), b.alloc(shape, b.compute_dtype()));
}

Tensor Model::forward(std::span<const SequenceInput> batch, const ForwardOptions& options) const {
  const ModelConfig& c = impl_->config;
  Backend& b = *impl_->backend;
  if (batch.empty()) fail(ErrorKind::bad_input, "forward: empty batch");

  // Validate everything before touching any cache.
  std::vector<Span> spans;
  int64_t T = 0;
  for (size_t s = 0; s < batch.size(); ++s) {
    const SequenceInput& in = batch[s];
    const std::string where = "sequence " + std::to_string(s);
    if (!in.cache) fail(ErrorKind::bad_input, where + ": no KV cache given");
    if (in.tokens.empty()) fail(ErrorKind::bad_input, where + ": no tokens");
    for (int32_t id : in.tokens)
      if (id < 0 || id >= c.vocab_size)
        fail(ErrorKind::bad_input, where + ": token id " + std::to_string(id) + " is outside the vocabulary [0, " +
                                       std::to_string(c.vocab_size) + ")");
    const int64_t past = in.cache->length(), n = int64_t(in.tokens.size());
    if (past + n > in.cache->capacity())
      fail(ErrorKind::bad_input, where + ": " + std::to_string(past) + " cached + " + std::to_string(n) +
                                     " new tokens exceed the context of " + std::to_string(in.cache->capacity()));
    for (size_t o = 0; o < s; ++o)
      if (batch[o].cache == in.cache) fail(ErrorKind::bad_input, where + ": shares its KV cache with sequence " + std::to_string(o));
    spans.push_back({T, n, past, in.cache});
    T += n;
  }

  std::vector<int32_t> ids, pos;
  ids.reserve(size_t(T));
  pos.reserve(size_t(T));
  for (const Span& s : spans) {
    const SequenceInput& in = batch[size_t(&s - spans.data())];
    ids.insert(ids.end(), in.tokens.begin(), in.tokens.end());
    for (int64_t i = 0; i < s.count; ++i) pos.push_back(int32_t(s.past + i));
  }
  const Tensor ids_t = b.upload(Tensor::from_ints(ids, {T}), DType::i32);
  const Tensor pos_t = b.upload(Tensor::from_ints(pos, {T}), DType::i32);

  Activations a(b, c, T);
  b.embedding(impl_->weights.embed, ids_t, a.x);
  for (int64_t l = 0; l < c.num_layers; ++l)
    decoder_layer(b, c, impl_->weights.layers[size_t(l)], spans, pos_t, options.lora, a, l);

  // The head runs only on the rows asked for.
  Tensor rows = a.x;
  if (options.logits == LogitsFor::last_token) {
    rows = b.alloc({int64_t(spans.size()), c.hidden_size}, b.compute_dtype());
    for (size_t s = 0; s < spans.size(); ++s) {
      const int64_t last = spans[s].begin + spans[s].count - 1;
      b.copy_rows(a.x.rows(last, last + 1), rows, int64_t(s));
    }
  }
  Tensor normed = b.alloc(rows.shape(), b.compute_dtype());
  b.rmsnorm(rows, impl_->weights.final_norm, float(c.rms_norm_eps), normed);
  Tensor logits = b.alloc({rows.dim(0), impl_->weights.head.dim(0)}, DType::f32);  // f32 logits on every backend
  b.linear(normed, impl_->weights.head, Tensor(), logits);
  Tensor out = b.download(logits);
  for (const Span& s : spans) s.cache->advance(s.count);
  return out;
}

std::shared_ptr<const LoraSource> Model::active_lora() const { return impl_->active_lora.load(); }
void Model::set_active_lora(std::shared_ptr<const LoraSource> lora) { impl_->active_lora.store(std::move(lora)); }

Tensor Model::logits(const std::vector<std::vector<int32_t>>& rows, const LoraSource* lora) const {
  const ModelConfig& c = impl_->config;
  if (rows.empty()) fail(ErrorKind::bad_input, "logits: no rows");
  const bool causal = c.head == ModelHead::causal_lm;
  for (size_t r = 0; r < rows.size(); ++r)
    if (causal && rows[r].size() != rows[0].size())
      fail(ErrorKind::bad_input, "logits: row " + std::to_string(r) + " has " + std::to_string(rows[r].size()) +
                                     " tokens but row 0 has " + std::to_string(rows[0].size()) +
                                     " (a causal LM needs rows of equal length)");
  std::vector<KVCache> caches;
  std::vector<SequenceInput> batch;
  caches.reserve(rows.size());
  for (const auto& r : rows) {
    if (r.empty()) fail(ErrorKind::bad_input, "logits: empty row");
    if (int64_t(r.size()) > c.max_position_embeddings)
      fail(ErrorKind::bad_input, "logits: a row of " + std::to_string(r.size()) + " tokens exceeds max_position_embeddings " +
                                     std::to_string(c.max_position_embeddings));
    caches.push_back(make_cache(int64_t(r.size())));
  }
  for (size_t r = 0; r < rows.size(); ++r) batch.push_back({rows[r], &caches[r]});
  Tensor out = forward(batch, {.logits = causal ? LogitsFor::every_token : LogitsFor::last_token, .lora = lora});
  if (causal) return out.reshape({int64_t(rows.size()), int64_t(rows[0].size()), c.vocab_size});
  return out;
}

}  // namespace wick
