#include "core/thread_pool.h"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <exception>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace wick {

namespace {

// One parallel loop: workers that wake late for an old job find its counter exhausted and leave.
struct Job {
  const std::function<void(int64_t)>* body = nullptr;
  int64_t chunks = 0;
  std::atomic<int64_t> next{0};
  int64_t pending = 0;  // guarded by ThreadPool::mu_
  std::exception_ptr error;
};

class ThreadPool {
 public:
  explicit ThreadPool(int threads) {
    for (int i = 1; i < threads; ++i) workers_.emplace_back([this] { work(); });
  }
  ~ThreadPool() {
    {
      std::lock_guard lock(mu_);
      stop_ = true;
    }
    wake_.notify_all();
    for (auto& w : workers_) w.join();
  }
  int size() const { return int(workers_.size()) + 1; }

  void run(int64_t chunks, const std::function<void(int64_t)>& body) {
    std::lock_guard serial(run_mu_);  // one loop at a time; nested calls run inline (see parallel_for)
    auto job = std::make_shared<Job>();
    job->body = &body;
    job->chunks = chunks;
    job->pending = chunks;
    {
      std::lock_guard lock(mu_);
      job_ = job;
      ++generation_;
    }
    wake_.notify_all();
    drain(*job);
    std::unique_lock lock(mu_);
    done_.wait(lock, [&] { return job->pending == 0; });
    job_.reset();
    if (job->error) std::rethrow_exception(job->error);
  }

 private:
  void drain(Job& job) {
    for (;;) {
      const int64_t c = job.next.fetch_add(1);
      if (c >= job.chunks) return;
      std::exception_ptr error;
      try {
        (*job.body)(c);
      } catch (...) {
        error = std::current_exception();
      }
      std::lock_guard lock(mu_);
      if (error && !job.error) job.error = error;
      if (--job.pending == 0) done_.notify_all();
    }
  }
  void work() {
    uint64_t seen = 0;
    for (;;) {
      std::shared_ptr<Job> job;
      {
        std::unique_lock lock(mu_);
        wake_.wait(lock, [&] { return stop_ || (generation_ != seen && job_); });
        if (stop_) return;
        seen = generation_;
        job = job_;
      }
      drain(*job);
    }
  }

  std::vector<std::thread> workers_;
  std::mutex run_mu_, mu_;
  std::condition_variable wake_, done_;
  std::shared_ptr<Job> job_;  // the loop in progress, if any
  uint64_t generation_ = 0;
  bool stop_ = false;
};

int configured_threads() {
  if (const char* env = std::getenv("WICK_NUM_THREADS")) {
    const int n = std::atoi(env);
    if (n > 0) return n;
  }
  return std::max(1u, std::thread::hardware_concurrency());
}

ThreadPool& pool() {
  static ThreadPool p(configured_threads());
  return p;
}

thread_local bool inside_loop = false;

}  // namespace

int thread_count() { return pool().size(); }

void parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn) {
  if (n <= 0) return;
  grain = std::max<int64_t>(grain, 1);
  const int64_t max_chunks = std::min<int64_t>((n + grain - 1) / grain, int64_t(pool().size()) * 4);
  if (max_chunks <= 1 || inside_loop || pool().size() == 1) {
    fn(0, n);
    return;
  }
  const int64_t per = (n + max_chunks - 1) / max_chunks;
  const int64_t chunks = (n + per - 1) / per;
  pool().run(chunks, [&](int64_t c) {
    struct Mark {
      Mark() { inside_loop = true; }
      ~Mark() { inside_loop = false; }
    } mark;
    fn(c * per, std::min(n, (c + 1) * per));
  });
}

}  // namespace wick
