// Splitting work over threads: one persistent pool shared by every call (the workers are created
// once), where the calling thread takes tasks too. Tasks of one job may run in any order on any
// thread, so they write disjoint memory and a job's result never depends on how it was spread.
//
// A job runs serially on the caller when it is small (elements < kMinParallelElements), when
// the pool is already running another call's job (concurrent calls from node's libuv workers, or
// a nested call), when one thread is asked for, or in a build without threads (emscripten
// without pthreads).
#pragma once

#include <cstddef>
#include <cstdint>

namespace simdnorm {

constexpr int64_t kMinParallelElements = int64_t{1} << 16;

// Runs task(context, i) for every i in [0, tasks) and returns when all have finished.
// elements: the job's total size, for the small-job rule. threads <= 0: getThreads().
void parallelRun(int64_t tasks, int64_t elements, void (*task)(void*, int64_t), void* context,
                 int threads = 0);

template <typename F>
inline void parallelFor(int64_t tasks, int64_t elements, const F& fn, int threads = 0) {
  parallelRun(
      tasks, elements, [](void* context, int64_t i) { (*static_cast<const F*>(context))(i); },
      const_cast<void*>(static_cast<const void*>(&fn)), threads);
}

// The calling thread's scratch memory: at least `bytes`, 64-byte aligned, valid until its next
// call on this thread (so a kernel takes all it needs at once). Grows, never shrinks. nullptr
// when it cannot be allocated: the kernel then returns before writing anything, and
// scratchFailed() (batchnorm.h) says so until clearScratchFailure() (each public kernel's start).
void* scratch(size_t bytes);
// A block of its own (std::free it when done), for a kernel that must keep a copy of an input
// it overwrites: nullptr when it cannot be had, with scratchFailed() then true, as scratch().
void* scratchBlock(size_t bytes);

#if defined(__EMSCRIPTEN__) && defined(__EMSCRIPTEN_PTHREADS__)
// The threaded wasm variant's pool (wasm/abi.cpp's sn_thread_* exports): `helpers` workers have
// been started by the JS side (they may not be running yet: a job only waits for the helpers
// that joined it); mainCanWait is false on a browser's main thread, where the caller spins instead
// of memory.atomic.wait. wasmWorkerLoop is a worker's whole life: it never returns.
void wasmThreadsStarted(int helpers, bool mainCanWait);
void wasmWorkerLoop();
uint32_t wasmHelperJoins();  // how many times a helper joined a job (tests)
#endif
void clearScratchFailure();

}  // namespace simdnorm
