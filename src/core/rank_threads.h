// A thread per rank of a model split over several devices: each keeps its device current (its own CUDA context
// state), and run() hands every rank the same work at once.
#pragma once

#include <condition_variable>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace wick {

class RankThreads {
 public:
  /// `ranks` threads; each first calls init(rank) (say, to make its GPU current).
  RankThreads(int ranks, std::function<void(int rank)> init);
  ~RankThreads();
  RankThreads(const RankThreads&) = delete;
  RankThreads& operator=(const RankThreads&) = delete;

  int ranks() const { return int(threads_.size()); }
  /// Runs fn(rank) on every rank's thread at once and waits for all of them. When one throws, on_failure() is called
  /// at once (to abort the collectives the others may wait in); the first exception is rethrown here after every rank
  /// has returned.
  void run(const std::function<void(int rank)>& fn, const std::function<void()>& on_failure = {});
  /// Runs fn() on rank `rank`'s thread alone and waits for it; its exception is rethrown here.
  void run_on(int rank, const std::function<void()>& fn);

 private:
  void work(int rank);

  std::mutex mu_;
  std::condition_variable wake_, done_;
  std::vector<std::thread> threads_;
  std::vector<std::function<void()>> tasks_;  // per rank: the pending task, or empty
  std::function<void(int)> init_;
  std::exception_ptr error_;
  std::function<void()> on_failure_;
  int pending_ = 0;
  bool stop_ = false;
  std::mutex run_mu_;  // one run at a time
};

}  // namespace wick
