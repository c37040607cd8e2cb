// sn_prepare and sn_execute (norm.h): the checks memory safety needs, and the ISA dispatch.
#include <cmath>
#include <cstring>

#include "batchnorm.h"
#include "norm.h"
#include "parallel.h"

namespace simdnorm {

// The per-ISA entries (entry.cpp, compiled once per ISA).
namespace base {
int32_t execute(const sn_norm& n);
}
#ifdef SIMDNORM_HAVE_AVX2
namespace avx2 {
int32_t execute(const sn_norm& n);
}
#endif
bool useAvx2();  // dispatch.cpp

static constexpr double kMaxCount = 9007199254740992.0;  // 2^53: every count is an exact double
static constexpr uint64_t kMaxBytes = uint64_t{1} << 62;

// (In range, the conversion is exact for every integer and truncates a fraction: no libm floor.)
static inline __attribute__((always_inline)) bool isCount(double v) { return v >= 0 && v <= kMaxCount && v == static_cast<double>(static_cast<int64_t>(v)); }

// a * b, false on overflow past kMaxBytes. (Factors below 2^32 first: their product cannot
// overflow, and WASM has no 64 x 64 -> 128-bit multiply, __builtin_mul_overflow's call there.)
static inline __attribute__((always_inline)) bool multiply(uint64_t a, uint64_t b, uint64_t& out) {
  if (((a | b) >> 32) == 0) return (out = a * b) <= kMaxBytes;
  return !__builtin_mul_overflow(a, b, &out) && out <= kMaxBytes;
}

int64_t slotLength(const sn_norm& n, int slot) {
  switch (sn_slot_size[slot]) {
    case SN_SIZE_ELEMENTS: return n.samples * n.outer * n.stats * n.inner;
    case SN_SIZE_STATISTICS: return n.samples * n.stats;
    case SN_SIZE_CHANNELS: return n.stats;
    default: return n.affineGroups * n.affineSize;
  }
}

}  // namespace simdnorm

using simdnorm::isCount;
using simdnorm::multiply;
using simdnorm::snError;

extern "C" int32_t sn_prepare(const double* s, void* const* tensors, const uint64_t* bytes, sn_norm* out) {
  if (s == nullptr || tensors == nullptr || bytes == nullptr || out == nullptr) return snError(SN_ERROR_MISSING, 0);
  sn_norm n;  // every field is set below (the tensors in the slot loop): no memset of it first
  const double phase = s[SN_SCALAR_PHASE], dtype = s[SN_SCALAR_DTYPE];
  if (!isCount(phase) || phase >= SN_PHASE_COUNT) return snError(SN_ERROR_BAD_SCALAR, SN_SCALAR_PHASE + 1);
  if (!isCount(dtype) || dtype >= SN_DTYPE_COUNT) return snError(SN_ERROR_BAD_SCALAR, SN_SCALAR_DTYPE + 1);
  n.phase = static_cast<int32_t>(phase);
  n.dtype = static_cast<int32_t>(dtype);
  // Counts, and their products as byte sizes (each fits, so every length below does).
  int64_t* const counts[] = {&n.samples, &n.outer, &n.stats, &n.inner, &n.affineGroups, &n.affineSize, &n.affineRun};
  for (int i = 0; i < 7; i++) {
    const double v = s[SN_SCALAR_SAMPLES + i];
    if (!isCount(v)) return snError(SN_ERROR_BAD_SCALAR, SN_SCALAR_SAMPLES + i + 1);
    *counts[i] = static_cast<int64_t>(v);
  }
  const uint64_t element = n.dtype == SN_DTYPE_F32 ? 4 : 8;
  uint64_t product = element;
  for (int i = 0; i < 4; i++) {
    if (!multiply(product, static_cast<uint64_t>(*counts[i]), product)) {
      return snError(SN_ERROR_TOO_LARGE, SN_SCALAR_SAMPLES + i + 1);
    }
  }
  // The statistics on their own: with outer or inner 0 the product above is 0 whatever they are.
  if (!multiply(static_cast<uint64_t>(n.samples), static_cast<uint64_t>(n.stats) * element, product)) {
    return snError(SN_ERROR_TOO_LARGE, SN_SCALAR_STATS + 1);
  }
  if (!multiply(static_cast<uint64_t>(n.affineGroups), static_cast<uint64_t>(n.affineSize) * element, product)) {
    return snError(SN_ERROR_TOO_LARGE, SN_SCALAR_AFFINE_GROUPS + 1);
  }
  if (n.stats > 0) {  // the γ/β index needs groups, size and run of at least 1
    for (int i = 4; i < 7; i++) {
      if (*counts[i] == 0) return snError(SN_ERROR_BAD_SCALAR, SN_SCALAR_SAMPLES + i + 1);
    }
  }
  const double flags = s[SN_SCALAR_FLAGS];
  const double allFlags = SN_FLAG_RELU | SN_FLAG_TRAINING | SN_FLAG_SKIP_NON_FINITE | SN_FLAG_RMS | SN_FLAG_GIVEN_SUMS | SN_FLAG_SUMS_ONLY | SN_FLAG_RENORM |
                          SN_FLAG_RESIDUAL;
  if (!isCount(flags) || flags > allFlags || (static_cast<uint32_t>(flags) & ~static_cast<uint32_t>(allFlags)) != 0) {
    return snError(SN_ERROR_BAD_SCALAR, SN_SCALAR_FLAGS + 1);
  }
  n.flags = static_cast<uint32_t>(flags);
  n.eps = s[SN_SCALAR_EPS];
  n.factor = s[SN_SCALAR_FACTOR];
  n.varScale = s[SN_SCALAR_VAR_SCALE];
  n.sumsCount = s[SN_SCALAR_SUMS_COUNT];
  n.rmax = s[SN_SCALAR_RMAX];
  n.dmax = s[SN_SCALAR_DMAX];
  const bool givenSums = (n.flags & SN_FLAG_GIVEN_SUMS) != 0, sumsOnly = (n.flags & SN_FLAG_SUMS_ONLY) != 0;
  if (givenSums || sumsOnly) {
    // The halves of a backward split across workers (SyncBatchNorm): BatchNorm-shaped backward
    // only, one of them; dx from given sums is training backward with a count >= 1.
    const bool shaped = n.phase == SN_PHASE_BACKWARD && (n.flags & SN_FLAG_RMS) == 0 && n.samples == 1 &&
                        (n.stats == 0 || (n.affineGroups == n.stats && n.affineSize == 1));
    if (!shaped || (givenSums && sumsOnly) || (givenSums && (n.flags & SN_FLAG_TRAINING) == 0)) {
      return snError(SN_ERROR_BAD_SCALAR, SN_SCALAR_FLAGS + 1);
    }
    if (givenSums && !(isCount(n.sumsCount) && n.sumsCount >= 1)) return snError(SN_ERROR_BAD_SCALAR, SN_SCALAR_SUMS_COUNT + 1);
  }
  if ((n.flags & SN_FLAG_RENORM) != 0) {
    // Batch Renormalization: BatchNorm-shaped training forward only (the BatchNorm kernels').
    const bool shaped = n.phase == SN_PHASE_TRAIN && (n.flags & SN_FLAG_RMS) == 0 && n.samples == 1 &&
                        (n.stats == 0 || (n.affineGroups == n.stats && n.affineSize == 1));
    if (!shaped) return snError(SN_ERROR_BAD_SCALAR, SN_SCALAR_FLAGS + 1);
    if (!(n.rmax >= 1)) return snError(SN_ERROR_BAD_SCALAR, SN_SCALAR_RMAX + 1);  // NaN too; Infinity: no clip
    if (!(n.dmax >= 0)) return snError(SN_ERROR_BAD_SCALAR, SN_SCALAR_DMAX + 1);
  }
  if ((n.flags & SN_FLAG_RESIDUAL) != 0) {
    // BatchNorm + residual: the kernels of γ/β one per statistic (entry.cpp's routes 1 and 2).
    const bool perStatistic = n.phase != SN_PHASE_MOMENTS && n.phase != SN_PHASE_UPDATE && !givenSums && !sumsOnly &&
                              (n.flags & SN_FLAG_RMS) == 0 && (n.stats == 0 || n.affineSize == 1);
    if (!perStatistic) return snError(SN_ERROR_BAD_SCALAR, SN_SCALAR_FLAGS + 1);
  }

  // Tensors: presence by role, then bytes and alignment. Each slot's size in bytes, by its class.
  const uint64_t classBytes[SN_SIZE_COUNT] = {
      static_cast<uint64_t>(n.samples * n.outer * n.stats * n.inner) * element,
      static_cast<uint64_t>(n.samples * n.stats) * element, static_cast<uint64_t>(n.stats) * element,
      static_cast<uint64_t>(n.affineGroups * n.affineSize) * element};
  uint64_t need[SN_SLOT_COUNT];
  const uint8_t* roles = sn_roles_of(n.phase, n.flags);
  bool anyPair = false;  // PAIR slots: all given or none
  int present[SN_SLOT_COUNT];  // the slots given, in slot order (the overlap check visits only these)
  int presentCount = 0;
  for (int slot = 0; slot < SN_SLOT_COUNT; slot++) anyPair |= roles[slot] == SN_ROLE_PAIR && tensors[slot] != nullptr;
  for (int slot = 0; slot < SN_SLOT_COUNT; slot++) {
    n.tensor[slot] = nullptr;
    need[slot] = classBytes[sn_slot_size[slot]];
    void* p = tensors[slot];
    const uint8_t role = roles[slot];
    const bool given = p != nullptr;
    if (role == SN_ROLE_NONE) {
      if (given) return snError(SN_ERROR_UNEXPECTED, slot + 1);
      continue;
    }
    const bool required = role == SN_ROLE_IN || role == SN_ROLE_OUT || role == SN_ROLE_INOUT;
    if (!given) {
      if (role == SN_ROLE_PAIR && anyPair) return snError(SN_ERROR_MISSING, slot + 1);
      // An empty required tensor may come as null (an empty typed array has no data pointer).
      if (required && need[slot] > 0) return snError(SN_ERROR_MISSING, slot + 1);
      continue;
    }
    if (reinterpret_cast<uintptr_t>(p) % element != 0) return snError(SN_ERROR_MISALIGNED, slot + 1);
    if (bytes[slot] < need[slot]) return snError(SN_ERROR_TOO_SHORT, slot + 1);
    n.tensor[slot] = p;
    if (need[slot] > 0) present[presentCount++] = slot;
  }
  // Outputs overlap nothing else, but for the phase's allowed exact alias.
  // (Only slots given with bytes take part: an absent or empty one overlaps nothing.)
  for (int i = 0; i < presentCount; i++) {
    const int o = present[i];
    const uint8_t role = roles[o];
    if (role != SN_ROLE_OUT && role != SN_ROLE_INOUT && role != SN_ROLE_PAIR) continue;
    const uint64_t oBytes = need[o];
    const uintptr_t o0 = reinterpret_cast<uintptr_t>(n.tensor[o]);
    for (int k = 0; k < presentCount; k++) {
      const int other = present[k];
      if (other == o) continue;
      const uint64_t otherBytes = need[other];
      const uintptr_t a0 = reinterpret_cast<uintptr_t>(n.tensor[other]);
      if (otherBytes == 0 || a0 >= o0 + oBytes || o0 >= a0 + otherBytes) continue;
      if ((sn_alias[n.phase][o] >> other & 1u) != 0 && a0 == o0 && otherBytes == oBytes) continue;
      return snError(SN_ERROR_OVERLAP, o + 1);
    }
  }
  // Scalars the phase uses.
  const bool forward = n.phase == SN_PHASE_TRAIN || n.phase == SN_PHASE_INFER;
  if (forward && !(n.eps > 0 && n.eps <= 0x1.fffffffffffffp1023)) return snError(SN_ERROR_BAD_SCALAR, SN_SCALAR_EPS + 1);
  const bool running = n.phase == SN_PHASE_UPDATE || (n.phase == SN_PHASE_TRAIN && anyPair);
  if (running) {
    if (!(n.factor >= 0 && n.factor <= 1)) return snError(SN_ERROR_BAD_SCALAR, SN_SCALAR_FACTOR + 1);
    if (!(n.varScale >= 0 && n.varScale <= 0x1.fffffffffffffp1023)) return snError(SN_ERROR_BAD_SCALAR, SN_SCALAR_VAR_SCALE + 1);
  }
  *out = n;
  return 0;
}

namespace {

// A descriptor with no elements: what every kernel would write, without walking a geometry that
// may be huge in its other dims (outer 2^31 with inner 0): statistics of no values are NaN (the
// mean 0 with rms), gradients of γ/β are 0, the running stats are not updated.
template <typename T>
int32_t executeEmpty(const sn_norm& n) {
  const int64_t statistics = n.samples * n.stats;
  const T nan = static_cast<T>(__builtin_nan(""));
  const bool rms = (n.flags & SN_FLAG_RMS) != 0;
  T* mean = static_cast<T*>(n.tensor[SN_SLOT_MEAN]);
  T* second = static_cast<T*>(n.tensor[n.phase == SN_PHASE_MOMENTS ? SN_SLOT_VARIANCE : SN_SLOT_INV_STD]);
  if (n.phase == SN_PHASE_MOMENTS || n.phase == SN_PHASE_TRAIN) {
    for (int64_t k = 0; k < statistics; k++) {
      mean[k] = rms ? T(0) : nan;
      second[k] = nan;
    }
    if ((n.flags & SN_FLAG_RENORM) != 0) {  // r and d of no values: NaN, as the statistics
      for (int64_t c = 0; c < n.stats; c++) static_cast<T*>(n.tensor[SN_SLOT_R])[c] = static_cast<T*>(n.tensor[SN_SLOT_D])[c] = nan;
    }
  } else if (n.phase == SN_PHASE_BACKWARD && (n.flags & SN_FLAG_GIVEN_SUMS) == 0) {  // given sums are inputs
    T* dgamma = static_cast<T*>(n.tensor[SN_SLOT_DGAMMA]);
    T* dbeta = static_cast<T*>(n.tensor[SN_SLOT_DBETA]);
    for (int64_t a = 0, affine = n.affineGroups * n.affineSize; a < affine; a++) dgamma[a] = dbeta[a] = T(0);
  }
  return 0;
}

}  // namespace

extern "C" int32_t sn_execute(const sn_norm* n) {
  if (n == nullptr) return snError(SN_ERROR_MISSING, 0);
  if (n->phase != SN_PHASE_UPDATE && simdnorm::slotLength(*n, SN_SLOT_X) == 0) {
    return n->dtype == SN_DTYPE_F32 ? executeEmpty<float>(*n) : executeEmpty<double>(*n);
  }
  simdnorm::clearScratchFailure();
#ifdef SIMDNORM_HAVE_AVX2
  if (simdnorm::useAvx2()) return simdnorm::avx2::execute(*n);
#endif
  return simdnorm::base::execute(*n);
}
