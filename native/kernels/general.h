// The general kernel (general.cpp: the phases, moments and y; general_backward.cpp: backward by
// statistic, GroupNorm-shaped float spans, givenSums, sumsOnly; columns.cpp: short segments;
// rows_backward.cpp and rows.h: LayerNorm / RMSNorm-shaped rows; internals: general_internal.h):
// every descriptor of norm.h, for what the BatchNorm kernels
// (phases.h) do not compute — γ/β varying inside a statistic (affineSize > 1: LayerNorm,
// GroupNorm) and statistics about zero (the rms flag: RMSNorm) — and the helpers entry.cpp needs
// to run the per-sample BatchNorm kernels (InstanceNorm, ghost BatchNorm): per-statistic double
// moments and the running update averaged over samples. Compiled once per ISA.
//
// Statistic k = n * stats + s reduces over its `outer` segments of `inner` contiguous elements,
// segment o at ((n * outer + o) * stats + s) * inner; element j of a segment takes γ/β at
// (s mod affineGroups) * affineSize + (j / affineRun) mod affineSize. Semantics: lib/backends/js.ts.
//
// Numerics as the BatchNorm kernels: per block (whole segments up to kGeneralBlock elements, or
// pieces of a longer segment) shifted sums S1 = sum(x - shift), S2 = sum((x - shift)^2) in double,
// shift the block's first value (0 when not finite), blocks merged with Chan's formula in block
// order (reduce.h's Moments); with rms, sum(x^2) per block summed in block order. A statistic
// whose moments are not finite is recomputed as js.ts does (IEEE results). dx, and y of double
// data, are computed in double with js.ts's formulas (float data converted, results rounded
// once); y of float data outside the columns path in float lanes, the mean split into float
// hi + lo as the BatchNorm kernels do (double where the split or the coefficients are not
// finite). Outputs of at least kStreamBytes go out with streaming stores where rows are whole
// 64-byte lines.
// Work is cut into tasks of whole statistics by the geometry only; backward's dgamma/dbeta are
// per-task partial arrays merged in task order (rows longer than 16384, LayerNorm-shaped: tasks
// of column strips owning their columns): results are bitwise the same for any thread count.
#pragma once

#include <cstdint>

#include "norm.h"
#include "simd.h"

namespace simdnorm {
namespace SIMDNORM_ISA {

// Runs any descriptor sn_prepare accepted (every phase, every flag) with the general kernel;
// returns what sn_execute returns (SN_ERROR_NO_MEMORY, nothing written, when scratch fails).
// Uses the calling thread's scratch().
int32_t executeGeneral(const sn_norm& n);

// mean and biased variance of every statistic of n's geometry in double (rms: 0 and the mean of
// square), as the general kernel computes them; mean, variance: samples * stats entries. Uses the
// calling thread's scratch(); false (nothing written) when it cannot be had.
template <typename T>
bool statisticMoments(const T* x, const sn_norm& n, bool rms, double* mean, double* variance);

// The running update of n (runningMean/runningVar slots) from per-statistic batch means and
// variances (samples * stats entries each) averaged over samples as js.ts does (in k order, each
// divided by samples); work: 2 * stats doubles. Returns whether the running stats were written.
template <typename T, typename S>
bool updateFromStatistics(const sn_norm& n, const S* mean, const S* variance, double* work);

}  // namespace SIMDNORM_ISA
}  // namespace simdnorm
