// Cross-request batching of embeddings (embed_batch.h).
#include "serve/embed_batch.h"

#include <utility>

namespace wick::serve {

namespace {

Tensor embed_one(const Embedder& e, const EmbedJob& job) {
  return job.texts.empty() ? e.embed_ids(job.token_ids, job.dimensions)
                           : e.embed(job.texts, {.dimensions = job.dimensions});
}

// Jobs of one kind of input and one `dimensions`: one call, or one each where that fails.
void embed_group(const Embedder& e, std::span<EmbedJob* const> group) {
  if (group.size() > 1) {
    EmbedJob all{.dimensions = group.front()->dimensions};
    for (const EmbedJob* j : group) {
      all.texts.insert(all.texts.end(), j->texts.begin(), j->texts.end());
      all.token_ids.insert(all.token_ids.end(), j->token_ids.begin(), j->token_ids.end());
    }
    try {
      const Tensor out = embed_one(e, all);
      int64_t row = 0;
      for (EmbedJob* j : group) {
        const auto n = int64_t(j->texts.empty() ? j->token_ids.size() : j->texts.size());
        j->out = out.rows(row, row + n).clone();
        row += n;
      }
      return;
    } catch (...) {  // one bad request among them: each alone, so that only it fails
    }
  }
  for (EmbedJob* j : group) {
    try {
      j->out = embed_one(e, *j);
    } catch (...) {
      j->error = std::current_exception();
    }
  }
}

}  // namespace

void embed_jobs(const Embedder& embedder, std::span<EmbedJob* const> jobs) {
  std::vector<bool> taken(jobs.size(), false);
  for (size_t i = 0; i < jobs.size(); ++i) {
    if (taken[i]) continue;
    std::vector<EmbedJob*> group;
    const bool texts = !jobs[i]->texts.empty();
    for (size_t k = i; k < jobs.size(); ++k)
      if (!taken[k] && !jobs[k]->texts.empty() == texts && jobs[k]->dimensions == jobs[i]->dimensions) {
        taken[k] = true;
        group.push_back(jobs[k]);
      }
    embed_group(embedder, group);
  }
}

EmbedBatcher::EmbedBatcher(std::shared_ptr<const Embedder> embedder, std::shared_ptr<DeviceTurns> turns)
    : embedder_(std::move(embedder)), turns_(std::move(turns)) {}

Tensor EmbedBatcher::embed(EmbedJob& job) {
  {
    const std::lock_guard lock(mu_);
    waiting_.push_back(&job);
  }
  // A job leaves waiting_ only in the hands of a turn's holder, which marks it done before its turn ends: once this
  // handler holds the turn, its job is either done or still waiting (and it embeds it, with the others waiting).
  const auto run = [&] {
    std::vector<EmbedJob*> batch;
    {
      const std::lock_guard lock(mu_);
      if (job.done) return;
      batch.swap(waiting_);
    }
    try {
      embed_jobs(*embedder_, batch);
    } catch (...) {  // beyond the jobs' own errors (out of memory gathering them): every job unanswered gets it
      for (EmbedJob* j : batch)
        if (!j->error && !j->out.defined()) j->error = std::current_exception();
    }
    const std::lock_guard lock(mu_);
    for (EmbedJob* j : batch) j->done = true;
    ++batches_;
    requests_ += int64_t(batch.size());
  };
  {
    const std::lock_guard turn(*turns_);
    run();
  }
  if (job.error) std::rethrow_exception(job.error);
  return std::move(job.out);
}

int64_t EmbedBatcher::batches() const {
  const std::lock_guard lock(mu_);
  return batches_;
}

size_t EmbedBatcher::waiting() const {
  const std::lock_guard lock(mu_);
  return waiting_.size();
}

int64_t EmbedBatcher::requests() const {
  const std::lock_guard lock(mu_);
  return requests_;
}

}  // namespace wick::serve
