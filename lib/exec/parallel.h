// A minimal parallel-for for the executor's own loops (elementwise, pooling, depthwise convolution).
// GEMMs are threaded by OpenBLAS; these loops split [0, n) into one contiguous chunk per thread and only
// go parallel when there is enough work to pay for starting threads.
#pragma once
#include <algorithm>
#include <cstdint>
#include <thread>
#include <vector>

namespace mopt::exec {

// Threads the executor may use (set with set_thread_count; 1 until then).
int thread_count();

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
  std::vector<std::thread> workers;
  const int64_t chunk = (n + threads - 1) / threads;
  for (int64_t t = 1; t < threads; ++t) {
    int64_t begin = t * chunk, end = std::min(n, begin + chunk);
    if (begin < end) workers.emplace_back([&fn, begin, end] { fn(begin, end); });
  }
  fn(int64_t{0}, std::min(n, chunk));
  for (auto& w : workers) w.join();
}

}  // namespace mopt::exec
