// The running-statistics update (README "API", updateRunningStats), in double:
//   runningMean = (1 - factor) * runningMean + factor * batchMean
//   runningVar  = (1 - factor) * runningVar  + factor * batchVar * varScale
// With skipNonFinite, a non-finite batch value in any channel leaves both arrays untouched.
#include "batchnorm.h"
#include "lanes.h"
#include "running.h"
#include "simd.h"

namespace simdnorm {
namespace SIMDNORM_ISA {

// Vectorised across channels (per-channel work is what costs where channels hold few values).
template <typename T, typename Mean>
bool updateRunning(T* runningMean, T* runningVar, const Mean* batchMean, const double* batchVar,
                   int64_t channels, double factor, double varScale, bool skipNonFinite) {
  if (skipNonFinite) {
    VDoubleMask finite = ~VDoubleMask{};
    forLanes(channels, [&](int64_t c, int64_t k) SIMDNORM_LAMBDA_INLINE {
      const VDouble m = loadDoubleLanes(batchMean + c, k), v = loadDoubleLanes(batchVar + c, k) * varScale;
      finite &= ((m - m) == VDouble{}) & ((v - v) == VDouble{});  // lanes past k are 0: finite
    });
    for (int i = 0; i < kDoubleLanes; i++) {
      if (finite[i] == 0) return false;
    }
  }
  const double keep = 1 - factor;
  forLanes(channels, [&](int64_t c, int64_t k) SIMDNORM_LAMBDA_INLINE {
    const VDouble m = loadDoubleLanes(runningMean + c, k), v = loadDoubleLanes(runningVar + c, k);
    storeLanesAs(runningMean + c, keep * m + factor * loadDoubleLanes(batchMean + c, k), k);
    // Left to right, as the reference (0 * max * 2 = 0, not 0 * Inf).
    storeLanesAs(runningVar + c, keep * v + factor * loadDoubleLanes(batchVar + c, k) * varScale, k);
  });
  return true;
}

template <typename T>
bool updateRunningStats(T* runningMean, T* runningVar, const T* batchMean, const double* batchVar,
                        int64_t channels, double factor, double varScale, bool skipNonFinite) {
  return updateRunning(runningMean, runningVar, batchMean, batchVar, channels, factor, varScale,
                       skipNonFinite);
}

template bool updateRunning<float, float>(float*, float*, const float*, const double*, int64_t,
                                          double, double, bool);
template bool updateRunning<float, double>(float*, float*, const double*, const double*, int64_t,
                                           double, double, bool);
template bool updateRunning<double, double>(double*, double*, const double*, const double*,
                                            int64_t, double, double, bool);
template bool updateRunningStats<float>(float*, float*, const float*, const double*, int64_t, double,
                                        double, bool);
template bool updateRunningStats<double>(double*, double*, const double*, const double*, int64_t,
                                         double, double, bool);

}  // namespace SIMDNORM_ISA
}  // namespace simdnorm
