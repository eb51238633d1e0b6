// Model's API: loading, the forward pass over a batch (validated whole before any cache changes), logits.
#include <algorithm>
#include <exception>
#include <optional>

#include "core/thread_pool.h"
#include "model/forward.h"
#include "model/model_impl.h"
#include "model/plain_ops.h"
#include "model/split_model.h"
#include "wick/error.h"
#include "wick/model.h"

namespace wick {

void require_whole(const Model::Impl& impl, const char* what) {
  if (impl.tp)
    fail(ErrorKind::unsupported, std::string(what) + ": not on a model split over " + std::to_string(impl.tp->ranks()) +
                                     " devices (--tensor-parallel); load it whole for this");
}

Model::Model(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Model::~Model() = default;

std::shared_ptr<Model> Model::load(const std::filesystem::path& dir, const LoadOptions& options) {
  if (options.cpu_threads != 0) set_thread_count(options.cpu_threads);
  auto impl = std::make_unique<Impl>();
  impl->config = ModelConfig::load(dir);
  if (options.hidden_states_only) impl->config.head = ModelHead::none;
  impl->generation = GenerationDefaults::load(dir);
  if (impl->generation.eos_token_ids.empty()) impl->generation.eos_token_ids = impl->config.eos_token_ids;
  const TensorStore store = TensorStore::open_dir(dir);
  if (options.tensor_parallel != 1) {
    load_split(*impl, store, dir, options);
  } else {
    impl->backend = make_backend(options.device, options.cpu_weights);
    impl->weights = load_weights(impl->config, store, *impl->backend, dir.string());
  }
  if (!impl->tp && impl->backend->device() != Device::cpu && impl->config.head != ModelHead::none) {
    impl->decode_steps = std::make_unique<DecodeSteps>(*impl->backend, impl->config, impl->weights);
    impl->paged_steps = std::make_unique<PagedSteps>(*impl->backend, impl->config);
  }
  std::shared_ptr<Model> model(new Model(std::move(impl)));
  if (model->device() != Device::cpu && model->config().head != ModelHead::none) model->warm_up();
  return model;
}

// A fresh process's first pass on a GPU pays for loading kernels and setting up the math library (some 100 ms
// against a few ms later): a prefill and a recorded decode step at load pay it there instead of in the first request.
void Model::warm_up() const {
  constexpr int64_t kTokens = 128;
  KVCache cache = make_cache(std::min<int64_t>(kTokens + 1, impl_->config.max_position_embeddings));
  const std::vector<int32_t> prompt(size_t(cache.capacity() - 1), 0), next{0};
  forward(std::vector<SequenceInput>{{prompt, &cache}});
  if (cache.length() < cache.capacity()) forward(std::vector<SequenceInput>{{next, &cache}});
}

const ModelConfig& Model::config() const { return impl_->config; }
int Model::tensor_parallel() const { return impl_->tp ? impl_->tp->ranks() : 1; }
const GenerationDefaults& Model::generation_defaults() const { return impl_->generation; }
Device Model::device() const { return impl_->backend->device(); }

DType Model::compute_dtype() const { return impl_->backend->compute_dtype(); }
DType Model::weight_dtype() const { return impl_->weights.layers.at(0).q.weight.dtype(); }

namespace {

// Keys and values [layers, rows, KV heads, head_dim] for every device the model is on: a split model's ranks each
// hold their own KV heads.
std::pair<std::vector<Tensor>, std::vector<Tensor>> kv_tensors(const Model::Impl& impl, int64_t rows) {
  const ModelConfig& c = impl.config;
  const Shape shape{c.num_layers, rows, impl.tp ? impl.tp->config.num_kv_heads : c.num_kv_heads, c.head_dim};
  const std::vector<Backend*> on = impl.tp ? impl.tp->backends : std::vector<Backend*>{impl.backend.get()};
  std::pair<std::vector<Tensor>, std::vector<Tensor>> kv;
  for (Backend* b : on) {
    kv.first.push_back(b->alloc(shape, b->compute_dtype()));
    kv.second.push_back(b->alloc(shape, b->compute_dtype()));
  }
  return kv;
}

}  // namespace

Tensor Model::upload(const Tensor& host) const {
  Backend& b = *impl_->backend;
  return b.upload(host, b.compute_dtype());
}

KVCache Model::make_cache(int64_t capacity) const {
  const ModelConfig& c = impl_->config;
  if (capacity <= 0 || capacity > c.max_position_embeddings)
    fail(ErrorKind::bad_input, "KV cache capacity " + std::to_string(capacity) + " is outside [1, " +
                                   std::to_string(c.max_position_embeddings) + "] (max_position_embeddings)");
  auto [keys, values] = kv_tensors(*impl_, capacity);
  return KVCache(std::move(keys), std::move(values));
}

namespace {

// Validates every sequence (before any cache is touched) and flattens the batch.
FlatBatch flatten(const ModelConfig& c, std::span<const SequenceInput> batch) {
  if (batch.empty()) fail(ErrorKind::bad_input, "forward: empty batch");
  FlatBatch flat;
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
      if (batch[o].cache == in.cache)
        fail(ErrorKind::bad_input, where() + ": shares its KV cache with sequence " + std::to_string(o));
    flat.spans.push_back({T, n, past, in.cache});
    T += n;
  }
  flat.ids.reserve(size_t(T));
  flat.positions.reserve(size_t(T));
  for (size_t s = 0; s < batch.size(); ++s) {
    flat.ids.insert(flat.ids.end(), batch[s].tokens.begin(), batch[s].tokens.end());
    for (int64_t i = 0; i < flat.spans[s].count; ++i) flat.positions.push_back(int32_t(flat.spans[s].past + i));
  }
  return flat;
}

// Validates a paged batch whole (before any block row is written) and flattens it: each span's pool rows.
FlatBatch flatten_paged(const Model::Impl& impl, const KVBlockPool& pool, std::span<const PagedSequence> batch) {
  const ModelConfig& c = impl.config;
  const int shards = impl.tp ? impl.tp->ranks() : 1;
  const int64_t kv_heads = impl.tp ? impl.tp->config.num_kv_heads : c.num_kv_heads;
  if (batch.empty()) fail(ErrorKind::bad_input, "forward_paged: empty batch");
  if (pool.layers() != c.num_layers || pool.shards() != shards || pool.keys(0).dim(1) != kv_heads ||
      pool.keys(0).dim(2) != c.head_dim || pool.keys(0).device() != impl.backend->device())
    fail(ErrorKind::bad_input, "forward_paged: the KV block pool was not made for this model (Model::make_block_pool)");
  const int64_t bs = pool.block_size(), blocks_in_pool = pool.num_blocks();
  FlatBatch flat;
  flat.block_size = bs;
  std::vector<std::pair<int32_t, size_t>> written;  // (pool row, sequence)
  int64_t T = 0;
  for (size_t s = 0; s < batch.size(); ++s) {
    const PagedSequence& in = batch[s];
    const auto where = [s] { return "forward_paged: sequence " + std::to_string(s); };
    const int64_t n = int64_t(in.tokens.size()), total = in.past + n;
    if (n == 0) fail(ErrorKind::bad_input, where() + ": no tokens");
    if (in.past < 0) fail(ErrorKind::bad_input, where() + ": negative past length");
    for (int32_t id : in.tokens)
      if (id < 0 || id >= c.vocab_size)
        fail(ErrorKind::bad_input, where() + ": token id " + std::to_string(id) + " is outside the vocabulary [0, " +
                                       std::to_string(c.vocab_size) + ")");
    if (total > c.max_position_embeddings)
      fail(ErrorKind::bad_input, where() + ": " + std::to_string(total) + " positions exceed max_position_embeddings (" +
                                     std::to_string(c.max_position_embeddings) + ")");
    const int64_t needed = (total + bs - 1) / bs;
    if (int64_t(in.blocks.size()) < needed)
      fail(ErrorKind::bad_input, where() + ": its block table has " + std::to_string(in.blocks.size()) + " blocks of " +
                                     std::to_string(bs) + " positions; " + std::to_string(total) + " need " +
                                     std::to_string(needed));
    for (int64_t b = 0; b < needed; ++b)
      if (in.blocks[size_t(b)] < 0 || in.blocks[size_t(b)] >= blocks_in_pool)
        fail(ErrorKind::bad_input, where() + ": block " + std::to_string(in.blocks[size_t(b)]) +
                                       " is outside the pool [0, " + std::to_string(blocks_in_pool) + ")");
    flat.spans.push_back({.begin = T, .count = n, .past = in.past, .cache = nullptr, .lora = in.lora});
    flat.ids.insert(flat.ids.end(), in.tokens.begin(), in.tokens.end());
    for (int64_t p = in.past; p < total; ++p) {
      const int32_t row = int32_t(in.blocks[size_t(p / bs)] * bs + p % bs);
      written.emplace_back(row, s);
      flat.slots.push_back(row);
      flat.positions.push_back(int32_t(p));
      flat.table_starts.push_back(int32_t(flat.tables.size()));
    }
    flat.tables.insert(flat.tables.end(), in.blocks.begin(), in.blocks.begin() + needed);
    flat.max_visible = std::max(flat.max_visible, total);
    T += n;
  }
  std::sort(written.begin(), written.end());
  for (size_t i = 1; i < written.size(); ++i)
    if (written[i].first == written[i - 1].first)
      fail(ErrorKind::bad_input, "forward_paged: sequences " + std::to_string(written[i - 1].second) + " and " +
                                     std::to_string(written[i].second) + " both write pool row " +
                                     std::to_string(written[i].first) + " (block " +
                                     std::to_string(written[i].first / bs) + "): a block being written belongs to one sequence");
  return flat;
}

// The passes that return logits need a head.
void require_head(const ModelConfig& c) {
  if (c.head == ModelHead::none)
    fail(ErrorKind::unsupported, "this model has no head (a Qwen2Model, or loaded with hidden_states_only): it gives "
                                 "hidden states (Model::hidden_states), not logits");
}

// The i32 inputs of one pass, uploaded together: views of one device tensor. Each starts on an 8-byte boundary:
// the adapter addresses among them are read as 8-byte words (a misaligned one faults on a GPU).
class PackedInts {
 public:
  int64_t add(std::span<const int32_t> values) {
    if (host_.size() % 2) host_.push_back(0);
    const int64_t at = int64_t(host_.size());
    host_.insert(host_.end(), values.begin(), values.end());
    return at;
  }
  void upload(Backend& b) { device_ = b.upload(Tensor::from_ints(host_, {int64_t(host_.size())}), DType::i32); }
  Tensor view(int64_t at, int64_t count) const { return device_.rows(at, at + count); }

 private:
  std::vector<int32_t> host_;
  Tensor device_;
};

}  // namespace

Tensor plain_pass(Backend& b, const ModelConfig& c, const ModelWeights& weights, const FlatBatch& flat,
                  const PlainPassOptions& o, const RankOfMany* tp) {
  const int64_t T = int64_t(flat.ids.size());
  PackedInts ints;
  const int64_t ids = ints.add(flat.ids), positions = ints.add(flat.positions);
  const int64_t slots = ints.add(flat.slots), tables = ints.add(flat.tables), starts = ints.add(flat.table_starts);
  RowAdapters row_adapters;
  int64_t adapter_tables = -1;
  if (o.pool && o.mixed_lora)
    if (const std::optional<AdapterWords> words = adapter_words(b, c, flat)) {
      row_adapters.max_rank = words->max_rank;
      adapter_tables = ints.add(words->words);
    }
  ints.upload(b);
  const auto sized = [](const std::vector<int32_t>& v) { return int64_t(v.size()); };
  const PagedRows paged{.pool = o.pool,
                        .slots = ints.view(slots, sized(flat.slots)),
                        .keys = {.tables = ints.view(tables, sized(flat.tables)),
                                 .starts = ints.view(starts, sized(flat.table_starts)),
                                 .positions = ints.view(positions, T),
                                 .block_size = flat.block_size,
                                 .max_visible = flat.max_visible}};
  if (adapter_tables >= 0) row_adapters.tables = ints.view(adapter_tables, 2 * T).reshape({T, 2});
  const PlainBatch plain{.spans = &flat.spans,
                         .ids = ints.view(ids, T),
                         .positions = ints.view(positions, T),
                         .paged = o.pool ? &paged : nullptr,
                         .mixed_lora = o.mixed_lora,
                         .row_adapters = adapter_tables >= 0 ? &row_adapters : nullptr,
                         .tp = tp};
  Heads heads = pick_heads(weights, o.lora);
  if (o.hidden_states) heads.head = Tensor();
  const bool last = o.logits == LogitsFor::last_token;
  Activations a(b, c, T);
  HeadBuffers hb(b, c, heads.head, last ? int64_t(flat.spans.size()) : T, last);
  PlainOps ops(b, c, plain, o.lora, a, hb);
  forward_pass(ops, weights, heads, a, hb.logits);
  return hb.logits;
}

namespace {

// The pass for a whole model or a split one.
DeviceLogits any_plain_pass(const Model::Impl& impl, const FlatBatch& flat, const PlainPassOptions& o) {
  if (impl.tp) return split_pass(impl, flat, o);
  return {*impl.backend, plain_pass(*impl.backend, impl.config, impl.weights, flat, o)};
}

// The forward pass; `read(logits)` takes what the caller gets from the device logits, under the device lock, before
// the caches advance.
template <class Read>
auto run_forward(Model::Impl& impl, std::span<const SequenceInput> batch, const ForwardOptions& options, Read&& read) {
  const ModelConfig& c = impl.config;
  Backend& b = *impl.backend;
  require_head(c);
  const FlatBatch flat = flatten(c, batch);
  const int64_t T = int64_t(flat.ids.size());

  // One stream per device backend: passes run one at a time there. A merge may not run meanwhile.
  std::unique_lock<std::mutex> device_lock(impl.device_mutex, std::defer_lock);
  if (b.device() != Device::cpu) device_lock.lock();
  const std::shared_lock weights_lock(impl.weights_mutex);

  auto out = read(T == 1 && impl.decode_steps && impl.decode_steps->takes(options.lora)
                      ? DeviceLogits(b, impl.decode_steps->run(impl.weights, flat.spans[0], flat.ids[0], options.lora))
                      : any_plain_pass(impl, flat, {.logits = options.logits, .lora = options.lora}));
  for (const Span& s : flat.spans) s.cache->advance(s.count);
  return out;
}

}  // namespace

Tensor Model::forward(std::span<const SequenceInput> batch, const ForwardOptions& options) const {
  return run_forward(*impl_, batch, options, [](const DeviceLogits& logits) { return logits.download(); });
}

Tensor Model::hidden_states(std::span<const std::span<const int32_t>> sequences) const {
  const ModelConfig& c = impl_->config;
  Backend& b = *impl_->backend;
  std::vector<KVCache> caches;  // one per sequence, just long enough
  std::vector<SequenceInput> batch;
  caches.reserve(sequences.size());
  for (size_t s = 0; s < sequences.size(); ++s) {
    const int64_t n = int64_t(sequences[s].size());
    if (n > c.max_position_embeddings)
      fail(ErrorKind::bad_input, "hidden_states: sequence " + std::to_string(s) + " has " + std::to_string(n) +
                                     " tokens, beyond max_position_embeddings " + std::to_string(c.max_position_embeddings));
    caches.push_back(make_cache(std::max<int64_t>(n, 1)));
    batch.push_back({sequences[s], &caches.back()});
  }
  const FlatBatch flat = flatten(c, batch);
  std::unique_lock<std::mutex> device_lock(impl_->device_mutex, std::defer_lock);
  if (b.device() != Device::cpu) device_lock.lock();
  const std::shared_lock weights_lock(impl_->weights_mutex);
  return any_plain_pass(*impl_, flat, {.logits = LogitsFor::every_token, .hidden_states = true}).download();
}

KVBlockPool Model::make_block_pool(int64_t num_blocks, int64_t block_size) const {
  if (num_blocks < 1 || block_size < 1)
    fail(ErrorKind::bad_input, "KV block pool: " + std::to_string(num_blocks) + " blocks of " +
                                   std::to_string(block_size) + " positions (both must be at least 1)");
  auto [keys, values] = kv_tensors(*impl_, num_blocks * block_size);
  return KVBlockPool(std::move(keys), std::move(values), block_size);
}

namespace {

// A paged pass: validated whole, then run under the device lock; `read(logits)` takes what the caller gets
// from the device logits before the lock is released.
template <class Read>
auto run_paged(Model::Impl& impl, KVBlockPool& pool, std::span<const PagedSequence> batch, LogitsFor logits,
               Read&& read) {
  Backend& b = *impl.backend;
  require_head(impl.config);
  const FlatBatch flat = flatten_paged(impl, pool, batch);
  const LoraSource* first = batch[0].lora;
  const bool mixed = std::any_of(batch.begin(), batch.end(), [&](const PagedSequence& s) { return s.lora != first; });
  if (mixed)
    for (const PagedSequence& s : batch)
      if (s.lora && (s.lora->head() || s.lora->embedding()))
        fail(ErrorKind::unsupported, "forward_paged: an adapter that replaces the embedding or head (modules_to_save) "
                                     "cannot share a batch with other adapters");
  std::unique_lock<std::mutex> device_lock(impl.device_mutex, std::defer_lock);
  if (b.device() != Device::cpu) device_lock.lock();
  const std::shared_lock weights_lock(impl.weights_mutex);
  // On a device every row takes its adapter by the row gather, one adapter or many (the same kernels, the same cost).
  const bool by_rows = mixed || (b.device() != Device::cpu && first);
  // One sequence decoding one token: the fused one-token kernels, as a contiguous cache's step runs.
  if (impl.decode_steps && impl.decode_steps->fused() && logits == LogitsFor::last_token && flat.ids.size() == 1 &&
      impl.decode_steps->takes(first))
    return read(DeviceLogits(b, impl.decode_steps->run_paged(impl.weights, flat, pool, first)));
  if (impl.paged_steps && logits == LogitsFor::last_token && impl.paged_steps->takes(flat))
    return read(DeviceLogits(b, impl.paged_steps->run(impl.weights, flat, pool)));
  return read(any_plain_pass(impl, flat, {.logits = logits, .lora = mixed ? nullptr : first, .pool = &pool,
                                          .mixed_lora = by_rows}));
}

// The rows of `logits` that `reads` asks for: every summary in one device pass, whole rows downloaded (all at once
// when several are).
std::vector<Model::SummaryResult> read_rows(const DeviceLogits& logits, std::span<const Model::RowRead> reads,
                                            std::exception_ptr& thrown) {
  const int64_t n = logits.rows();
  std::vector<Model::SummaryResult> out(static_cast<size_t>(n));
  std::vector<int64_t> summarized, whole;
  std::vector<std::vector<int32_t>> gathers;
  int32_t count = 0;
  for (int64_t r = 0; r < n; ++r) {
    const Model::RowRead& read = reads[size_t(r)];
    if (!read.wanted) continue;
    if (read.summary.count <= 0) {
      whole.push_back(r);
      continue;
    }
    summarized.push_back(r);
    gathers.push_back(read.summary.gather);
    count = std::max(count, read.summary.count);
  }
  Tensor host;  // every row, when several are wanted whole
  const auto row_of = [&](int64_t r) { return host.defined() ? host.rows(r, r + 1) : logits.download_row(r); };
  if (whole.size() > 1) host = logits.download();
  for (int64_t r : whole) out[size_t(r)].row = row_of(r);
  if (summarized.empty()) return out;
  std::vector<LogitSummary> summaries = logits.summarize(summarized, count, gathers);
  for (size_t i = 0; i < summarized.size(); ++i) {
    const int64_t r = summarized[i];
    const Model::SummaryRequest& request = reads[size_t(r)].summary;
    LogitSummary& s = out[size_t(r)].summary = std::move(summaries[i]);
    s.ids.resize(std::min(s.ids.size(), size_t(request.count)));  // best first: the row's own count of them
    s.values.resize(s.ids.size());
    bool enough = true;
    try {
      if (request.enough) enough = request.enough(s);
    } catch (...) {
      if (!thrown) thrown = std::current_exception();
    }
    if (!enough) out[size_t(r)].row = row_of(r);
  }
  return out;
}

}  // namespace

Tensor Model::forward_paged(KVBlockPool& pool, std::span<const PagedSequence> batch, LogitsFor logits) const {
  return run_paged(*impl_, pool, batch, logits, [](const DeviceLogits& t) { return t.download(); });
}

std::vector<Model::SummaryResult> Model::forward_paged_read(KVBlockPool& pool, std::span<const PagedSequence> batch,
                                                            std::span<const RowRead> reads) const {
  if (reads.size() != batch.size())
    fail(ErrorKind::bad_input, "forward_paged_read: " + std::to_string(reads.size()) + " row reads for a batch of " +
                                   std::to_string(batch.size()) + " sequences");
  std::exception_ptr thrown;  // by an `enough`: rethrown once every row was read
  std::vector<SummaryResult> out = run_paged(*impl_, pool, batch, LogitsFor::last_token,
                                             [&](const DeviceLogits& logits) {
                                               return read_rows(logits, reads, thrown);
                                             });
  if (thrown) std::rethrow_exception(thrown);
  return out;
}

Model::SummaryResult Model::forward_summary(const SequenceInput& input, const ForwardOptions& options,
                                            const SummaryRequest& request) const {
  std::exception_ptr thrown;  // by `enough`: rethrown once the cache has advanced, as after forward()
  SummaryResult r = run_forward(*impl_, std::span(&input, 1), {.logits = LogitsFor::last_token, .lora = options.lora},
                                [&](const DeviceLogits& logits) {
                                  const int64_t row = 0;
                                  SummaryResult out{.summary = std::move(logits.summarize(
                                                        std::span(&row, 1), request.count, {request.gather})[0])};
                                  bool enough = true;
                                  try {
                                    if (request.enough) enough = request.enough(out.summary);
                                  } catch (...) {
                                    thrown = std::current_exception();
                                  }
                                  if (!enough) out.row = logits.download();
                                  return out;
                                });
  if (thrown) std::rethrow_exception(thrown);
  return r;
}

void Model::record_paged_steps(KVBlockPool& pool, int64_t rows) const {
  if (const TensorParallel* tp = impl_->tp.get(); tp && !tp->paged_steps.empty()) {  // every rank at once
    const std::lock_guard device_lock(impl_->device_mutex);
    const std::shared_lock weights_lock(impl_->weights_mutex);
    tp->threads->run(
        [&](int r) {
          tp->backends[size_t(r)]->bind_thread();
          tp->paged_steps[size_t(r)]->record(tp->weights[size_t(r)], pool, rows, 1);
          tp->decode_steps[size_t(r)]->record_paged(tp->weights[size_t(r)], pool, 1);  // a batch of one
        },
        [&] { tp->collective->abort(); });
    return;
  }
  if (!impl_->paged_steps) return;
  const std::lock_guard device_lock(impl_->device_mutex);
  const std::shared_lock weights_lock(impl_->weights_mutex);
  impl_->paged_steps->record(impl_->weights, pool, rows, 1);
  impl_->decode_steps->record_paged(impl_->weights, pool, 1);  // a batch of one runs the one-token kernels
}

int64_t Model::paged_graphs_recorded() const {
  if (impl_->tp && !impl_->tp->paged_steps.empty()) return impl_->tp->paged_steps[0]->graphs_recorded();  // each rank's
  return impl_->paged_steps ? impl_->paged_steps->graphs_recorded() : 0;
}

int64_t Model::decode_graphs_recorded() const {
  if (impl_->tp && !impl_->tp->decode_steps.empty()) return impl_->tp->decode_steps[0]->graphs_recorded();  // each rank's
  return impl_->decode_steps ? impl_->decode_steps->graphs_recorded() : 0;
}

std::shared_ptr<const LoraSource> Model::active_lora() const { return impl_->active_lora.load(); }
std::shared_ptr<const LoraSource> Model::set_active_lora(std::shared_ptr<const LoraSource> lora) {
  return impl_->active_lora.exchange(std::move(lora));
}

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
