// Threads for async streams that outlive their jobs: a stream's decode loop takes an idle thread (or a new one), and
// the thread then waits for the next job. A fresh thread per request pays again for what a thread sets up on first
// use (the CUDA runtime's per-thread state, the allocator's arena): on the H200 an async stream of 100 tokens took
// ~1.8 ms (1.7 %) longer than generate() with a thread per request, and no longer than it with reused threads.
#pragma once

#include <functional>

namespace wick {

/// Runs `job` on a worker thread and returns at once. Up to four threads stay waiting for further jobs; a job
/// that finds none waiting gets a new thread, so jobs never wait for one another. `job` must not throw.
/// Workers are never joined: whoever needs a job's end must be told by the job itself.
void run_on_worker(std::function<void()> job);

}  // namespace wick
