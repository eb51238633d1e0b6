// A small pool of worker threads for data-parallel loops in CPU ops. Between loops a worker polls for the next one
// for a fraction of a millisecond (a model's pass runs its loops microseconds apart, and a wake-up through the kernel
// costs tens of microseconds), then sleeps on a condition variable: idle, it takes no CPU from anyone.
#pragma once

#include <cstdint>
#include <functional>

namespace wick {

/// Splits [0, n) into contiguous chunks of at least `grain` items and runs fn(begin, end) on the
/// pool and the calling thread; returns when every chunk is done. Runs inline when n ≤ grain.
/// Exceptions thrown by fn are rethrown here (the first one).
void parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t begin, int64_t end)>& fn);

/// Threads parallel_for uses (workers + the caller): set_thread_count's, else WICK_NUM_THREADS when set, else the
/// CPUs this process may run on (its affinity mask).
int thread_count();

/// Sets the thread count before the pool starts (its first loop, or thread_count()); afterwards only the count it
/// runs is accepted. Throws bad_input naming --threads for n < 1 or a different count once started.
void set_thread_count(int n);

}  // namespace wick
