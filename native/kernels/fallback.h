// Channels computed plainly: which channels leave the vector formula (a non-finite value, an
// offset or a coefficient out of T's range: plainChannel, and lane by lane notFiniteLanes,
// offsetTooLargeLanes, scaleOutsideLanes, storeFlags) for the reference's per-element formula in
// double, and the walk over a channel's elements in the reference's order (forEachOfChannel).
#pragma once

#include <cstdint>
#include <cstring>
#include <initializer_list>

#include "batchnorm.h"
#include "simd.h"

namespace simdnorm {
namespace SIMDNORM_ISA {

// Calls f(index) for every element of channel c, in memory order (the reference's order).
template <typename F>
void forEachOfChannel(const Geometry& g, int64_t c, F f) {
  for (int64_t o = 0; o < g.outer; o++) {
    for (int64_t i = (o * g.channels + c) * g.inner, end = i + g.inner; i < end; i++) f(i);
  }
}

// Whether a per-channel coefficient of the vector formula is too far from 1 to stand for the
// reference's formula: for float, a coefficient kept as a float that would lose what it holds (finite
// and non-zero but outside float's normal range, with room), as with gamma ~ 1e37 or a data std
// above ~1e19; for double, one so large or small (gamma ~ 1e308) that the vector formula's
// products overflow or underflow where the reference's formula, in another order, does not (or the
// other way round).
template <typename T>
inline bool outsideCoefficientRange(double v) {
  const double a = __builtin_fabs(v);
  const double low = sizeof(T) == sizeof(float) ? 0x1p-120 : 0x1p-960;
  const double high = sizeof(T) == sizeof(float) ? 0x1p120 : 0x1p960;
  return __builtin_isfinite(a) && a != 0 && (a < low || a > high);
}

// Whether a channel's output is computed by the reference's per-element formula in double
// (forward.cpp's normalizeChannel, backward.cpp's gradChannel) instead of the vector formula:
//  - a per-channel value is not finite (the vector formula's forms, e.g. the hi/lo split of an
//    infinite mean or backward's expanded dx, meet Inf - Inf where the reference's formula does not);
//  - an additive coefficient (a mean, beta, backward's k * dbeta / M) is so large that T's
//    arithmetic overflows next to it where the reference's, in double, does not (x - mean with
//    x = FLT_MAX and mean = -3e37): 2^100 for float (x - mean cannot overflow below 2^103),
//    2^960 for double;
//  - a multiplicative coefficient is outside outsideCoefficientRange.
// Other channels keep the vector path.
template <typename T>
inline bool plainChannel(std::initializer_list<double> values, std::initializer_list<double> offsets,
                         std::initializer_list<double> scales) {
  const double offsetLimit = sizeof(T) == sizeof(float) ? 0x1p100 : 0x1p960;
  for (double v : values) {
    if (!__builtin_isfinite(v)) return true;
  }
  for (double v : offsets) {
    if (!(__builtin_fabs(v) <= offsetLimit)) return true;
  }
  for (double v : scales) {
    if (!__builtin_isfinite(v) || outsideCoefficientRange<T>(v)) return true;
  }
  return false;
}

// plainChannel lane by lane (masks): not finite, an offset beyond the limit, a scale outside
// outsideCoefficientRange.
inline VDoubleMask notFiniteLanes(VDouble v) { return ~((v - v) == VDouble{}); }
template <typename T>
inline VDoubleMask offsetTooLargeLanes(VDouble v) {
  const double limit = sizeof(T) == sizeof(float) ? 0x1p100 : 0x1p960;
  return ~(magnitude(v) <= limit);  // NaN too
}
template <typename T>
inline VDoubleMask scaleOutsideLanes(VDouble v) {
  const double low = sizeof(T) == sizeof(float) ? 0x1p-120 : 0x1p-960;
  const double high = sizeof(T) == sizeof(float) ? 0x1p120 : 0x1p960;
  const VDouble a = select(v < VDouble{}, -v, v);
  return notFiniteLanes(v) | ((a != VDouble{}) & ((a < low) | (a > high)));
}

// k (<= kDoubleLanes) flags from the lanes of a mask, to flag[0, k); returns whether any is set.
inline bool storeFlags(bool* flag, VDoubleMask m, int64_t k) {
#if defined(__AVX2__) && defined(__FMA__)
  // One movemask, not a lane extraction per flag (per-channel work is most of the time where
  // channels hold a few values).
  const int bits = _mm256_movemask_pd((__m256d)m);
  if (k == kDoubleLanes && bits == 0) {
    std::memset(flag, 0, kDoubleLanes);
    return false;
  }
  bool any = false;
  for (int64_t i = 0; i < k; i++) any |= (flag[i] = (bits >> i & 1) != 0);
  return any;
#else
  bool any = false;
  for (int64_t i = 0; i < k; i++) any |= (flag[i] = m[i] != 0);
  return any;
#endif
}

}  // namespace SIMDNORM_ISA
}  // namespace simdnorm
