#include "model/paged_step.h"

#include <algorithm>

#include "model/plain_ops.h"
#include "wick/error.h"

namespace wick {

namespace {

// The smallest power of two ≥ n (n ≥ 1).
int64_t power_of_two_at_least(int64_t n) {
  int64_t p = 1;
  while (p < n) p <<= 1;
  return p;
}

}  // namespace

int64_t paged_context_bucket(int64_t visible) { return std::max<int64_t>(64, power_of_two_at_least(visible)); }

// One batch size's fixed buffers (graphs bake in their addresses) and its graphs by (context, adapters or not).
// inputs, i32: ids [R] | positions [R] | slots [R] | table starts [R] | adapter words [R, 2] | block tables.
struct PagedSteps::Buffers {
  int64_t rows;
  int64_t table_capacity;
  Tensor inputs;
  Activations acts;
  HeadBuffers head;
  std::map<std::pair<int64_t, bool>, std::unique_ptr<Graph>> graphs = {};

  Tensor field(int64_t at, int64_t count) const { return inputs.rows(at * rows, at * rows + count); }
  Tensor ids() const { return field(0, rows); }
  Tensor positions() const { return field(1, rows); }
  Tensor slots() const { return field(2, rows); }
  Tensor starts() const { return field(3, rows); }
  Tensor adapter_words() const { return field(4, 2 * rows).reshape({rows, 2}); }
  Tensor tables() const { return inputs.rows(6 * rows, 6 * rows + table_capacity); }
};

PagedSteps::PagedSteps(Backend& backend, const ModelConfig& config, const RankOfMany* tp)
    : backend_(backend), config_(config), graphs_(backend.device() != Device::cpu) {
  if (tp) tp_ = *tp;
}

PagedSteps::~PagedSteps() = default;

bool PagedSteps::takes(const FlatBatch& flat) const {
  if (!graphs_ || int64_t(flat.spans.size()) > kMaxRows || int64_t(flat.ids.size()) != int64_t(flat.spans.size()))
    return false;
  for (const Span& s : flat.spans) {
    if (!s.lora) continue;
    const LoraSource::Table& t = s.lora->table(config_.num_layers);
    if (s.lora->head() || s.lora->embedding() || t.max_rank > kMaxRank) return false;
    if (t.max_rank > 0 && (!t.uniform || t.device != backend_.device() || t.dtype != backend_.compute_dtype()))
      return false;
  }
  return true;
}

PagedSteps::Buffers& PagedSteps::buffers_for(int64_t rows, const ModelWeights& weights, const KVBlockPool& pool) {
  // Every row's block table at its longest: the whole context, or the whole pool.
  const int64_t bs = pool.block_size();
  const int64_t table_capacity = rows * std::min((config_.max_position_embeddings + bs - 1) / bs, pool.num_blocks());
  std::unique_ptr<Buffers>& b = buffers_[rows];
  if (!b || b->table_capacity < table_capacity)
    b.reset(new Buffers{.rows = rows,
                        .table_capacity = table_capacity,
                        .inputs = backend_.alloc({6 * rows + table_capacity}, DType::i32),
                        .acts = Activations(backend_, config_, rows),
                        .head = HeadBuffers(backend_, config_, weights.head, rows, false)});
  return *b;
}

void PagedSteps::use_pool(const KVBlockPool& pool) {
  const void* storage = pool.keys(0, tp_ ? tp_->shard.rank : 0).raw();
  if (storage == pool_storage_) return;
  for (auto& [rows, b] : buffers_) b->graphs.clear();  // they write into the other pool's rows
  pool_storage_ = storage;
}

Graph* PagedSteps::graph_for(const ModelWeights& weights, KVBlockPool& pool, Buffers& buffers, int64_t context,
                             bool lora) {
  std::unique_ptr<Graph>& graph = buffers.graphs[{context, lora}];
  if (graph) return graph.get();
  const PagedRows paged{.pool = &pool,
                        .slots = buffers.slots(),
                        .keys = {.tables = buffers.tables(),
                                 .starts = buffers.starts(),
                                 .positions = buffers.positions(),
                                 .block_size = pool.block_size(),
                                 .max_visible = context}};
  const RowAdapters adapters{.tables = buffers.adapter_words(), .max_rank = kMaxRank};
  const std::vector<Span> spans;  // the rows are one token each: the head reads them all
  const PlainBatch batch{.spans = &spans,
                         .ids = buffers.ids(),
                         .positions = buffers.positions(),
                         .paged = &paged,
                         .mixed_lora = lora,
                         .row_adapters = lora ? &adapters : nullptr,
                         .tp = tp_ ? &*tp_ : nullptr};
  const Heads heads = pick_heads(weights, nullptr);  // adapters with their own head or embedding run eagerly
  // Recording runs nothing: the inputs are read when the graph is replayed.
  graph = backend_.capture([&] {
    PlainOps ops(backend_, config_, batch, nullptr, buffers.acts, buffers.head);
    forward_pass(ops, weights, heads, buffers.acts, buffers.head.logits);
  });
  if (!graph) fail(ErrorKind::internal, "paged steps: the backend recorded no graph");
  ++captures_;
  return graph.get();
}

Tensor PagedSteps::run(const ModelWeights& weights, const FlatBatch& flat, KVBlockPool& pool) {
  const std::lock_guard lock(mutex_);
  use_pool(pool);
  const int64_t n = int64_t(flat.ids.size()), rows = power_of_two_at_least(n);
  Buffers& b = buffers_for(rows, weights, pool);
  // Rows past n repeat the last sequence: they compute what it computes and write the same bytes to its row.
  std::vector<int32_t> host(size_t(6 * rows + int64_t(flat.tables.size())), 0);
  const std::optional<AdapterWords> adapters = adapter_words(backend_, config_, flat);
  for (int64_t r = 0; r < rows; ++r) {
    const size_t from = size_t(std::min(r, n - 1));
    host[size_t(r)] = flat.ids[from];
    host[size_t(rows + r)] = flat.positions[from];
    host[size_t(2 * rows + r)] = flat.slots[from];
    host[size_t(3 * rows + r)] = flat.table_starts[from];
    if (adapters) {
      host[size_t(4 * rows + 2 * r)] = adapters->words[2 * from];
      host[size_t(4 * rows + 2 * r + 1)] = adapters->words[2 * from + 1];
    }
  }
  std::copy(flat.tables.begin(), flat.tables.end(), host.begin() + 6 * rows);
  backend_.write(b.inputs, host.data(), host.size() * sizeof(int32_t));
  graph_for(weights, pool, b, paged_context_bucket(flat.max_visible), adapters.has_value())->replay();
  return b.head.logits.rows(0, n);
}

void PagedSteps::record(const ModelWeights& weights, KVBlockPool& pool, int64_t rows, int64_t context) {
  const std::lock_guard lock(mutex_);
  if (!graphs_) return;
  use_pool(pool);
  for (int64_t r = 1; r <= std::min(power_of_two_at_least(rows), kMaxRows); r <<= 1)
    for (const bool lora : {false, true})
      graph_for(weights, pool, buffers_for(r, weights, pool), paged_context_bucket(context), lora);
}

void PagedSteps::forget_graphs() {
  const std::lock_guard lock(mutex_);
  for (auto& [rows, b] : buffers_) b->graphs.clear();
}

}  // namespace wick
