// The executor's persistent thread pool; see parallel.h.
#include "exec/parallel.h"

#include <condition_variable>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

namespace mopt::exec {
namespace {

thread_local bool t_pool_thread = false;
thread_local bool t_in_region = false;  // this thread is running a region's tasks (nested calls go inline)

class Pool {
 public:
  ~Pool() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stop_ = true;
    }
    wake_.notify_all();
    for (std::thread& t : threads_) t.join();
  }

  // False when another thread is using the pool (the caller then runs the tasks itself).
  bool run(int count, const std::function<void(int)>& task) {
    std::unique_lock<std::mutex> region(region_, std::try_to_lock);
    if (!region.owns_lock()) return false;
    t_in_region = true;
    struct Leave {
      ~Leave() { t_in_region = false; }
    } leave;
    std::unique_lock<std::mutex> lock(mutex_);
    while (static_cast<int>(threads_.size()) < count - 1) threads_.emplace_back([this] { work(); });
    task_ = &task;
    count_ = count;
    next_ = 1;
    pending_ = count - 1;
    error_ = nullptr;
    lock.unlock();
    wake_.notify_all();
    execute(0);
    lock.lock();
    while (next_ < count_) {  // help with what no pool thread has taken yet
      const int index = next_++;
      lock.unlock();
      execute(index);
      lock.lock();
      --pending_;
    }
    done_.wait(lock, [this] { return pending_ == 0; });
    task_ = nullptr;
    if (error_) std::rethrow_exception(error_);
    return true;
  }

 private:
  void execute(int index) {
    try {
      (*task_)(index);
    } catch (...) {
      std::lock_guard<std::mutex> lock(error_mutex_);
      if (!error_) error_ = std::current_exception();
    }
  }

  void work() {
    t_pool_thread = true;
    std::unique_lock<std::mutex> lock(mutex_);
    for (;;) {
      wake_.wait(lock, [this] { return stop_ || next_ < count_; });
      if (stop_) return;
      const int index = next_++;
      lock.unlock();
      execute(index);
      lock.lock();
      if (--pending_ == 0) done_.notify_one();
    }
  }

  std::mutex region_;  // one parallel region at a time
  std::mutex mutex_;   // guards the fields below
  std::condition_variable wake_, done_;
  std::vector<std::thread> threads_;
  const std::function<void(int)>* task_ = nullptr;
  int count_ = 0, next_ = 0, pending_ = 0;
  bool stop_ = false;
  std::mutex error_mutex_;
  std::exception_ptr error_;
};

}  // namespace

void run_tasks(int count, const std::function<void(int)>& task) {
  static Pool pool;
  if (count <= 1 || t_pool_thread || t_in_region || !pool.run(count, task)) {
    for (int i = 0; i < count; ++i) task(i);
  }
}

}  // namespace mopt::exec
