// The executor's thread pool; see parallel.h. The pool is OpenMP's (libgomp, the runtime Debian's oneDNN
// is built on): the executor's parallel loops and oneDNN's convolutions then run on the same threads.
// With a pool of its own beside it, libgomp's threads spun on the cores after each convolution while the
// executor's threads tried to run the next operator on them (squeezenet 10.4 ms p50 with two pools, 6.0 ms
// with this one).
//
// Regions start through GOMP_parallel, the entry point GCC compiles `#pragma omp parallel` to, declared
// here so that any compiler (clang for the fuzz build) builds this file against the same runtime.
#include "exec/parallel.h"

#include <atomic>
#include <exception>
#include <mutex>

extern "C" void GOMP_parallel(void (*fn)(void*), void* data, unsigned num_threads, unsigned flags);

namespace mopt::exec {
namespace {

thread_local bool t_in_region = false;  // this thread is running a region's tasks (nested calls go inline)

// One parallel region: the team's threads take task indices until none are left.
struct Region {
  const std::function<void(int)>* task = nullptr;
  int count = 0;
  std::atomic<int> next{0};
  std::mutex error_mutex;
  std::exception_ptr error;  // the first exception a task threw

  static void body(void* data) {
    Region& r = *static_cast<Region*>(data);
    t_in_region = true;
    for (int i = r.next.fetch_add(1); i < r.count; i = r.next.fetch_add(1)) {
      try {
        (*r.task)(i);
      } catch (...) {  // an exception must not leave an OpenMP region
        std::lock_guard<std::mutex> lock(r.error_mutex);
        if (!r.error) r.error = std::current_exception();
      }
    }
    t_in_region = false;
  }
};

std::mutex g_region;  // one region at a time; a thread that finds it taken runs its tasks itself

}  // namespace

void run_tasks(int count, const std::function<void(int)>& task) {
  std::unique_lock<std::mutex> region_lock(g_region, std::defer_lock);
  if (count <= 1 || t_in_region || !region_lock.try_lock()) {
    for (int i = 0; i < count; ++i) task(i);
    return;
  }
  Region region;
  region.task = &task;
  region.count = count;
  GOMP_parallel(&Region::body, &region, static_cast<unsigned>(count), 0);
  if (region.error) std::rethrow_exception(region.error);
}

}  // namespace mopt::exec
