// A model split over several devices (tensor parallelism, tensor_parallel.h): loading its ranks and running a pass on
// all of them at once.
#include "model/split_model.h"

#include <cstdlib>
#include <string>
#include <vector>

#include "backend/collective.h"
#include "core/rank_threads.h"

namespace wick {

// Tensor parallelism: a backend per rank (rank r on GPU r), each made, loaded and driven from its rank's thread; the
// ranks joined by the host collective (CPU) or NCCL (GPUs). WICK_TP_ONE_GPU=1 puts every rank on GPU 0, joined
// through the host: the split model's device code checked on a machine with one GPU (tests).
void load_split(Model::Impl& impl, const TensorStore& store, const std::filesystem::path& dir, const LoadOptions& o) {
  const int n = o.tensor_parallel;
  const char* one_gpu_env = std::getenv("WICK_TP_ONE_GPU");
  const bool one_gpu = o.device != Device::cpu && one_gpu_env && std::string(one_gpu_env) == "1";
  auto tp = std::make_unique<TensorParallel>();
  tp->config = shard_config(impl.config, n);
  tp->backends.assign(size_t(n), nullptr);
  tp->owned.resize(size_t(n));
  tp->weights.resize(size_t(n));
  tp->threads = std::make_unique<RankThreads>(n, nullptr);
  tp->threads->run([&](int r) {
    tp->owned[size_t(r)] = make_backend(o.device, o.cpu_weights, one_gpu ? 0 : r);
    tp->backends[size_t(r)] = tp->owned[size_t(r)].get();
    tp->weights[size_t(r)] = load_weights(impl.config, store, *tp->backends[size_t(r)], dir.string(), {r, n});
  });
  tp->collective = o.device == Device::cpu ? make_host_collective(n)
                   : one_gpu                ? make_staged_collective(tp->backends)
                                            : make_nccl_collective(tp->backends);
  for (int r = 0; r < n; ++r)
    tp->rank_of.push_back({.collective = tp->collective.get(),
                           .shard = {r, n},
                           .split_head = impl.config.head == ModelHead::causal_lm});
  // Each rank's recorded steps: the paged ones where the collective can be recorded (NCCL's), the one-token ones
  // everywhere, run eagerly where it cannot (the host's on the CPU — the reference of the GPUs' — and the staged
  // one). Every rank takes the same kernels: the fused one-token ones only if every rank's share suits them (a
  // row-split projection's bias is rank 0's alone).
  if (impl.config.head != ModelHead::none) {
    bool fused = true;
    for (int r = 0; r < n; ++r)
      fused = fused && DecodeSteps::fused_takes(*tp->backends[size_t(r)], tp->config, tp->weights[size_t(r)]);
    for (int r = 0; r < n; ++r) {
      Backend& b = *tp->backends[size_t(r)];
      const RankOfMany* rank = &tp->rank_of[size_t(r)];
      if (tp->collective->capturable())
        tp->paged_steps.push_back(std::make_unique<PagedSteps>(b, tp->config, rank));
      tp->decode_steps.push_back(std::make_unique<DecodeSteps>(b, tp->config, tp->weights[size_t(r)], rank, fused));
    }
  }
  impl.backend = std::move(tp->owned[0]);
  impl.weights = tp->weights[0];
  impl.tp = std::move(tp);
}

// The factors copied to the host once (from rank 0's device), each rank's cut uploaded from its own thread.
const LoraSource* rank_lora(const Model::Impl& impl, const LoraSource* lora, int r) {
  if (!lora) return nullptr;
  const TensorParallel& tp = *impl.tp;
  return lora
      ->rank_shards(tp.ranks(),
                    [&] {
                      std::unique_ptr<LoraSource> host;
                      tp.threads->run_on(0, [&] {
                        tp.backends[0]->bind_thread();
                        host = host_lora_copy(*lora, impl.config.num_layers, *tp.backends[0]);
                      });
                      LoraSource::Shards shards(size_t(tp.ranks()));
                      tp.threads->run([&](int k) {
                        tp.backends[size_t(k)]->bind_thread();
                        shards[size_t(k)] =
                            shard_lora(*host, impl.config, {k, tp.ranks()}, *tp.backends[size_t(k)]);
                      });
                      return shards;
                    })[size_t(r)]
      .get();
}

// plain_pass on every rank of a split model at once, each on its thread with its ids, adapters' shares and KV shard
// (or, for a decode step of a paged batch or of one sequence in its cache, each rank's recorded step: every rank
// takes the same path, or their collectives would not meet): each rank's logits of its vocabulary slice (a causal
// LM's), else rank 0's.
DeviceLogits split_pass(const Model::Impl& impl, const FlatBatch& flat, const PlainPassOptions& o) {
  const TensorParallel& tp = *impl.tp;
  const int n = tp.ranks();
  std::vector<FlatBatch> mine(size_t(n), flat);  // the adapters' shares are made here, before the ranks run
  for (int r = 0; r < n; ++r) {
    shard_ids(flat.ids, {r, n}, impl.config.vocab_size, mine[size_t(r)].ids);
    for (Span& s : mine[size_t(r)].spans) s.lora = rank_lora(impl, s.lora, r);
  }
  std::vector<const LoraSource*> lora(mine.size());
  for (int r = 0; r < n; ++r) lora[size_t(r)] = rank_lora(impl, o.lora, r);
  // One new token of one sequence — in its own cache (o.lora its adapter) or a pool's rows (its span's) — as each
  // rank's one-token step, recorded where the collective can be: the fused kernels over a pool, any kernels over a
  // cache, as a whole model takes them (run_forward, run_paged).
  const auto adapter = [&](int r) { return o.pool ? mine[size_t(r)].spans[0].lora : lora[size_t(r)]; };
  const bool last = o.logits == LogitsFor::last_token && !o.hidden_states;
  const bool one_token = !tp.decode_steps.empty() && last && flat.ids.size() == 1 && flat.spans.size() == 1 &&
                         (!o.pool || tp.decode_steps[0]->fused()) && tp.decode_steps[0]->takes(adapter(0));
  const bool recorded =
      !one_token && !tp.paged_steps.empty() && o.pool && last && tp.paged_steps[0]->takes(mine[0]);
  std::vector<Tensor> logits(static_cast<size_t>(n));
  tp.threads->run(
      [&](int r) {
        Backend& b = *tp.backends[size_t(r)];
        b.bind_thread();
        const FlatBatch& f = mine[size_t(r)];
        PlainPassOptions ro = o;
        ro.lora = lora[size_t(r)];
        const ModelWeights& w = tp.weights[size_t(r)];
        DecodeSteps* steps = one_token ? tp.decode_steps[size_t(r)].get() : nullptr;
        logits[size_t(r)] = steps && o.pool ? steps->run_paged(w, f, *o.pool, adapter(r))
                            : steps         ? steps->run(w, f.spans[0], f.ids[0], adapter(r))
                            : recorded      ? tp.paged_steps[size_t(r)]->run(w, f, *o.pool)
                                            : plain_pass(b, tp.config, w, f, ro, &tp.rank_of[size_t(r)]);
      },
      [&] { tp.collective->abort(); });
  if (tp.rank_of[0].split_head && !o.hidden_states) return DeviceLogits(tp, std::move(logits), impl.config.vocab_size);
  return DeviceLogits(*tp.backends[0], std::move(logits[0]), &tp);
}

}  // namespace wick
