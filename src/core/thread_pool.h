// A small pool of worker threads for data-parallel loops in CPU ops. Workers sleep on a condition
// variable between loops (no spinning), so they never compete with OpenBLAS's own threads.
#pragma once

#include <cstdint>
#include <functional>

namespace wick {

/// Splits [0, n) into contiguous chunks of at least `grain` items and runs fn(begin, end) on the
/// pool and the calling thread; returns when every chunk is done. Runs inline when n ≤ grain.
/// Exceptions thrown by fn are rethrown here (the first one).
void parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t begin, int64_t end)>& fn);

/// Threads parallel_for uses (workers + the caller); WICK_NUM_THREADS overrides the core count.
int thread_count();

}  // namespace wick
