// The running-statistics update (SPEC 1), in double:
//   runningMean = (1 - factor) * runningMean + factor * batchMean
//   runningVar  = (1 - factor) * runningVar  + factor * batchVar * varScale
// evaluated left to right as lib/reference.ts does ((factor * batchVar) * varScale: with factor 0
// and batchVar * varScale overflowing it is 0, not 0 * Inf). With skipNonFinite, a non-finite
// batch mean or (scaled) batch variance in any channel leaves both arrays untouched.
#include "blocking.h"

namespace simdnorm {
namespace SIMDNORM_ISA {

template <typename T, typename Mean>
bool updateRunning(T* runningMean, T* runningVar, const Mean* batchMean, const double* batchVar,
                   int64_t channels, double factor, double varScale, bool skipNonFinite) {
  if (skipNonFinite) {
    for (int64_t c = 0; c < channels; c++) {
      if (!__builtin_isfinite(static_cast<double>(batchMean[c])) ||
          !__builtin_isfinite(batchVar[c] * varScale)) {
        return false;
      }
    }
  }
  const double keep = 1 - factor;
  for (int64_t c = 0; c < channels; c++) {
    runningMean[c] = static_cast<T>(keep * runningMean[c] + factor * static_cast<double>(batchMean[c]));
    runningVar[c] = static_cast<T>(keep * runningVar[c] + factor * batchVar[c] * varScale);
  }
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
