#include "model/decode_step.h"

#include <algorithm>
#include <climits>
#include <cstring>
#include <map>
#include <string>
#include <utility>

#include "backend/collective.h"
#include "model/paged_step.h"
#include "model/plain_ops.h"
#include "wick/error.h"

namespace wick {

namespace {

constexpr size_t kMaxRecorded = 8;  // caches whose steps stay recorded; a generation uses one at a time

// The fused ops that carry LoRA, per layer, by the first projection each covers (q/k/v, o, gate/up, down): each
// call has its own scratch row.
constexpr int64_t kLoraCallsPerLayer = 4;
constexpr int64_t lora_call(ProjKind first) {
  return first == ProjKind::q ? 0 : first == ProjKind::o ? 1 : first == ProjKind::gate ? 2 : 3;
}

// A field of the step's inputs on the device, as the i32 view its ops read.
Tensor input_field(const Tensor& inputs, size_t offset, size_t bytes) {
  return inputs.rows(int64_t(offset / sizeof(int32_t)), int64_t((offset + bytes) / sizeof(int32_t)));
}

}  // namespace

// Where a step's token row has its inputs: StepInputs, then (paged steps) its block table's start in the table (0)
// and a pad word, then the block table.
constexpr int64_t kStepWords = int64_t(sizeof(StepInputs) / sizeof(int32_t));
constexpr int64_t kTableAt = kStepWords + 2;

// One cache's (or pool's) recorded steps and the fixed buffers they bake in.
struct DecodeSteps::Recorded {
  const void* storage;  // the cache's or the pool's first key row
  int64_t capacity;     // a cache's positions; a pool's entries of the longest block table
  bool paged;
  Tensor inputs;        // the step's inputs on the device (i32: kStepWords, then the paged words)
  Tensor lora_table_address = input_field(inputs, offsetof(StepInputs, lora_table), sizeof(void*));
  Tensor token = input_field(inputs, offsetof(StepInputs, token), sizeof(int32_t));
  Tensor position = input_field(inputs, offsetof(StepInputs, position), sizeof(int32_t));
  Tensor epoch = input_field(inputs, offsetof(StepInputs, epoch), sizeof(int32_t));
  Tensor slot = input_field(inputs, offsetof(StepInputs, slot), sizeof(int32_t));
  Tensor table_start = paged ? inputs.rows(kStepWords, kStepWords + 1) : Tensor();
  Tensor table = paged ? inputs.rows(kTableAt, kTableAt + capacity) : Tensor();
  Activations acts;
  HeadBuffers head;
  Tensor lora_scratch = {};  // FusedDecode::lora_scratch, a row per LoRA-carrying call of the step
  // The steps by (context bucket, with an adapter): a cache's have context 0; without an adapter, the builds that
  // read no adapter table; with one, any adapter (fused kernels) through the table.
  std::map<std::pair<int64_t, bool>, std::unique_ptr<Graph>> graphs = {};
};

namespace {

// The layer steps as the fused one-token kernels of a recorded step: q/k/v with the norm before them and RoPE and the
// cache write after; attention; o_proj and its residual add; gate/up with the norm and SwiGLU; down_proj and its
// residual add. With `lora`, every kernel reads the adapter table (the projection's LoraEntry at lora_slot) and the
// step's epoch; without, they are the builds that read no table at all. With `tp`, one rank's step of a split model:
// the same kernels over the rank's share (column-parallel q/k/v and gate/up need nothing more), the embedding summed
// across ranks, o_proj and down_proj adding rank 0's part into the stream and every other rank's into zeros before the
// stream is summed, and the head's vocabulary slices gathered into rank 0's logits. An adapter's shares split as the
// base (tensor_parallel.h), so its low-rank terms ride in the same sums.
class FusedOps final : public LayerOps {
 public:
  // Keys and values in `cache`, or (cache null) in `pool`'s rows that `paged` names.
  FusedOps(Backend& b, FusedDecode& f, const ModelConfig& c, KVCache* cache, KVBlockPool* pool, const PagedKeys& paged,
           DecodeSteps::Recorded& r, Tensor& table, bool lora, const RankOfMany* tp)
      : b_(b), f_(f), c_(c), cache_(cache), pool_(pool), paged_(paged), r_(r), table_(table), lora_(lora), tp_(tp),
        shard_(tp ? tp->shard.rank : 0) {}

  void embed(const Tensor& table, Tensor& x) override {
    f_.begin_step(table, r_.token, x, r_.lora_table_address, table_);
    if (tp_) tp_->collective->all_reduce(x, shard_);  // the token's row is on one rank
  }
  void attention_inputs(const Normed& h, const Projection& q, const Projection& k, const Projection& v, int64_t layer,
                        Tensor& q_out) override {
    Tensor kc = keys(layer), vc = values(layer);
    f_.attention_inputs(input(h), {.weight = {q.weight, k.weight, v.weight}, .bias = {q.bias, k.bias, v.bias},
                                   .positions = r_.position, .slots = r_.slot, .rope_theta = c_.rope_theta,
                                   .head_dim = c_.head_dim},
                        q_out, kc, vc, lora_for(q));
  }
  void attention(const Tensor& q, int64_t layer, Tensor& out) override {
    const Tensor qh = q.reshape({1, c_.num_heads, c_.head_dim});
    if (cache_) b_.attention(qh, keys(layer), values(layer), r_.position, out, attention_params(c_));
    else b_.paged_attention(qh, keys(layer), values(layer), paged_, out, attention_params(c_));
  }
  void add_projection(const Tensor& in, const Projection& w, Tensor& x) override {
    if (tp_ && shard_ != 0) b_.zero(x);
    f_.residual_linear(in, w.weight, x, lora_for(w));
    if (tp_) tp_->collective->all_reduce(x, shard_);
  }
  void gated_mlp_input(const Normed& m, const Projection& gate, const Projection& up, Tensor& out) override {
    f_.gate_up(input(m), gate.weight, up.weight, out, lora_for(gate));
  }
  void logits(const Normed& n, const Tensor& head, Tensor& logits) override {
    f_.norm_linear(input(n), head, logits);
  }

 private:
  Tensor keys(int64_t layer) const { return cache_ ? cache_->keys(layer, shard_) : pool_->keys(layer, shard_); }
  Tensor values(int64_t layer) const { return cache_ ? cache_->values(layer, shard_) : pool_->values(layer, shard_); }
  FusedInput input(const Normed& n) const { return {.x = *n.x, .norm = *n.weight, .eps = float(c_.rms_norm_eps)}; }
  // Where the call that starts with projection `p` finds its factors: consecutive entries from p's (gate/up's call
  // covers up, q/k/v's k and v: lora_slot order).
  DecodeLora lora_for(const Projection& p) const {
    if (!lora_) return {};
    const int64_t call = p.layer * kLoraCallsPerLayer + lora_call(p.kind);
    return {.entries = static_cast<const LoraEntry*>(table_.raw()) + lora_slot(p.layer, p.kind),
            .scratch = r_.lora_scratch.rows(call, call + 1).raw(),
            .epoch = r_.epoch.data<int32_t>()};
  }

  Backend& b_;
  FusedDecode& f_;
  const ModelConfig& c_;
  KVCache* cache_;
  KVBlockPool* pool_;
  PagedKeys paged_;
  DecodeSteps::Recorded& r_;
  Tensor& table_;
  bool lora_;
  const RankOfMany* tp_;
  int shard_;
};

}  // namespace

bool DecodeSteps::fused_takes(Backend& backend, const ModelConfig& c, const ModelWeights& w) {
  const FusedDecode* f = backend.fused_decode();
  if (!f || !f->supports({.hidden = c.hidden_size, .ffn = c.intermediate_size, .heads = c.num_heads,
                          .kv_heads = c.num_kv_heads, .head_dim = c.head_dim}))
    return false;
  for (const LayerWeights& l : w.layers)
    for (const Projection* p : {&l.o, &l.gate, &l.up, &l.down})
      if (p->bias.defined()) return false;
  return true;
}

DecodeSteps::DecodeSteps(Backend& backend, const ModelConfig& config, const ModelWeights& weights,
                         const RankOfMany* tp, bool fused)
    : backend_(backend), config_(config) {
  if (tp) tp_ = *tp;
  if (fused && fused_takes(backend, config, weights)) fused_ = backend.fused_decode();
}

DecodeSteps::~DecodeSteps() = default;

bool DecodeSteps::takes(const LoraSource* lora) const {
  if (!lora) return true;
  if (!fused_ || lora->head() || lora->embedding()) return false;
  const LoraSource::Table& t = lora->table(config_.num_layers);
  return t.max_rank <= fused_->max_lora_rank() && t.uniform && t.device == backend_.device() &&
         t.dtype == backend_.compute_dtype();
}

const void* DecodeSteps::table_address(const LoraSource* lora) {
  if (!lora_table_.defined()) {
    const int64_t words = config_.num_layers * kProjKinds * int64_t(sizeof(LoraEntry) / sizeof(int32_t));
    no_lora_ = backend_.upload(Tensor::zeros({words}, DType::i32), DType::i32);
    lora_table_ = backend_.upload(Tensor::zeros({words}, DType::i32), DType::i32);
  }
  return lora ? lora->device_table(config_.num_layers, backend_).raw() : no_lora_.raw();
}

DecodeSteps::Recorded& DecodeSteps::recorded_for(const KVCache& cache, const Tensor& head) {
  const std::lock_guard lock(mutex_);
  const void* storage = cache.keys(0, tp_ ? tp_->shard.rank : 0).raw();
  for (auto& r : graphs_)
    if (!r->paged && r->storage == storage && r->capacity == cache.capacity()) return *r;
  if (graphs_.size() >= kMaxRecorded) graphs_.erase(graphs_.begin());
  auto r = std::unique_ptr<Recorded>(new Recorded{.storage = storage,
                                                  .capacity = cache.capacity(),
                                                  .paged = false,
                                                  .inputs = backend_.alloc({kStepWords}, DType::i32),
                                                  .acts = Activations(backend_, config_, 1),
                                                  .head = HeadBuffers(backend_, config_, head, 1, false)});
  if (fused_) r->lora_scratch = fused_->lora_scratch(config_.num_layers * kLoraCallsPerLayer);
  graphs_.push_back(std::move(r));
  return *graphs_.back();
}

DecodeSteps::Recorded& DecodeSteps::recorded_for(const KVBlockPool& pool, const Tensor& head) {
  const std::lock_guard lock(mutex_);
  const void* storage = pool.keys(0, tp_ ? tp_->shard.rank : 0).raw();
  // A block table at its longest: the whole context, or the whole pool.
  const int64_t bs = pool.block_size();
  const int64_t capacity = std::min((config_.max_position_embeddings + bs - 1) / bs, pool.num_blocks());
  for (auto& r : graphs_)
    if (r->paged && r->storage == storage && r->capacity == capacity) return *r;
  if (graphs_.size() >= kMaxRecorded) graphs_.erase(graphs_.begin());
  auto r = std::unique_ptr<Recorded>(new Recorded{.storage = storage,
                                                  .capacity = capacity,
                                                  .paged = true,
                                                  .inputs = backend_.alloc({kTableAt + capacity}, DType::i32),
                                                  .acts = Activations(backend_, config_, 1),
                                                  .head = HeadBuffers(backend_, config_, head, 1, false)});
  r->lora_scratch = fused_->lora_scratch(config_.num_layers * kLoraCallsPerLayer);
  graphs_.push_back(std::move(r));
  return *graphs_.back();
}

void DecodeSteps::write_inputs(Recorded& r, StepInputs in, const LoraSource* lora, const std::vector<int32_t>& table) {
  epoch_ = epoch_ == INT32_MAX ? 1 : epoch_ + 1;
  in.lora_table = fused_ ? table_address(lora) : nullptr;
  in.epoch = epoch_;
  if (!r.paged) {
    backend_.write(r.inputs, &in, sizeof in);
    return;
  }
  if (int64_t(table.size()) > r.capacity)
    fail(ErrorKind::internal, "decode step: a block table of " + std::to_string(table.size()) + " blocks, room for " +
                                  std::to_string(r.capacity));
  std::vector<int32_t> words(size_t(kTableAt) + table.size(), 0);  // the table starts at entry 0
  std::memcpy(words.data(), &in, sizeof in);
  std::copy(table.begin(), table.end(), words.begin() + kTableAt);
  backend_.write(r.inputs, words.data(), words.size() * sizeof(int32_t));
}

Graph* DecodeSteps::graph_for(const ModelWeights& weights, Recorded& r, KVCache* cache, KVBlockPool* pool,
                              int64_t context, bool lora) {
  std::unique_ptr<Graph>& graph = r.graphs[{context, lora}];
  if (graph) return graph.get();
  if (fused_) table_address(nullptr);  // the adapter table the LoRA builds read exists before they are recorded
  const Heads heads = pick_heads(weights, nullptr);  // steps with a replaced head or embedding are not recorded
  const PagedKeys paged{.tables = r.table, .starts = r.table_start, .positions = r.position,
                        .block_size = pool ? pool->block_size() : 1, .max_visible = context};
  const auto body = [&] {
    if (fused_) {
      FusedOps ops(backend_, *fused_, config_, cache, pool, paged, r, lora_table_, lora, tp_ ? &*tp_ : nullptr);
      forward_pass(ops, weights, heads, r.acts, r.head.logits);
    } else {
      const std::vector<Span> spans{{.begin = 0, .count = 1, .past = 0, .cache = cache}};
      PlainOps ops(backend_, config_,
                   {.spans = &spans, .ids = r.token, .positions = r.position, .tp = tp_ ? &*tp_ : nullptr}, nullptr,
                   r.acts, r.head);
      forward_pass(ops, weights, heads, r.acts, r.head.logits);
    }
  };
  // A backend without graphs, or the ranks of a split joined by a collective that cannot be recorded: run now,
  // nothing kept.
  if (!tp_ || tp_->collective->capturable()) graph = backend_.capture(body);
  if (graph) ++captures_;
  else body();
  return graph.get();
}

Tensor DecodeSteps::run(const ModelWeights& weights, const Span& span, int32_t token, const LoraSource* lora) {
  Recorded& r = recorded_for(*span.cache, weights.head);
  write_inputs(r, {.token = token, .position = int32_t(span.past), .slot = int32_t(span.past)}, lora, {});
  if (Graph* graph = graph_for(weights, r, span.cache, nullptr, 0, lora != nullptr)) graph->replay();
  return r.head.logits;
}

Tensor DecodeSteps::run_paged(const ModelWeights& weights, const FlatBatch& flat, KVBlockPool& pool,
                              const LoraSource* lora) {
  if (!fused_ || flat.spans.size() != 1 || flat.ids.size() != 1)
    fail(ErrorKind::internal, "decode step: a paged step is one token of one sequence through the fused kernels");
  Recorded& r = recorded_for(pool, weights.head);
  write_inputs(r, {.token = flat.ids[0], .position = flat.positions[0], .slot = flat.slots[0]}, lora, flat.tables);
  Graph* graph = graph_for(weights, r, nullptr, &pool, paged_context_bucket(flat.max_visible), lora != nullptr);
  if (graph) graph->replay();
  return r.head.logits;
}

void DecodeSteps::record_paged(const ModelWeights& weights, KVBlockPool& pool, int64_t context) {
  if (!fused_ || (tp_ && !tp_->collective->capturable())) return;
  Recorded& r = recorded_for(pool, weights.head);
  for (const bool lora : {false, true}) graph_for(weights, r, nullptr, &pool, paged_context_bucket(context), lora);
}

void DecodeSteps::forget_graphs() {
  const std::lock_guard lock(mutex_);
  graphs_.clear();
}

}  // namespace wick
