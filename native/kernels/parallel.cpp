// The thread pool of parallel.h and the thread settings of batchnorm.h.
#include "parallel.h"

#include <atomic>
#include <cstdint>
#include <cstdlib>

#include "batchnorm.h"

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#if defined(__EMSCRIPTEN__) && !defined(__EMSCRIPTEN_PTHREADS__)
#define SIMDNORM_NO_THREADS 1
#else
#include <condition_variable>
#include <mutex>
#include <thread>
#include <vector>
#endif

namespace simdnorm {

namespace {

// setThreads accepts more threads than cores (tests use it to check that results do not depend
// on the split), up to this.
constexpr int kThreadCap = 256;

// Tasks may write with streaming (non-temporal) stores, which are weakly ordered: a thread
// fences them once it has run its share of a job, before the job counts as done.
void fenceStreamingStores() {
#if defined(__SSE2__)
  _mm_sfence();
#endif
}

void runSerially(int64_t tasks, void (*task)(void*, int64_t), void* context) {
  for (int64_t i = 0; i < tasks; i++) task(context, i);
  fenceStreamingStores();
}

#ifdef SIMDNORM_NO_THREADS

int hardwareThreads() { return 1; }
int requestedThreads() { return 1; }
void setRequestedThreads(int) {}

#else

int hardwareThreads() {
  static const int n = [] {
    unsigned h = std::thread::hardware_concurrency();
    return h == 0 ? 1 : (h > static_cast<unsigned>(kThreadCap) ? kThreadCap : static_cast<int>(h));
  }();
  return n;
}

std::atomic<int> requested{0};  // 0: the default
int requestedThreads() {
  int n = requested.load(std::memory_order_relaxed);
  return n > 0 ? n : hardwareThreads();
}
void setRequestedThreads(int n) { requested.store(n, std::memory_order_relaxed); }

// One job at a time: the caller that holds `owner_` publishes it, wakes up to `helpers`
// workers, takes tasks itself, and waits until every worker that joined has left.
class Pool {
 public:
  static Pool& instance() {
    static Pool* pool = new Pool;  // never destroyed: idle workers may still wait at exit
    return *pool;
  }

  // False (nothing run) when another job holds the pool.
  bool run(int64_t tasks, int helpers, void (*task)(void*, int64_t), void* context) {
    std::unique_lock<std::mutex> own(owner_, std::try_to_lock);
    if (!own.owns_lock()) return false;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      while (static_cast<int>(workers_.size()) < helpers) workers_.emplace_back([this] { work(); });
      task_ = task;
      context_ = context;
      tasks_ = tasks;
      next_.store(0, std::memory_order_relaxed);
      wanted_ = helpers;
      joined_ = 0;
      generation_++;
    }
    wake_.notify_all();
    drain();
    std::unique_lock<std::mutex> lock(mutex_);
    wanted_ = 0;  // workers that wake up late stay out
    finished_.wait(lock, [this] { return active_ == 0; });
    return true;
  }

 private:
  void drain() {
    for (int64_t i; (i = next_.fetch_add(1, std::memory_order_relaxed)) < tasks_;) task_(context_, i);
    fenceStreamingStores();
  }

  void work() {
    uint64_t seen = 0;
    std::unique_lock<std::mutex> lock(mutex_);
    for (;;) {
      wake_.wait(lock, [&] { return generation_ != seen && joined_ < wanted_; });
      seen = generation_;
      joined_++;
      active_++;
      lock.unlock();
      drain();
      lock.lock();
      if (--active_ == 0) finished_.notify_all();
    }
  }

  std::mutex owner_;
  std::mutex mutex_;  // guards everything below but next_
  std::condition_variable wake_, finished_;
  std::vector<std::thread> workers_;
  uint64_t generation_ = 0;
  int wanted_ = 0, joined_ = 0, active_ = 0;
  void (*task_)(void*, int64_t) = nullptr;
  void* context_ = nullptr;
  int64_t tasks_ = 0;
  std::atomic<int64_t> next_{0};
};

#endif

}  // namespace

void parallelRun(int64_t tasks, int64_t elements, void (*task)(void*, int64_t), void* context,
                 int threads) {
#ifndef SIMDNORM_NO_THREADS
  int n = threads > 0 ? (threads > kThreadCap ? kThreadCap : threads) : requestedThreads();
  if (n > 1 && tasks > 1 && elements >= kMinParallelElements) {
    int helpers = static_cast<int>(tasks - 1 < n - 1 ? tasks - 1 : n - 1);
    if (Pool::instance().run(tasks, helpers, task, context)) return;
  }
#else
  (void)elements;
  (void)threads;
#endif
  runSerially(tasks, task, context);
}

namespace {
thread_local bool scratchFailure = false;
std::atomic<size_t> scratchLimit{SIZE_MAX};  // testing: requests above it fail
}  // namespace

void* scratch(size_t bytes) {
  struct Buffer {
    void* raw = nullptr;
    size_t size = 0;
    ~Buffer() { std::free(raw); }
  };
  thread_local Buffer buffer;
  if (bytes > scratchLimit.load(std::memory_order_relaxed)) {
    scratchFailure = true;
    return nullptr;
  }
  if (bytes > buffer.size || buffer.raw == nullptr) {
    size_t size = bytes > 2 * buffer.size ? bytes : 2 * buffer.size;
    if (size < 4096) size = 4096;
    std::free(buffer.raw);
    buffer.size = 0;
    buffer.raw = size <= SIZE_MAX - 64 ? std::malloc(size + 64) : nullptr;
    if (buffer.raw == nullptr) {
      scratchFailure = true;
      return nullptr;
    }
    buffer.size = size;
  }
  uintptr_t p = reinterpret_cast<uintptr_t>(buffer.raw);
  return reinterpret_cast<void*>((p + 63) & ~uintptr_t{63});
}

void clearScratchFailure() { scratchFailure = false; }
bool scratchFailed() { return scratchFailure; }
void setScratchLimit(size_t bytes) { scratchLimit.store(bytes == 0 ? SIZE_MAX : bytes, std::memory_order_relaxed); }

void setThreads(int n) { setRequestedThreads(n <= 0 ? 0 : (n > kThreadCap ? kThreadCap : n)); }
int getThreads() { return requestedThreads(); }
int maxThreads() { return hardwareThreads(); }

}  // namespace simdnorm
