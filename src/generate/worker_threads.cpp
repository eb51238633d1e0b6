#include "generate/worker_threads.h"

#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>

namespace wick {

namespace {

constexpr int kMaxIdle = 4;

struct Workers {
  std::mutex mutex;
  std::condition_variable job_ready;
  std::deque<std::function<void()>> jobs;  // handed to waiting threads, never more than `idle`
  int idle = 0;                            // threads waiting for a job
};

// Never destroyed: idle threads may still wait on it while the process exits.
Workers& workers() {
  static Workers* w = new Workers;
  return *w;
}

void work(Workers& w, std::function<void()> job) {
  for (;;) {
    job();
    job = nullptr;  // what the job holds is released before the thread waits
    std::unique_lock lock(w.mutex);
    if (w.idle >= kMaxIdle) return;
    ++w.idle;
    w.job_ready.wait(lock, [&] { return !w.jobs.empty(); });
    --w.idle;
    job = std::move(w.jobs.front());
    w.jobs.pop_front();
  }
}

}  // namespace

void run_on_worker(std::function<void()> job) {
  Workers& w = workers();
  {
    std::lock_guard lock(w.mutex);
    if (w.idle > int(w.jobs.size())) {  // a waiting thread is free to take it
      w.jobs.push_back(std::move(job));
      w.job_ready.notify_one();
      return;
    }
  }
  std::thread(work, std::ref(w), std::move(job)).detach();
}

}  // namespace wick
