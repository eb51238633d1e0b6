// The engine's scheduler: a step plans the batch (running sequences oldest first, then waiting ones admitted with
// their cached prefix), makes room by preempting the newest, runs one paged forward pass, then asks the sinks of
// sequences that reached their newest token what comes next.
#include "wick/engine.h"

#include <algorithm>
#include <condition_variable>
#include <deque>
#include <exception>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>

#include "engine/block_manager.h"
#include "wick/error.h"

namespace wick {

namespace {

struct Sequence {
  uint64_t id = 0;
  std::vector<int32_t> tokens;  // prompt, then every token its sink chose
  int64_t computed = 0;         // positions whose keys and values are in `blocks`
  std::vector<int32_t> blocks;  // the block table
  std::vector<BlockManager::ChainId> chain;  // the chain id of each registered full block, from the first
  std::shared_ptr<const LoraSource> lora;
  std::shared_ptr<TokenSink> sink;
  bool cancelled = false;
};

}  // namespace

struct Engine::Impl {
  std::shared_ptr<const Model> model;
  EngineOptions options;
  KVBlockPool pool;
  BlockManager blocks;
  // Owned by the thread that runs the steps.
  std::unordered_map<uint64_t, std::unique_ptr<Sequence>> live;  // waiting or running
  std::deque<Sequence*> waiting;                                 // oldest first
  std::vector<Sequence*> running;                                // admission order: oldest first
  EngineStats stats;

  // Shared with the threads that submit and cancel: guarded by `mu`.
  std::mutex mu;
  std::condition_variable wake;
  std::vector<std::unique_ptr<Sequence>> inbox;  // submitted, not yet seen by a step
  std::vector<uint64_t> cancels;                 // asked for, not yet seen by a step
  std::unordered_map<uint64_t, std::exception_ptr> errors;
  EngineStats published;                         // stats as of the last step
  uint64_t next_id = 1;
  std::thread worker;
  bool stopping = false;

  Impl(std::shared_ptr<const Model> m, const EngineOptions& o)
      : model(std::move(m)),
        options(o),
        pool(model->make_block_pool(o.num_blocks, o.block_size)),
        blocks(o.num_blocks, o.block_size) {
    if (o.max_step_tokens < 1 || o.max_running < 1)
      fail(ErrorKind::bad_input, "engine: max_step_tokens and max_running must be at least 1");
    {
      const std::unique_lock turn = device_turn();
      model->record_paged_steps(pool, o.max_running);  // the decode steps' graphs before the first request
    }
    publish();
  }

  // The device for one piece of work: a turn of options.turns when the engine shares it.
  std::unique_lock<DeviceTurns> device_turn() const {
    return options.turns ? std::unique_lock(*options.turns) : std::unique_lock<DeviceTurns>();
  }

  // Gives a sequence's blocks back and forgets its progress (it is recomputed if it runs again).
  void drop_blocks(Sequence& s) {
    for (int32_t b : s.blocks) blocks.release(b);
    s.blocks.clear();
    s.chain.clear();
    s.computed = 0;
  }

  void end(Sequence& s, SequenceEnd how) {
    drop_blocks(s);
    ++stats.finished;
    const std::shared_ptr<TokenSink> sink = s.sink;
    live.erase(s.id);  // destroys s
    sink->on_end(how);
  }

  void fail_sequence(Sequence& s, std::exception_ptr e) {
    {
      const std::lock_guard lock(mu);
      errors[s.id] = std::move(e);
    }
    end(s, SequenceEnd::failed);
  }

  // What other threads handed over since the last step: new sequences (to the back of the queue) and cancels.
  void take_inbox() {
    std::vector<std::unique_ptr<Sequence>> arrived;
    std::vector<uint64_t> cancelled;
    {
      const std::lock_guard lock(mu);
      arrived.swap(inbox);
      cancelled.swap(cancels);
    }
    for (auto& s : arrived) {
      waiting.push_back(s.get());
      const uint64_t id = s->id;
      live.emplace(id, std::move(s));
    }
    for (uint64_t id : cancelled)
      if (const auto it = live.find(id); it != live.end()) it->second->cancelled = true;
  }

  void publish() {
    EngineStats s = stats;
    s.waiting = int64_t(waiting.size());
    s.running = int64_t(running.size());
    s.blocks_total = blocks.num_blocks();
    s.blocks_held = blocks.held();
    s.blocks_cached = blocks.cached();
    const std::lock_guard lock(mu);
    published = s;
  }

  // Ends every sequence: cancelled (the engine is going away), or failed with `e` (a step broke).
  void end_all(std::exception_ptr e = nullptr) {
    take_inbox();
    std::vector<Sequence*> all(running.begin(), running.end());
    all.insert(all.end(), waiting.begin(), waiting.end());
    running.clear();
    waiting.clear();
    for (Sequence* s : all) {
      if (e) fail_sequence(*s, e);
      else end(*s, SequenceEnd::cancelled);
    }
    publish();
  }

  // Blocks for `positions` positions of s, allocated as needed; false (allocating nothing) when the pool lacks them.
  bool reserve(Sequence& s, int64_t positions) {
    const int64_t needed = (positions + options.block_size - 1) / options.block_size - int64_t(s.blocks.size());
    if (needed <= 0) return true;
    if (needed > blocks.available()) return false;
    for (int64_t i = 0; i < needed; ++i) s.blocks.push_back(*blocks.allocate());
    return true;
  }

  // A new or preempted sequence's cached prefix: whole blocks of its tokens, leaving at least one to compute.
  void take_prefix(Sequence& s) {
    if (!options.share_prefixes || !s.blocks.empty()) return;
    const int64_t whole = (int64_t(s.tokens.size()) - 1) / options.block_size * options.block_size;
    s.blocks = blocks.match(s.lora.get(), std::span(s.tokens).first(size_t(whole)), s.chain);
    s.computed = int64_t(s.blocks.size()) * options.block_size;
    stats.prefix_hit_tokens += s.computed;
  }

  // Whether a running sequence is about to compute the block a waiting s would compute next — the same tokens up to
  // that block's end, under the same adapter version, computed not that far yet — so that s, waiting a step or a few
  // for it, takes it from the cache instead of computing it too: requests that arrive together with a common prefix
  // (one system prompt, a request's n choices) compute it once. A running sequence always progresses, so s is only
  // ever held back behind work that is being done.
  bool prefix_in_flight(const Sequence& s) const {
    if (!options.share_prefixes) return false;
    const int64_t next = s.computed + options.block_size;  // the end of the block s would compute next
    if (next > int64_t(s.tokens.size()) - 1) return false;  // not a block take_prefix would take (see there)
    return std::any_of(running.begin(), running.end(), [&](const Sequence* r) {
      return r->lora == s.lora && r->computed < next && int64_t(r->tokens.size()) >= next &&
             std::equal(s.tokens.begin(), s.tokens.begin() + next, r->tokens.begin());
    });
  }

  // Registers the blocks s filled completely (they become shareable).
  void register_full_blocks(Sequence& s) {
    if (!options.share_prefixes) return;
    const int64_t bs = options.block_size;
    for (int64_t b = int64_t(s.chain.size()); (b + 1) * bs <= s.computed; ++b) {
      const BlockManager::ChainId parent = b == 0 ? BlockManager::kRoot : s.chain[size_t(b - 1)];
      s.chain.push_back(blocks.register_full(s.blocks[size_t(b)], parent, s.lora,
                                             std::span(s.tokens).subspan(size_t(b * bs), size_t(bs))));
    }
  }

  void preempt(Sequence& s) {
    drop_blocks(s);
    waiting.push_front(&s);
    ++stats.preemptions;
  }

  void retire_cancelled() {
    std::vector<Sequence*> gone;
    const auto take = [&](Sequence* s) { return s->cancelled && (gone.push_back(s), true); };
    std::erase_if(waiting, take);
    std::erase_if(running, take);
    for (Sequence* s : gone) end(*s, SequenceEnd::cancelled);
  }

  bool step();
};

bool Engine::Impl::step() {
  take_inbox();
  retire_cancelled();
  if (running.empty() && waiting.empty()) {
    publish();
    return false;
  }
  struct Planned {
    Sequence* s;
    int64_t count;
  };
  std::vector<Planned> plan;
  int64_t budget = options.max_step_tokens;

  // Running sequences, oldest first; room is made by sending the newest back to wait.
  for (size_t i = 0; i < running.size() && budget > 0;) {
    Sequence& s = *running[i];
    const int64_t n = std::min(int64_t(s.tokens.size()) - s.computed, budget);
    if (!reserve(s, s.computed + n)) {
      Sequence* victim = running.back();
      running.pop_back();
      preempt(*victim);
      continue;  // s again (or, when s was the newest, the loop ends)
    }
    plan.push_back({&s, n});
    budget -= n;
    ++i;
  }
  // Waiting sequences, oldest first, while the budget, the running limit and the pool allow; one whose next block a
  // running sequence is computing stays for a later step (prefix_in_flight).
  for (size_t w = 0; w < waiting.size() && budget > 0 && int64_t(running.size()) < options.max_running;) {
    Sequence& s = *waiting[w];
    take_prefix(s);
    const bool later = prefix_in_flight(s);
    const int64_t n = std::min(int64_t(s.tokens.size()) - s.computed, budget);
    if (later || !reserve(s, s.computed + n)) {
      stats.prefix_hit_tokens -= s.computed;  // counted again when it is admitted
      drop_blocks(s);
      if (later) {
        ++stats.prefix_waits;
        ++w;
        continue;
      }
      break;
    }
    waiting.erase(waiting.begin() + long(w));
    running.push_back(&s);
    plan.push_back({&s, n});
    budget -= n;
  }
  if (plan.empty())  // submit() refuses what the whole pool cannot hold, so the oldest always fits an empty pool
    fail(ErrorKind::internal, "engine: nothing could be scheduled (" + std::to_string(waiting.size()) + " waiting, " +
                                  std::to_string(blocks.available()) + " blocks available)");

  std::vector<PagedSequence> batch;
  batch.reserve(plan.size());
  for (const Planned& p : plan)
    batch.push_back({.tokens = std::span(p.s->tokens).subspan(size_t(p.s->computed), size_t(p.count)),
                     .past = p.s->computed,
                     .blocks = p.s->blocks,
                     .lora = p.s->lora.get()});
  // Each sequence at the end of its known tokens is asked for its next: from a summary of its row when its sink
  // takes one (on a GPU all rows' summaries cross in one copy), else from the whole row.
  std::vector<Model::RowRead> reads(plan.size());
  std::vector<SummaryAnswer> answers(plan.size());
  std::vector<std::exception_ptr> thrown(plan.size());
  for (size_t r = 0; r < plan.size(); ++r) {
    Sequence& s = *plan[r].s;
    reads[r].wanted = s.computed + plan[r].count == int64_t(s.tokens.size());
    if (!reads[r].wanted) continue;
    std::optional<SummaryAsk> ask;
    try {
      ask = s.sink->summary_ask();
    } catch (...) {
      thrown[r] = std::current_exception();
      reads[r].wanted = false;
      continue;
    }
    if (!ask) continue;
    reads[r].summary = {.count = std::max<int32_t>(ask->count, 1),
                        .gather = std::move(ask->gather),
                        .enough = [&, r](const LogitSummary& summary) {
                          try {
                            answers[r] = plan[r].s->sink->next_token(summary);
                          } catch (...) {
                            thrown[r] = std::current_exception();
                            return true;
                          }
                          return answers[r].decided;
                        }};
  }
  std::vector<Model::SummaryResult> rows;
  try {
    const std::unique_lock turn = device_turn();
    rows = model->forward_paged_read(pool, batch, reads);
  } catch (...) {  // every sequence of the pass fails; the others go on
    const std::exception_ptr e = std::current_exception();
    for (const Planned& p : plan) {
      std::erase(running, p.s);
      fail_sequence(*p.s, e);
    }
    publish();
    return true;
  }
  ++stats.steps;

  for (size_t r = 0; r < plan.size(); ++r) {
    Sequence& s = *plan[r].s;
    s.computed += plan[r].count;
    stats.tokens_computed += plan[r].count;
    register_full_blocks(s);
    if (s.computed < int64_t(s.tokens.size())) continue;  // a prefill chunk short of the end
    std::optional<int32_t> next;
    try {
      if (thrown[r]) std::rethrow_exception(thrown[r]);
      const Tensor& row = rows[r].row;
      if (row.defined()) next = s.sink->next_token(std::span<const float>(row.data<float>(), size_t(row.numel())));
      else next = answers[r].next;
    } catch (...) {
      std::erase(running, &s);
      fail_sequence(s, std::current_exception());
      continue;
    }
    if (next) {
      s.tokens.push_back(*next);
    } else {
      std::erase(running, &s);
      end(s, SequenceEnd::finished);
    }
  }
  publish();
  return true;
}

Engine::Engine(std::shared_ptr<const Model> model, const EngineOptions& options)
    : impl_(std::make_unique<Impl>(std::move(model), options)) {}

Engine::~Engine() {
  if (impl_->worker.joinable()) {
    {
      const std::lock_guard lock(impl_->mu);
      impl_->stopping = true;
    }
    impl_->wake.notify_all();
    impl_->worker.join();
  }
  impl_->end_all();
}

void Engine::start() {
  Impl& im = *impl_;
  if (im.worker.joinable()) fail(ErrorKind::bad_input, "engine: start() was called already");
  im.worker = std::thread([&im] {
    while (true) {
      {
        std::unique_lock lock(im.mu);
        // running and waiting belong to this thread: reading them under the lock is only for the wait.
        im.wake.wait(lock, [&] {
          return im.stopping || !im.inbox.empty() || !im.cancels.empty() || !im.running.empty() || !im.waiting.empty();
        });
        if (im.stopping) return;
      }
      try {
        im.step();
      } catch (...) {  // nothing to rethrow into on this thread: every sequence fails with it
        im.end_all(std::current_exception());
      }
    }
  });
}

uint64_t Engine::submit(EngineRequest r) {
  Impl& im = *impl_;
  const ModelConfig& c = im.model->config();
  const auto bad = [](const std::string& why) { fail(ErrorKind::bad_input, "engine: request: " + why); };
  if (r.prompt.empty()) bad("the prompt is empty");
  if (!r.sink) bad("no token sink");
  if (r.max_new_tokens < 1) bad("max_new_tokens must be at least 1, found " + std::to_string(r.max_new_tokens));
  for (int32_t id : r.prompt)
    if (id < 0 || id >= c.vocab_size)
      bad("token id " + std::to_string(id) + " is outside the vocabulary [0, " + std::to_string(c.vocab_size) + ")");
  const int64_t positions = int64_t(r.prompt.size()) + r.max_new_tokens;
  if (positions > c.max_position_embeddings)
    bad(std::to_string(r.prompt.size()) + " prompt tokens + " + std::to_string(r.max_new_tokens) +
        " new ones exceed the model's context of " + std::to_string(c.max_position_embeddings));
  const int64_t bs = im.options.block_size, needed = (positions + bs - 1) / bs;
  if (needed > im.options.num_blocks)
    bad("it needs " + std::to_string(needed) + " blocks of " + std::to_string(bs) + " positions; the pool has " +
        std::to_string(im.options.num_blocks));
  auto s = std::make_unique<Sequence>();
  s->tokens = std::move(r.prompt);
  s->lora = std::move(r.lora);
  s->sink = std::move(r.sink);
  uint64_t id;
  {
    const std::lock_guard lock(im.mu);
    id = s->id = im.next_id++;
    im.inbox.push_back(std::move(s));
  }
  im.wake.notify_one();
  return id;
}

void Engine::cancel(uint64_t id) {
  {
    const std::lock_guard lock(impl_->mu);
    impl_->cancels.push_back(id);
  }
  impl_->wake.notify_one();
}

bool Engine::step() {
  if (impl_->worker.joinable()) fail(ErrorKind::bad_input, "engine: step() on an engine whose own thread runs (start())");
  return impl_->step();
}

void Engine::run() {
  while (step()) {
  }
}

std::exception_ptr Engine::error(uint64_t id) const {
  const std::lock_guard lock(impl_->mu);
  const auto it = impl_->errors.find(id);
  return it == impl_->errors.end() ? nullptr : it->second;
}

EngineStats Engine::stats() const {
  const std::lock_guard lock(impl_->mu);
  EngineStats s = impl_->published;
  s.waiting += int64_t(impl_->inbox.size());  // submitted since the last step
  return s;
}

const Model& Engine::model() const { return *impl_->model; }

}  // namespace wick
