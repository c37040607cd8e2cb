// simdnorm kernels: the geometry of the BatchNorm-shaped kernels and the run-time controls
// (threads, scratch, ISA, bandwidth probes) shared by the N-API binding (native/node) and the
// WASM exports (wasm/); the kernels are called through norm.h. Portable C++17; no Node or
// emscripten include.
//
// Every tensor is seen as x[outer][channels][inner] (row-major, contiguous):
//   channels-first NC..., rank r: outer = N, inner = product of the spatial dims;
//   channels-last  N...C:         outer = N * product of the spatial dims, inner = 1.
// M = outer * inner values per channel. Callers (the binding, the C ABI) have validated
// every pointer and length; kernels never allocate per call beyond the shared workspace.
//
// Numerics (README "Numerics"): statistics are accumulated in double from per-block shifted
// sums merged in a fixed order (Chan et al.), so the variance stays right when the mean is
// far from zero. Normalisation computes (x - mean) * scale + shift with the mean split into
// a float hi/lo pair for float input, so a channel at 1e4 +- 1 keeps its float ulps.
// Results are bitwise identical for any thread count: work is cut into tasks whose bounds
// depend only on the geometry, and partial results are reduced in task order.
#pragma once

#include <cstddef>
#include <cstdint>

namespace simdnorm {

struct Geometry {
  int64_t outer;
  int64_t channels;
  int64_t inner;
  int64_t perChannel() const { return outer * inner; }
  int64_t elements() const { return outer * channels * inner; }
};

// How a training step folds the batch statistics into the running ones (README "API"):
//   runningMean = (1 - factor) * runningMean + factor * batchMean
//   runningVar  = (1 - factor) * runningVar  + factor * batchVar * varScale
// factor: the weight of the new batch (1 - momentum, or 1/numBatchesTracked); varScale: M/(M-1) for
// the unbiased running variance, else 1. With skipNonFinite, a batch whose mean or variance has a
// non-finite value in any channel leaves both running arrays untouched. The kernels themselves
// (one per phase and ISA) are in phases.h; callers reach them through norm.h's sn_execute.
struct RunningUpdate {
  double factor;       // weight of the new batch
  double varScale;     // M/(M-1) or 1
  bool skipNonFinite;
};

// Out of memory: a kernel needs O(channels + tasks) bytes of per-thread scratch memory, grown
// as needed and kept. When it cannot be allocated the kernel returns before writing anything,
// and scratchFailed() is true until the next kernel call on the same thread; the callers (the
// N-API binding, the C ABI) check it after every call and report an error.
bool scratchFailed();
// Testing only: scratch requests above `bytes` fail as if malloc had (0: no limit, the default).
void setScratchLimit(size_t bytes);

// Threads: a persistent pool shared by all calls. setThreads(n) with n >= 1 sets how many
// threads a call may use (the caller counts as one); 0 restores the default (hardware
// concurrency). Safe to call concurrently from several threads: a call that finds the pool
// busy runs on its own thread, with the same result.
void setThreads(int n);
int getThreads();
int maxThreads();

// The SIMD level the kernels run with on this CPU: "avx2-fma", "sse2", "neon", "simd128"
// or "scalar".
const char* simdLevel();
// Testing only: run the portable kernels (SIMDNORM_ISA=base) even where AVX2 is available
// (kernel_check covers both builds of the kernels on one machine). Not for concurrent calls.
void usePortableKernels(bool portable);

// Bandwidth probes for the benchmarks: copy n bytes with the pool's threads (threads <= 0:
// the current setting), and read n floats summing them (the sum defeats dead-code removal).
void copyBytes(void* dst, const void* src, int64_t bytes, int threads);
double readFloats(const float* src, int64_t n, int threads);

}  // namespace simdnorm
