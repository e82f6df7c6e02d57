// A minimal parallel-for for the executor's own loops (elementwise, pooling, convolution, GEMM blocks).
// Work is split into one contiguous chunk per thread and only goes parallel when there is enough of it.
// The threads are started once and kept (a persistent pool, OpenMP's, shared with oneDNN: parallel.cpp):
// starting a thread per call cost more than the small operators it was meant to speed up. GEMMs run
// single-threaded OpenBLAS calls on these threads.
#pragma once
#include <algorithm>
#include <cstdint>
#include <functional>

namespace mopt::exec {

// Threads the executor may use (set with set_thread_count; 1 until then).
int thread_count();

// Runs task(0) .. task(count - 1) on the calling thread and the pool's threads (whichever is free first), and
// returns when all are done; the first exception a task throws is rethrown here. Runs them one after
// another when called from inside a task (nested) or while another thread holds the pool.
void run_tasks(int count, const std::function<void(int)>& task);

// Calls fn(begin, end) over [0, n). `cost` is the rough work per index (elements touched).
template <typename Fn>
void parallel_for(int64_t n, int64_t cost, Fn&& fn) {
  const int64_t kMinWorkPerThread = 1 << 15;
  int64_t threads = std::min<int64_t>(thread_count(), std::max<int64_t>(1, n * std::max<int64_t>(cost, 1) / kMinWorkPerThread));
  threads = std::min(threads, n);
  if (threads <= 1) {
    if (n > 0) fn(int64_t{0}, n);
    return;
  }
  const int64_t chunk = (n + threads - 1) / threads;
  run_tasks(static_cast<int>(threads), [&](int t) {
    const int64_t begin = t * chunk, end = std::min(n, begin + chunk);
    if (begin < end) fn(begin, end);
  });
}

}  // namespace mopt::exec
