// The executor's thread pool (lib/exec/parallel.h, OpenMP's threads): every task index runs exactly once,
// a task's exception reaches the caller after the region ends, nested calls run inline, and the pool is
// usable again after a failure.
#include <doctest/doctest.h>

#include <atomic>
#include <stdexcept>
#include <vector>

#include "exec/executor.h"
#include "exec/parallel.h"

using namespace mopt;

TEST_CASE("thread pool: each task once, exceptions rethrown, nested regions inline") {
  const int before = exec::thread_count();
  exec::set_thread_count(2);
  SUBCASE("every index once") {
    for (int count : {2, 3, 8}) {
      std::vector<std::atomic<int>> runs(static_cast<size_t>(count));
      exec::run_tasks(count, [&](int i) { runs[static_cast<size_t>(i)].fetch_add(1); });
      for (const auto& r : runs) CHECK(r.load() == 1);
    }
  }
  SUBCASE("a task's exception is rethrown once the others are done; the pool works afterwards") {
    std::atomic<int> finished{0};
    CHECK_THROWS_WITH_AS(exec::run_tasks(4,
                                         [&](int i) {
                                           if (i == 2) throw std::runtime_error("task 2 failed");
                                           finished.fetch_add(1);
                                         }),
                         "task 2 failed", std::runtime_error);
    CHECK(finished.load() == 3);
    std::atomic<int> again{0};
    exec::run_tasks(2, [&](int) { again.fetch_add(1); });
    CHECK(again.load() == 2);
  }
  SUBCASE("a region inside a task runs inline, every index once") {
    std::atomic<int> inner{0};
    exec::run_tasks(2, [&](int) { exec::run_tasks(3, [&](int) { inner.fetch_add(1); }); });
    CHECK(inner.load() == 6);
  }
  SUBCASE("parallel_for covers [0, n) exactly") {
    const int64_t n = 100000;
    std::vector<int> hit(static_cast<size_t>(n), 0);
    exec::parallel_for(n, 1 << 10, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) ++hit[static_cast<size_t>(i)];
    });
    int64_t once = 0;
    for (int h : hit) once += h == 1;
    CHECK(once == n);
  }
  exec::set_thread_count(before);
}
