// Requests that reach one embedding model while it is busy are embedded together: the handler that gets the model's
// turn takes every request waiting for it and runs them as one Embedder call per kind of input (the Embedder packs
// their texts into passes by length), so that many small concurrent requests cost about what one large one costs.
#pragma once

#include <cstdint>
#include <exception>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <vector>

#include "wick/device_turns.h"
#include "wick/embedder.h"

namespace wick::serve {

/// One request's inputs (texts or token id lists, not both) and, once done, its embeddings or its error.
struct EmbedJob {
  std::vector<std::string> texts{};
  std::vector<std::vector<int32_t>> token_ids{};
  int64_t dimensions = 0;  // EmbedOptions::dimensions
  Tensor out{};
  std::exception_ptr error{};
  bool done = false;
};

/// Embeds `jobs`: those of one kind of input and one `dimensions` in one call, each job's rows back into its `out`.
/// Where a shared call fails, its jobs run one by one, so that a bad request fails alone (its `error`).
void embed_jobs(const Embedder& embedder, std::span<EmbedJob* const> jobs);

/// An embedding model in a server, with the requests waiting for it.
class EmbedBatcher {
 public:
  /// `turns`: whose turn it is to embed: a GPU embedder's device's (shared with the engine's steps and training), a
  /// CPU embedder's own.
  EmbedBatcher(std::shared_ptr<const Embedder> embedder, std::shared_ptr<DeviceTurns> turns);

  const Embedder& embedder() const { return *embedder_; }

  /// Embeds the job, with whatever other jobs are waiting when this one's turn comes (or in the call of a handler
  /// whose turn came first); rethrows the job's own error.
  Tensor embed(EmbedJob& job);

  /// Batches embedded so far (turns that ran the jobs waiting) and the requests in them: requests() / batches() is
  /// the batching achieved.
  int64_t batches() const;
  int64_t requests() const;
  /// Jobs waiting for a turn now.
  size_t waiting() const;

 private:
  std::shared_ptr<const Embedder> embedder_;
  std::shared_ptr<DeviceTurns> turns_;
  mutable std::mutex mu_;  // waiting_, batches_, requests_, each job's `done`
  std::vector<EmbedJob*> waiting_;
  int64_t batches_ = 0, requests_ = 0;
};

}  // namespace wick::serve
