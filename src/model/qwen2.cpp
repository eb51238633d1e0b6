// The Qwen2 forward pass, written once against the backend interface.
#include <cmath>
#include <climits>
#include <cstring>
#include <exception>

#include "backend/backend.h"
#include "model/forward.h"
#include "model/linear.h"
#include "model/model_impl.h"
#include "model/weights.h"
#include "wick/error.h"
#include "wick/model.h"

namespace wick {

Activations::Activations(Backend& b, const ModelConfig& c, int64_t T) {
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

HeadBuffers::HeadBuffers(Backend& b, const ModelConfig& c, const Tensor& head, int64_t rows, bool last)
    : last_only(last),
      last(last ? b.alloc({rows, c.hidden_size}, b.compute_dtype()) : Tensor()),
      normed(b.alloc({rows, c.hidden_size}, b.compute_dtype())),
      logits(b.alloc({rows, head.dim(0)}, DType::f32)) {}  // f32 logits on every backend

namespace {

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
  for (const Span& s : spans) {
    Tensor kc = s.cache->keys(layer), vc = s.cache->values(layer);  // [capacity, kv_heads, d]
    const Tensor pos = positions.rows(s.begin, s.begin + s.count);  // cache rows of the new tokens
    Tensor qs = q.rows(s.begin, s.begin + s.count), ks = k.rows(s.begin, s.begin + s.count);
    b.rope_kv(qs, ks, v.rows(s.begin, s.begin + s.count), pos, c.rope_theta, kc, vc);
    Tensor out = a.attn.rows(s.begin, s.begin + s.count);
    b.attention(q.rows(s.begin, s.begin + s.count), kc, vc, pos, out,
                {.num_heads = c.num_heads, .num_kv_heads = c.num_kv_heads, .head_dim = d,
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

// One decoder layer. Each residual add is folded into the norm that follows it: the layer starts by adding
// the previous block's output (a.proj; zero before the first layer) and leaves its MLP output in a.proj.
void decoder_layer(Backend& b, const ModelConfig& c, const LayerWeights& l, const std::vector<Span>& spans,
                   const Tensor& positions, const LoraSource* lora, Activations& a, int64_t layer) {
  const float eps = float(c.rms_norm_eps);
  b.add_rmsnorm(a.x, a.proj, l.input_norm, eps, a.normed);
  attention_block(b, c, l, spans, positions, lora, a, layer);
  b.add_rmsnorm(a.x, a.proj, l.post_attention_norm, eps, a.normed);
  mlp_block(b, l, lora, a);
}

// Embedding → decoder layers → final norm → head over the flattened batch; logits land in hb.logits.
void run_passes(Backend& b, const ModelConfig& c, const ModelWeights& w, const Heads& heads,
                const std::vector<Span>& spans, const Tensor& ids, const Tensor& positions, const LoraSource* lora,
                Activations& a, HeadBuffers& hb) {
  b.embedding(heads.embed, ids, a.x);
  b.zero(a.proj);
  for (int64_t l = 0; l < c.num_layers; ++l) decoder_layer(b, c, w.layers[size_t(l)], spans, positions, lora, a, l);
  b.add(a.x, a.proj, a.x);  // the last layer's MLP output
  Tensor rows = a.x;  // the head runs only on the rows asked for
  if (hb.last_only) {
    rows = hb.last;
    for (size_t s = 0; s < spans.size(); ++s) {
      const int64_t last = spans[s].begin + spans[s].count - 1;
      b.copy_rows(a.x.rows(last, last + 1), rows, int64_t(s));
    }
  }
  b.rmsnorm(rows, w.final_norm, float(c.rms_norm_eps), hb.normed);
  b.linear(hb.normed, heads.head, Tensor(), hb.logits);
}

// The embedding and head in effect: an adapter may replace either (PEFT modules_to_save).
Heads pick_heads(const ModelWeights& w, const LoraSource* lora) {
  return {.embed = lora && lora->embedding() ? *lora->embedding() : w.embed,
          .head = lora && lora->head() ? *lora->head() : w.head};
}

// One-token step with the fused decode ops: five passes per layer (q/k/v with RoPE and the cache write,
// attention, o_proj + residual, gate/up + SwiGLU, down_proj + residual), the final norm folded into the head.
// With `lora`, the kernels read the adapter from the model's device table, which begin_step fills each step, so
// one recorded graph serves every adapter; without, they are the leaner builds that read no table at all.
void run_fused_step(Backend& b, const ModelConfig& c, const ModelWeights& w, const Heads& heads, KVCache& cache,
                    Tensor& lora_table, Model::Impl::DecodeGraph& g, bool lora) {
  FusedDecode& f = *b.fused_decode();
  Activations& a = g.acts;
  const float eps = float(c.rms_norm_eps);
  f.begin_step(heads.embed, g.ids, a.x, g.source, lora_table);
  const auto* entries = static_cast<const LoraEntry*>(lora_table.raw());
  for (int64_t l = 0; l < c.num_layers; ++l) {
    const LayerWeights& lw = w.layers[size_t(l)];
    const auto lora_of = [&](ProjKind first, int op) {
      if (!lora) return DecodeLora{};
      return DecodeLora{.entries = entries + l * kProjKinds + int(first),
                        .scratch = static_cast<std::byte*>(g.lora_scratch.raw()) + (l * 4 + op) * kFusedLoraScratchBytes,
                        .epoch = g.epoch.data<int32_t>()};
    };
    Tensor kc = cache.keys(l), vc = cache.values(l);
    f.attention_inputs(a.x, lw.input_norm, eps, {lw.q.weight, lw.k.weight, lw.v.weight},
                       {lw.q.bias, lw.k.bias, lw.v.bias}, g.pos, c.rope_theta, c.head_dim, a.q, kc, vc,
                       lora_of(ProjKind::q, 0));
    b.attention(a.q.reshape({1, c.num_heads, c.head_dim}), kc, vc, g.pos, a.attn,
                {.num_heads = c.num_heads, .num_kv_heads = c.num_kv_heads, .head_dim = c.head_dim,
                 .scale = float(1.0 / std::sqrt(double(c.head_dim)))});
    f.residual_linear(a.attn, lw.o.weight, a.x, lora_of(ProjKind::o, 1));
    f.gate_up(a.x, lw.post_attention_norm, eps, lw.gate.weight, lw.up.weight, a.gate, lora_of(ProjKind::gate, 2));
    f.residual_linear(a.gate, lw.down.weight, a.x, lora_of(ProjKind::down, 3));
  }
  f.norm_linear(a.x, w.final_norm, eps, heads.head, g.head.logits);
}

// The device address of the LoRA table a step with `lora` (or none) copies in.
const void* lora_table_source(Model::Impl& impl, const LoraSource* lora) {
  Backend& b = *impl.backend;
  if (!impl.lora_table.defined()) {
    const int64_t words = impl.config.num_layers * kProjKinds * int64_t(sizeof(LoraEntry) / sizeof(int32_t));
    impl.no_lora = b.upload(Tensor::zeros({words}, DType::i32), DType::i32);
    impl.lora_table = b.upload(Tensor::zeros({words}, DType::i32), DType::i32);
  }
  return lora ? lora->fused_device_table(impl.config.num_layers, b).raw() : impl.no_lora.raw();
}

// The graph and fixed buffers for one-token steps on `cache` (keyed by its storage, whose address and layout a
// graph bakes in). A handful are kept; the oldest goes first.
Model::Impl::DecodeGraph& decode_graph(Model::Impl& impl, const KVCache& cache) {
  const std::lock_guard lock(impl.graphs_mutex);
  const std::pair<const void*, int64_t> key{cache.keys(0).raw(), cache.capacity()};
  for (auto& g : impl.graphs)
    if (g->key == key) return *g;
  if (impl.graphs.size() >= Model::Impl::kMaxGraphs) impl.graphs.erase(impl.graphs.begin());
  Backend& b = *impl.backend;
  const Heads heads = pick_heads(impl.weights, nullptr);
  Tensor step = b.alloc({6}, DType::i32);
  auto g = std::make_unique<Model::Impl::DecodeGraph>(Model::Impl::DecodeGraph{
      .key = key,
      .step = step,
      .source = step.rows(0, 2),
      .ids = step.rows(2, 3),
      .pos = step.rows(3, 4),
      .epoch = step.rows(4, 5),
      .acts = Activations(b, impl.config, 1),
      .head = HeadBuffers(b, impl.config, heads.head, 1, false),
      .lora_scratch = Tensor(),
      .graph = nullptr,
      .lora_graph = nullptr});
  if (impl.fused_decode) {
    // Zeroed: a published shrink value must never carry a step's epoch before that step wrote it.
    g->lora_scratch = b.alloc({impl.config.num_layers * 4 * kFusedLoraScratchBytes / 4}, DType::i32);
    b.zero(g->lora_scratch);
  }
  impl.graphs.push_back(std::move(g));
  return *impl.graphs.back();
}

// A one-token step by graph replay (recording it on first use). Returns the logits on the device.
Tensor replay_decode_step(Model::Impl& impl, const Span& span, int32_t id, const LoraSource* lora) {
  Backend& b = *impl.backend;
  const ModelConfig& c = impl.config;
  Model::Impl::DecodeGraph& g = decode_graph(impl, *span.cache);
  impl.decode_epoch = impl.decode_epoch == INT32_MAX ? 1 : impl.decode_epoch + 1;  // never 0: scratch starts zeroed
  int32_t step[6] = {0, 0, id, int32_t(span.past), impl.decode_epoch, 0};
  if (impl.fused_decode) {
    const void* source = lora_table_source(impl, lora);
    std::memcpy(step, &source, sizeof source);
  }
  b.write(g.step, step, sizeof step);
  std::unique_ptr<Graph>& graph = lora ? g.lora_graph : g.graph;
  if (!graph) {
    const Heads heads = pick_heads(impl.weights, nullptr);
    const std::vector<Span> spans{span};
    const auto body = [&] {
      if (impl.fused_decode) run_fused_step(b, c, impl.weights, heads, *span.cache, impl.lora_table, g, lora != nullptr);
      else run_passes(b, c, impl.weights, heads, spans, g.ids, g.pos, nullptr, g.acts, g.head);
    };
    graph = b.capture(body);
    if (graph) ++impl.graph_captures;
    else body();  // a backend without graphs
  }
  if (graph) graph->replay();
  return g.head.logits;
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
  const ModelConfig& c = impl->config;
  impl->fused_decode = impl->backend->fused_decode() && c.hidden_size % 8 == 0 && c.intermediate_size % 8 == 0 &&
                       c.q_dim() % 8 == 0 && c.head_dim % 2 == 0;
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

namespace {

// The forward pass; `read(backend, logits)` takes what the caller gets from the device logits, under the device
// lock, before the caches advance.
template <class Read>
auto run_forward(Model::Impl& impl, std::span<const SequenceInput> batch, const ForwardOptions& options, Read&& read) {
  const ModelConfig& c = impl.config;
  Backend& b = *impl.backend;
  if (batch.empty()) fail(ErrorKind::bad_input, "forward: empty batch");

  // Validate everything before touching any cache.
  std::vector<Span> spans;
  int64_t T = 0;
  for (size_t s = 0; s < batch.size(); ++s) {
    const SequenceInput& in = batch[s];
    // The message prefix is built only on failure: this runs on every decode step.
    const auto where = [s] { return "sequence " + std::to_string(s); };
    if (!in.cache) fail(ErrorKind::bad_input, where() + ": no KV cache given");
    if (in.tokens.empty()) fail(ErrorKind::bad_input, where() + ": no tokens");
    for (int32_t id : in.tokens)
      if (id < 0 || id >= c.vocab_size)
        fail(ErrorKind::bad_input, where() + ": token id " + std::to_string(id) + " is outside the vocabulary [0, " +
                                       std::to_string(c.vocab_size) + ")");
    const int64_t past = in.cache->length(), n = int64_t(in.tokens.size());
    if (past + n > in.cache->capacity())
      fail(ErrorKind::bad_input, where() + ": " + std::to_string(past) + " cached + " + std::to_string(n) +
                                     " new tokens exceed the context of " + std::to_string(in.cache->capacity()));
    for (size_t o = 0; o < s; ++o)
      if (batch[o].cache == in.cache) fail(ErrorKind::bad_input, where() + ": shares its KV cache with sequence " + std::to_string(o));
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

  // One stream per device backend: passes run one at a time there. A merge may not run meanwhile.
  std::unique_lock<std::mutex> device_lock(impl.device_mutex, std::defer_lock);
  if (b.device() != Device::cpu) device_lock.lock();
  const std::shared_lock weights_lock(impl.weights_mutex);
  const Heads heads = pick_heads(impl.weights, options.lora);

  Tensor logits;
  const bool graph_step = T == 1 && b.device() != Device::cpu &&
                          (!options.lora || (impl.fused_decode && options.lora->fused_table(c.num_layers).usable));
  if (graph_step) {
    logits = replay_decode_step(impl, spans[0], ids[0], options.lora);
  } else {
    const Tensor ids_t = b.upload(Tensor::from_ints(ids, {T}), DType::i32);
    const Tensor pos_t = b.upload(Tensor::from_ints(pos, {T}), DType::i32);
    Activations a(b, c, T);
    const int64_t rows = options.logits == LogitsFor::last_token ? int64_t(spans.size()) : T;
    HeadBuffers hb(b, c, heads.head, rows, options.logits == LogitsFor::last_token);
    run_passes(b, c, impl.weights, heads, spans, ids_t, pos_t, options.lora, a, hb);
    logits = hb.logits;
  }
  auto out = read(b, logits);
  for (const Span& s : spans) s.cache->advance(s.count);
  return out;
}

}  // namespace

Tensor Model::forward(std::span<const SequenceInput> batch, const ForwardOptions& options) const {
  return run_forward(*impl_, batch, options, [](Backend& b, const Tensor& logits) { return b.download(logits); });
}

Model::SummaryResult Model::forward_summary(const SequenceInput& input, const ForwardOptions& options,
                                            const SummaryRequest& request) const {
  std::exception_ptr thrown;  // by `enough`: rethrown once the cache has advanced, as after forward()
  SummaryResult r = run_forward(*impl_, std::span(&input, 1), {.logits = LogitsFor::last_token, .lora = options.lora},
                                [&](Backend& b, const Tensor& logits) {
                                  SummaryResult out{.summary = b.summarize(logits, request.count, request.gather)};
                                  bool enough = true;
                                  try {
                                    if (request.enough) enough = request.enough(out.summary);
                                  } catch (...) {
                                    thrown = std::current_exception();
                                  }
                                  if (!enough) out.row = b.download(logits);
                                  return out;
                                });
  if (thrown) std::rethrow_exception(thrown);
  return r;
}

int64_t Model::decode_graphs_recorded() const { return impl_->graph_captures.load(); }

std::shared_ptr<const LoraSource> Model::active_lora() const { return impl_->active_lora.load(); }
void Model::set_active_lora(std::shared_ptr<const LoraSource> lora) { impl_->active_lora.exchange(std::move(lora)); }

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
