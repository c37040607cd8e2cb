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
#elif defined(__EMSCRIPTEN__)
// The threaded wasm variant (wasm/wasm.cmake's simdnorm-threads): no std::thread, whose workers
// would need emscripten's JS glue. lib/backends/wasm/threads.ts starts Web Workers / worker_threads
// that each instantiate the module over the same shared memory and call sn_thread_run (wasm/abi.cpp),
// which is wasmWorkerLoop below; the pool hands them tasks through atomics in shared memory.
#define SIMDNORM_WASM_THREADS 1
#else
#include <chrono>
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

#elif defined(SIMDNORM_WASM_THREADS)

// The workers the JS side has started (sn_thread_pool), plus the calling thread.
std::atomic<int> helpersStarted{0};
std::atomic<int> requested{0};  // 0: the default, every started worker
int hardwareThreads() { return helpersStarted.load(std::memory_order_relaxed) + 1; }
int requestedThreads() {
  int n = requested.load(std::memory_order_relaxed);
  return n > 0 ? n : hardwareThreads();
}
void setRequestedThreads(int n) { requested.store(n, std::memory_order_relaxed); }

// The same protocol as the native Pool below, over wasm atomics instead of a mutex: the caller
// publishes a job, opens it for up to `wanted` helpers and bumps `generation` (what idle workers
// wait on); a worker joins by adding itself to `state` while it is open; the caller, once it has
// drained the tasks, closes the job and waits until every worker that joined has left. Which
// thread runs which task changes nothing in the result (tasks write disjoint memory).
constexpr uint32_t kOpen = 0x80000000u;
// How many times a worker that has finished a job, and a caller whose helpers are still in its
// job, check before they sleep (memory.atomic.wait): tens of microseconds, about what waking a
// sleeping thread takes (the native Pool's kSpinTime; WASM has no clock without a call to JS).
constexpr int kWasmSpins = 1 << 15;
// Spins until done() or kWasmSpins checks; returns done().
template <typename Done>
bool spinUntil(Done done) {
  for (int i = 0; i < kWasmSpins; i++) {
    if (done()) return true;
  }
  return done();
}
struct WasmPool {
  std::atomic<int32_t> generation{0};
  std::atomic<uint32_t> state{0};  // kOpen while helpers may join, | how many are in the job
  std::atomic<int> busy{0};        // one job at a time (a nested call runs serially)
  std::atomic<int> mainCanWait{0}; // 0 on a browser's main thread (memory.atomic.wait traps there)
  std::atomic<uint32_t> joins{0};  // helpers that joined a job, ever (tests read it)
  std::atomic<int> wanted{0};
  void (*task)(void*, int64_t) = nullptr;
  void* context = nullptr;
  int64_t tasks = 0;
  std::atomic<int64_t> next{0};
};
WasmPool wasmPool;

int32_t* word(std::atomic<int32_t>& a) { return reinterpret_cast<int32_t*>(&a); }
int32_t* word(std::atomic<uint32_t>& a) { return reinterpret_cast<int32_t*>(&a); }

void wasmDrain() {
  WasmPool& p = wasmPool;
  for (int64_t i; (i = p.next.fetch_add(1, std::memory_order_relaxed)) < p.tasks;) p.task(p.context, i);
}

bool wasmRun(int64_t tasks, int helpers, void (*task)(void*, int64_t), void* context) {
  WasmPool& p = wasmPool;
  int expected = 0;
  if (!p.busy.compare_exchange_strong(expected, 1, std::memory_order_acquire)) return false;
  p.task = task;
  p.context = context;
  p.tasks = tasks;
  p.wanted.store(helpers, std::memory_order_relaxed);
  p.next.store(0, std::memory_order_relaxed);
  p.state.store(kOpen, std::memory_order_seq_cst);
  p.generation.fetch_add(1, std::memory_order_seq_cst);
  __builtin_wasm_memory_atomic_notify(word(p.generation), static_cast<uint32_t>(helpers));
  wasmDrain();
  // Close: no worker joins from here on; wait for those inside (spinning a while first, as the
  // native Pool does: kWasmSpins).
  p.state.fetch_and(~kOpen, std::memory_order_seq_cst);
  uint32_t s = 0;
  spinUntil([&] { return (s = p.state.load(std::memory_order_seq_cst) & ~kOpen) == 0; });
  const bool canWait = p.mainCanWait.load(std::memory_order_relaxed) != 0;
  while (s != 0) {
    if (canWait) __builtin_wasm_memory_atomic_wait32(word(p.state), static_cast<int32_t>(s), -1);
    s = p.state.load(std::memory_order_seq_cst);
  }
  p.busy.store(0, std::memory_order_release);
  return true;
}

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

// A pause in a spin loop.
inline void cpuRelax() {
#if defined(__SSE2__)
  _mm_pause();
#elif defined(__aarch64__)
  __asm__ __volatile__("yield");
#endif
}

// How long a worker that has finished a job, and a caller whose helpers are still in its job,
// spin before they sleep: a thread asleep on a condition variable took tens of microseconds to
// wake (a futex, and on a VM an idle vCPU), as long as the whole of an in-cache job (NC
// [256,1024] training, 1 MB: two threads took 1.4-1.6x one thread's wall time); back-to-back calls
// (a training loop's layers) find the workers awake. Spinning costs that CPU time after a job.
constexpr auto kSpinTime = std::chrono::microseconds(100);

// Spins until done() or kSpinTime has passed; returns done().
template <typename Done>
bool spinUntil(Done done) {
  const auto until = std::chrono::steady_clock::now() + kSpinTime;
  for (;;) {
    for (int i = 0; i < 64; i++) {
      if (done()) return true;
      cpuRelax();
    }
    if (std::chrono::steady_clock::now() >= until) return done();
  }
}

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
      published_.store(generation_, std::memory_order_release);
    }
    wake_.notify_all();
    drain();
    std::unique_lock<std::mutex> lock(mutex_);
    wanted_ = 0;  // workers that wake up late stay out
    if (active_.load(std::memory_order_relaxed) != 0) {
      lock.unlock();
      spinUntil([this] { return active_.load(std::memory_order_acquire) == 0; });
      lock.lock();
    }
    finished_.wait(lock, [this] { return active_.load(std::memory_order_relaxed) == 0; });
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
      auto wanted = [&] { return generation_ != seen && joined_ < wanted_; };
      if (!wanted()) {
        lock.unlock();
        spinUntil([&] { return published_.load(std::memory_order_acquire) != seen; });
        lock.lock();
      }
      wake_.wait(lock, wanted);
      seen = generation_;
      joined_++;
      active_.fetch_add(1, std::memory_order_relaxed);
      lock.unlock();
      drain();
      lock.lock();
      if (active_.fetch_sub(1, std::memory_order_release) == 1) finished_.notify_all();
    }
  }

  std::mutex owner_;
  std::mutex mutex_;  // guards everything below but next_
  std::condition_variable wake_, finished_;
  std::vector<std::thread> workers_;
  uint64_t generation_ = 0;
  std::atomic<uint64_t> published_{0};  // generation_, for the spinning workers (no mutex)
  int wanted_ = 0, joined_ = 0;
  std::atomic<int> active_{0};  // changed under mutex_; read by the spinning caller too
  void (*task_)(void*, int64_t) = nullptr;
  void* context_ = nullptr;
  int64_t tasks_ = 0;
  std::atomic<int64_t> next_{0};
};

#endif

}  // namespace

#ifdef SIMDNORM_WASM_THREADS
void wasmThreadsStarted(int helpers, bool mainCanWait) {
  wasmPool.mainCanWait.store(mainCanWait ? 1 : 0, std::memory_order_relaxed);
  helpersStarted.store(helpers < 0 ? 0 : (helpers > kThreadCap - 1 ? kThreadCap - 1 : helpers),
                       std::memory_order_relaxed);
}

uint32_t wasmHelperJoins() { return wasmPool.joins.load(std::memory_order_relaxed); }

void wasmWorkerLoop() {
  WasmPool& p = wasmPool;
  int32_t seen = p.generation.load(std::memory_order_seq_cst);
  for (;;) {
    // Join the open job, if it wants another helper.
    uint32_t s = p.state.load(std::memory_order_seq_cst);
    while ((s & kOpen) != 0 && static_cast<int>(s & ~kOpen) < p.wanted.load(std::memory_order_relaxed)) {
      if (p.state.compare_exchange_weak(s, s + 1, std::memory_order_seq_cst)) {
        p.joins.fetch_add(1, std::memory_order_relaxed);
        wasmDrain();
        if (p.state.fetch_sub(1, std::memory_order_seq_cst) == 1) {
          __builtin_wasm_memory_atomic_notify(word(p.state), 1);  // the closed job's last helper
        }
        break;
      }
    }
    // Sleep until the next job is published (after a spin: kWasmSpins).
    spinUntil([&] { return p.generation.load(std::memory_order_seq_cst) != seen; });
    __builtin_wasm_memory_atomic_wait32(word(p.generation), seen, -1);
    seen = p.generation.load(std::memory_order_seq_cst);
  }
}
#endif

void parallelRun(int64_t tasks, int64_t elements, void (*task)(void*, int64_t), void* context,
                 int threads) {
#if defined(SIMDNORM_WASM_THREADS)
  int n = threads > 0 ? (threads > kThreadCap ? kThreadCap : threads) : requestedThreads();
  if (n > hardwareThreads()) n = hardwareThreads();
  if (n > 1 && tasks > 1 && elements >= kMinParallelElements) {
    int helpers = static_cast<int>(tasks - 1 < n - 1 ? tasks - 1 : n - 1);
    if (wasmRun(tasks, helpers, task, context)) return;
  }
#elif !defined(SIMDNORM_NO_THREADS)
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

void* scratchBlock(size_t bytes) {
  void* p = bytes > scratchLimit.load(std::memory_order_relaxed) ? nullptr : std::malloc(bytes == 0 ? 1 : bytes);
  if (p == nullptr) scratchFailure = true;
  return p;
}

void clearScratchFailure() { scratchFailure = false; }
bool scratchFailed() { return scratchFailure; }
void setScratchLimit(size_t bytes) { scratchLimit.store(bytes == 0 ? SIZE_MAX : bytes, std::memory_order_relaxed); }

void setThreads(int n) { setRequestedThreads(n <= 0 ? 0 : (n > kThreadCap ? kThreadCap : n)); }
int getThreads() { return requestedThreads(); }
int maxThreads() { return hardwareThreads(); }

}  // namespace simdnorm
