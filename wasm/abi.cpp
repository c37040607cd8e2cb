// The WASM entry: a thin C ABI over native/kernels (emnapi needs emscripten >= 3.1.9, Debian has
// 3.1.6). lib/backends/wasm.ts is its only intended caller, but every export validates what it
// is given, so calling the raw exports with garbage returns an error code and never reads or
// writes outside the blocks handed out by sn_alloc.
//
// Conventions:
//   - pointers are byte offsets into the module memory; every array argument must lie inside one
//     live block from sn_alloc (the block registry below), aligned to its element size;
//   - geometry is (outer, channels, inner) as in batchnorm.h, each a non-negative int32, and the
//     element count must fit the 32-bit address space;
//   - a kernel call returns >= 0 on success (train/update: 1 when the running stats were written)
//     and -(code << 8 | argument) on failure, where code is an SnError and argument the 1-based
//     position of the offending parameter (0 when it is the call as a whole).
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <map>
#include <vector>

#include "abi.h"
#include "batchnorm.h"

#define SN_EXPORT extern "C" __attribute__((used, visibility("default")))

namespace {

enum SnError : int32_t {
  kNullPointer = 1,   // a required array pointer is 0
  kNegativeDim = 2,   // outer, channels or inner < 0
  kTooLarge = 3,      // the element count or byte size overflows the address space
  kOutOfBlock = 4,    // the array does not lie inside one live sn_alloc block
  kMisaligned = 5,    // the pointer is not a multiple of the element size
  kBadScalar = 6,     // eps <= 0, +Inf or NaN, factor outside [0, 1], varScale < 0 or NaN
  kNoMemory = 7,      // an internal buffer could not be allocated
};

int32_t fail(SnError code, int32_t argument) { return -((static_cast<int32_t>(code) << 8) | argument); }

// Live blocks: start -> size in bytes. A few entries (the TS arena plus the user's zero-copy
// arrays), looked up a handful of times per call.
std::map<uintptr_t, uint32_t>& blocks() {
  static std::map<uintptr_t, uint32_t> live;
  return live;
}

// 0 when [p, p + bytes) lies inside one live block, else the error code.
int32_t checkRange(uintptr_t p, uint64_t bytes, uint32_t align) {
  if (p == 0) return kNullPointer;
  if (p % align != 0) return kMisaligned;
  auto& live = blocks();
  auto it = live.upper_bound(p);
  if (it == live.begin()) return kOutOfBlock;
  --it;
  uint64_t offset = p - it->first;
  if (offset > it->second || bytes > it->second - offset) return kOutOfBlock;
  return 0;
}

// Validates one call's geometry and arrays; on success fills g and returns 0.
struct Validator {
  int32_t error = 0;
  simdnorm::Geometry g{0, 0, 0};
  uint64_t elements = 0;

  bool geometry(int32_t outer, int32_t channels, int32_t inner, int32_t firstArg) {
    if (outer < 0) return set(fail(kNegativeDim, firstArg));
    if (channels < 0) return set(fail(kNegativeDim, firstArg + 1));
    if (inner < 0) return set(fail(kNegativeDim, firstArg + 2));
    // Each factor < 2^31, so the product of three fits in 2^93: check in two steps.
    uint64_t oc = static_cast<uint64_t>(outer) * static_cast<uint64_t>(channels);
    if (oc > UINT32_MAX) return set(fail(kTooLarge, firstArg));
    elements = oc * static_cast<uint64_t>(inner);
    if (elements > UINT32_MAX) return set(fail(kTooLarge, firstArg));
    g = {outer, channels, inner};
    return true;
  }

  // An array of count elements of elementSize bytes; optional arrays may be null.
  bool array(uintptr_t p, uint64_t count, uint32_t elementSize, int32_t argument, bool optional = false) {
    if (error != 0) return false;
    if (p == 0 && optional) return true;
    uint64_t bytes = count * elementSize;  // count <= 2^32, so no overflow
    if (bytes > UINT32_MAX) return set(fail(kTooLarge, argument));
    int32_t code = checkRange(p, bytes, elementSize);
    return code == 0 ? true : set(fail(static_cast<SnError>(code), argument));
  }

  bool scalar(bool ok, int32_t argument) { return ok || set(fail(kBadScalar, argument)); }

  bool set(int32_t e) {
    if (error == 0) error = e;
    return false;
  }
  bool ok() const { return error == 0; }
};

bool validFactor(double factor) { return factor >= 0.0 && factor <= 1.0; }
bool validVarScale(double varScale) { return varScale >= 0.0; }  // false for NaN
bool validEps(double eps) { return eps > 0.0 && eps <= 0x1.fffffffffffffp1023; }  // as the facade: finite, > 0

template <typename T>
const T* in(uintptr_t p) {
  return reinterpret_cast<const T*>(p);
}
template <typename T>
T* out(uintptr_t p) {
  return reinterpret_cast<T*>(p);
}

// moments(x, outer, channels, inner, mean, variance)
template <typename T>
int32_t moments(uintptr_t x, int32_t outer, int32_t channels, int32_t inner, uintptr_t mean,
                uintptr_t variance) {
  Validator v;
  v.geometry(outer, channels, inner, 2);
  v.array(x, v.elements, sizeof(T), 1);
  v.array(mean, static_cast<uint64_t>(channels), sizeof(T), 5);
  v.array(variance, static_cast<uint64_t>(channels), sizeof(T), 6);
  if (!v.ok()) return v.error;
  simdnorm::channelMoments<T>(in<T>(x), v.g, out<T>(mean), out<T>(variance));
  return simdnorm::scratchFailed() ? fail(kNoMemory, 0) : 0;
}

// train(x, outer, channels, inner, gamma, beta, eps, relu, y, mean, invStd,
//       runningMean, runningVar, factor, varScale, skipNonFinite)
template <typename T>
int32_t train(uintptr_t x, int32_t outer, int32_t channels, int32_t inner, uintptr_t gamma,
              uintptr_t beta, double eps, int32_t relu, uintptr_t y, uintptr_t mean, uintptr_t invStd,
              uintptr_t runningMean, uintptr_t runningVar, double factor, double varScale,
              int32_t skipNonFinite) {
  Validator v;
  uint64_t c = static_cast<uint64_t>(channels < 0 ? 0 : channels);
  v.geometry(outer, channels, inner, 2);
  v.array(x, v.elements, sizeof(T), 1);
  v.array(gamma, c, sizeof(T), 5, true);
  v.array(beta, c, sizeof(T), 6, true);
  v.scalar(validEps(eps), 7);
  v.array(y, v.elements, sizeof(T), 9);
  v.array(mean, c, sizeof(T), 10);
  v.array(invStd, c, sizeof(T), 11);
  // Running stats come as a pair: both or neither.
  bool running = runningMean != 0 || runningVar != 0;
  if (running) {
    v.array(runningMean, c, sizeof(T), 12);
    v.array(runningVar, c, sizeof(T), 13);
    v.scalar(validFactor(factor), 14);
    v.scalar(validVarScale(varScale), 15);
  }
  if (!v.ok()) return v.error;
  simdnorm::RunningUpdate update{factor, varScale, skipNonFinite != 0};
  bool written = simdnorm::trainForward<T>(in<T>(x), v.g, in<T>(gamma), in<T>(beta), eps, relu != 0,
                                           out<T>(y), out<T>(mean), out<T>(invStd),
                                           out<T>(runningMean), out<T>(runningVar), update);
  if (simdnorm::scratchFailed()) return fail(kNoMemory, 0);
  return written ? 1 : 0;
}

// infer(x, outer, channels, inner, runningMean, runningVar, gamma, beta, eps, relu, y)
template <typename T>
int32_t infer(uintptr_t x, int32_t outer, int32_t channels, int32_t inner, uintptr_t runningMean,
              uintptr_t runningVar, uintptr_t gamma, uintptr_t beta, double eps, int32_t relu,
              uintptr_t y) {
  Validator v;
  uint64_t c = static_cast<uint64_t>(channels < 0 ? 0 : channels);
  v.geometry(outer, channels, inner, 2);
  v.array(x, v.elements, sizeof(T), 1);
  v.array(runningMean, c, sizeof(T), 5);
  v.array(runningVar, c, sizeof(T), 6);
  v.array(gamma, c, sizeof(T), 7, true);
  v.array(beta, c, sizeof(T), 8, true);
  v.scalar(validEps(eps), 9);
  v.array(y, v.elements, sizeof(T), 11);
  if (!v.ok()) return v.error;
  simdnorm::inferForward<T>(in<T>(x), v.g, in<T>(runningMean), in<T>(runningVar), in<T>(gamma),
                            in<T>(beta), eps, relu != 0, out<T>(y));
  return simdnorm::scratchFailed() ? fail(kNoMemory, 0) : 0;
}

// backward(dy, x, outer, channels, inner, mean, invStd, gamma, y, training, dx, dgamma, dbeta)
template <typename T>
int32_t backward(uintptr_t dy, uintptr_t x, int32_t outer, int32_t channels, int32_t inner,
                 uintptr_t mean, uintptr_t invStd, uintptr_t gamma, uintptr_t y, int32_t training,
                 uintptr_t dx, uintptr_t dgamma, uintptr_t dbeta) {
  Validator v;
  uint64_t c = static_cast<uint64_t>(channels < 0 ? 0 : channels);
  v.geometry(outer, channels, inner, 3);
  v.array(dy, v.elements, sizeof(T), 1);
  v.array(x, v.elements, sizeof(T), 2);
  v.array(mean, c, sizeof(T), 6);
  v.array(invStd, c, sizeof(T), 7);
  v.array(gamma, c, sizeof(T), 8, true);
  v.array(y, v.elements, sizeof(T), 9, true);
  v.array(dx, v.elements, sizeof(T), 11);
  v.array(dgamma, c, sizeof(T), 12);
  v.array(dbeta, c, sizeof(T), 13);
  if (!v.ok()) return v.error;
  simdnorm::backward<T>(in<T>(dy), in<T>(x), v.g, in<T>(mean), in<T>(invStd), in<T>(gamma), in<T>(y),
                        training != 0, out<T>(dx), out<T>(dgamma), out<T>(dbeta));
  return simdnorm::scratchFailed() ? fail(kNoMemory, 0) : 0;
}

// updateRunning(runningMean, runningVar, batchMean, batchVar, channels, factor, varScale,
//               skipNonFinite); batchVar has the element type T and is widened to double here.
template <typename T>
int32_t updateRunning(uintptr_t runningMean, uintptr_t runningVar, uintptr_t batchMean,
                      uintptr_t batchVar, int32_t channels, double factor, double varScale,
                      int32_t skipNonFinite) {
  Validator v;
  if (channels < 0) return fail(kNegativeDim, 5);
  uint64_t c = static_cast<uint64_t>(channels);
  v.array(runningMean, c, sizeof(T), 1);
  v.array(runningVar, c, sizeof(T), 2);
  v.array(batchMean, c, sizeof(T), 3);
  v.array(batchVar, c, sizeof(T), 4);
  v.scalar(validFactor(factor), 6);
  v.scalar(validVarScale(varScale), 7);
  if (!v.ok()) return v.error;
  const double* wideVar;
  static std::vector<double> widened;  // grows to the largest C seen, then is reused
  if constexpr (sizeof(T) == sizeof(double)) {
    wideVar = in<double>(batchVar);
  } else {
    if (widened.size() < c) {
      // Without exception catching, a failed allocation would abort: reserve through malloc
      // first so an out-of-memory condition is an error code instead.
      void* probe = std::malloc(c * sizeof(double) * 2);
      if (probe == nullptr) return fail(kNoMemory, 0);
      std::free(probe);
      widened.resize(c);
    }
    const T* narrow = in<T>(batchVar);
    for (uint64_t i = 0; i < c; i++) widened[i] = narrow[i];
    wideVar = widened.data();
  }
  bool written = simdnorm::updateRunningStats<T>(out<T>(runningMean), out<T>(runningVar),
                                                 in<T>(batchMean), wideVar, channels, factor,
                                                 varScale, skipNonFinite != 0);
  return written ? 1 : 0;
}

}  // namespace

// ---- memory ---------------------------------------------------------------------------------

// A block of at least `bytes` bytes (16-byte aligned, for SIMD loads), registered as a valid
// home for kernel arrays; 0 when bytes is 0 or too large, or memory cannot grow.
SN_EXPORT uintptr_t sn_alloc(uint32_t bytes) {
  if (bytes == 0 || bytes > UINT32_MAX - 64) return 0;
  void* p = std::aligned_alloc(16, (bytes + 15u) & ~15u);
  if (p == nullptr) return 0;
  blocks()[reinterpret_cast<uintptr_t>(p)] = bytes;
  return reinterpret_cast<uintptr_t>(p);
}

// Frees a block from sn_alloc. Returns 0, or -1 when p is not a live block (double free, a
// pointer into a block, garbage), in which case nothing happens.
SN_EXPORT int32_t sn_free(uintptr_t p) {
  auto& live = blocks();
  auto it = live.find(p);
  if (it == live.end()) return -1;
  live.erase(it);
  std::free(reinterpret_cast<void*>(p));
  return 0;
}

// 1 when [p, p + bytes) lies inside one live block and is aligned to align (1, 4 or 8), else 0.
SN_EXPORT int32_t sn_in_block(uintptr_t p, uint32_t bytes, uint32_t align) {
  if (align != 1 && align != 4 && align != 8) return 0;
  return checkRange(p, bytes, align) == 0 ? 1 : 0;
}

// Testing only: kernel scratch requests above `bytes` fail as a failed allocation would (0: no
// limit), so that tests reach the kNoMemory path, which module memory cannot otherwise be made
// to take (the native addon's setScratchLimit).
SN_EXPORT void sn_set_scratch_limit(uint32_t bytes) { simdnorm::setScratchLimit(bytes); }

// ---- kernels --------------------------------------------------------------------------------

SN_EXPORT int32_t sn_moments_f32(uintptr_t x, int32_t o, int32_t c, int32_t i, uintptr_t mean,
                                 uintptr_t var) {
  return moments<float>(x, o, c, i, mean, var);
}
SN_EXPORT int32_t sn_moments_f64(uintptr_t x, int32_t o, int32_t c, int32_t i, uintptr_t mean,
                                 uintptr_t var) {
  return moments<double>(x, o, c, i, mean, var);
}

SN_EXPORT int32_t sn_train_f32(uintptr_t x, int32_t o, int32_t c, int32_t i, uintptr_t gamma,
                               uintptr_t beta, double eps, int32_t relu, uintptr_t y, uintptr_t mean,
                               uintptr_t invStd, uintptr_t rMean, uintptr_t rVar, double factor,
                               double varScale, int32_t skip) {
  return train<float>(x, o, c, i, gamma, beta, eps, relu, y, mean, invStd, rMean, rVar, factor,
                      varScale, skip);
}
SN_EXPORT int32_t sn_train_f64(uintptr_t x, int32_t o, int32_t c, int32_t i, uintptr_t gamma,
                               uintptr_t beta, double eps, int32_t relu, uintptr_t y, uintptr_t mean,
                               uintptr_t invStd, uintptr_t rMean, uintptr_t rVar, double factor,
                               double varScale, int32_t skip) {
  return train<double>(x, o, c, i, gamma, beta, eps, relu, y, mean, invStd, rMean, rVar, factor,
                       varScale, skip);
}

SN_EXPORT int32_t sn_infer_f32(uintptr_t x, int32_t o, int32_t c, int32_t i, uintptr_t rMean,
                               uintptr_t rVar, uintptr_t gamma, uintptr_t beta, double eps,
                               int32_t relu, uintptr_t y) {
  return infer<float>(x, o, c, i, rMean, rVar, gamma, beta, eps, relu, y);
}
SN_EXPORT int32_t sn_infer_f64(uintptr_t x, int32_t o, int32_t c, int32_t i, uintptr_t rMean,
                               uintptr_t rVar, uintptr_t gamma, uintptr_t beta, double eps,
                               int32_t relu, uintptr_t y) {
  return infer<double>(x, o, c, i, rMean, rVar, gamma, beta, eps, relu, y);
}

SN_EXPORT int32_t sn_backward_f32(uintptr_t dy, uintptr_t x, int32_t o, int32_t c, int32_t i,
                                  uintptr_t mean, uintptr_t invStd, uintptr_t gamma, uintptr_t y,
                                  int32_t training, uintptr_t dx, uintptr_t dgamma, uintptr_t dbeta) {
  return backward<float>(dy, x, o, c, i, mean, invStd, gamma, y, training, dx, dgamma, dbeta);
}
SN_EXPORT int32_t sn_backward_f64(uintptr_t dy, uintptr_t x, int32_t o, int32_t c, int32_t i,
                                  uintptr_t mean, uintptr_t invStd, uintptr_t gamma, uintptr_t y,
                                  int32_t training, uintptr_t dx, uintptr_t dgamma, uintptr_t dbeta) {
  return backward<double>(dy, x, o, c, i, mean, invStd, gamma, y, training, dx, dgamma, dbeta);
}

SN_EXPORT int32_t sn_update_running_f32(uintptr_t rMean, uintptr_t rVar, uintptr_t bMean,
                                        uintptr_t bVar, int32_t c, double factor, double varScale,
                                        int32_t skip) {
  return updateRunning<float>(rMean, rVar, bMean, bVar, c, factor, varScale, skip);
}
SN_EXPORT int32_t sn_update_running_f64(uintptr_t rMean, uintptr_t rVar, uintptr_t bMean,
                                        uintptr_t bVar, int32_t c, double factor, double varScale,
                                        int32_t skip) {
  return updateRunning<double>(rMean, rVar, bMean, bVar, c, factor, varScale, skip);
}

// ---- information ----------------------------------------------------------------------------

// The kernels' SIMD level as a NUL-terminated string in module memory ("simd128" or "scalar").
SN_EXPORT const char* sn_simd_level() { return simdnorm::simdLevel(); }

// 1: the C ABI version lib/backends/wasm.ts was written against.
SN_EXPORT int32_t sn_abi_version() { return 1; }
