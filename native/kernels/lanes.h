// Vectors of k <= lanes lanes, shared by the reductions, the writes and the per-channel work:
// loadLanes and loadDoubleLanes (a whole vector or its first k lanes) and forLanes (a range of
// doubles as vectors, the last one partial).
#pragma once

#include <cstdint>

#include "simd.h"

namespace simdnorm {
namespace SIMDNORM_ISA {

template <typename T>
SIMDNORM_INLINE Vec<T> loadLanes(const T* p, int64_t k) {
  return k == lanes<T>() ? load<Vec<T>>(p) : loadPartial<Vec<T>>(p, k);
}
template <typename T>
SIMDNORM_INLINE VDouble loadDoubleLanes(const T* p, int64_t k) {
  return k == kDoubleLanes ? loadDouble(p) : loadDoublePartial(p, k);
}

// f(j, k) for the double vectors of [0, n): lanes [j, j + k), k <= kDoubleLanes.
// (Whole vectors first: f inlined with k constant.)
template <typename F>
SIMDNORM_INLINE void forLanes(int64_t n, F f) {
  int64_t j = 0;
  for (; j + kDoubleLanes <= n; j += kDoubleLanes) f(j, kDoubleLanes);
  if (j < n) f(j, n - j);
}

}  // namespace SIMDNORM_ISA
}  // namespace simdnorm
