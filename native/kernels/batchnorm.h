// simdnorm kernels: the public C++ API shared by the N-API binding (native/node) and the
// WASM C ABI (wasm/). Portable C++17; no Node or emscripten include.
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

// Per-channel mean and biased variance: mean = sum(x)/M, variance = sum((x-mean)^2)/M.
// M == 0 gives NaN for both.
template <typename T>
void channelMoments(const T* x, Geometry g, T* mean, T* variance);

// The running-statistics update (README "API", updateRunningStats):
//   runningMean = (1 - factor) * runningMean + factor * batchMean
//   runningVar  = (1 - factor) * runningVar  + factor * batchVar * varScale
// where factor is the weight of the new batch (1 - momentum, or 1/numBatchesTracked) and
// varScale is M/(M-1) for the unbiased running variance, else 1. Computed in double.
// With skipNonFinite, a batch whose mean or variance has a non-finite value in any channel
// leaves both running arrays untouched. Returns whether the running stats were written.
template <typename T>
bool updateRunningStats(T* runningMean, T* runningVar, const T* batchMean, const double* batchVar,
                        int64_t channels, double factor, double varScale, bool skipNonFinite);

struct RunningUpdate {
  double factor;       // weight of the new batch
  double varScale;     // M/(M-1) or 1
  bool skipNonFinite;
};

// Fused training forward:
//   mean, var = channel moments of x;  invStd = 1/sqrt(var + eps)
//   y = (x - mean) * (gamma * invStd) + beta, then max(y, 0) when relu
// gamma == nullptr means 1, beta == nullptr means 0. y may equal x (in place).
// When runningMean/runningVar are non-null they are updated as updateRunningStats says,
// from the double-precision batch variance; the return value is whether they were written
// (false when they are null). Reads x at most twice and writes y once.
template <typename T>
bool trainForward(const T* x, Geometry g, const T* gamma, const T* beta, double eps, bool relu,
                  T* y, T* mean, T* invStd, T* runningMean, T* runningVar, RunningUpdate update);

// Inference forward: y = (x - runningMean) * (gamma / sqrt(runningVar + eps)) + beta,
// then relu if asked. One read of x, one write of y; y may equal x.
template <typename T>
void inferForward(const T* x, Geometry g, const T* runningMean, const T* runningVar,
                  const T* gamma, const T* beta, double eps, bool relu, T* y);

// Backward. With xhat = (x - mean) * invStd and g = dy masked by (y > 0) when y != nullptr
// (the fused ReLU's forward output):
//   dbeta = sum(g), dgamma = sum(g * xhat)                       (both modes)
//   training: dx = gamma * invStd / M * (M * g - dbeta - xhat * dgamma)
//   eval:     dx = g * gamma * invStd
// gamma == nullptr means 1. dx may equal dy. One fused reduction pass, one dx pass.
// M == 0 gives dgamma = dbeta = 0.
template <typename T>
void backward(const T* dy, const T* x, Geometry g, const T* mean, const T* invStd, const T* gamma,
              const T* y, bool training, T* dx, T* dgamma, T* dbeta);

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
