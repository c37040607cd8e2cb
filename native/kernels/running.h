// The running-statistics update shared by forward.cpp (training with a running update) and
// running.cpp, which defines it.
#pragma once

#include <cstdint>

#include "simd.h"

namespace simdnorm {
namespace SIMDNORM_ISA {

// The running update of batchnorm.h with a batch mean of either type (running.cpp).
template <typename T, typename Mean>
bool updateRunning(T* runningMean, T* runningVar, const Mean* batchMean, const double* batchVar,
                   int64_t channels, double factor, double varScale, bool skipNonFinite);

}  // namespace SIMDNORM_ISA
}  // namespace simdnorm
