// The rows kernels (rows.cpp): LayerNorm / RMSNorm training forward of float data — one segment
// per statistic (outer 1), γ/β by the element (affineSize == inner, run 1, one γ/β group), rows
// of at most kRowsForwardMaxInner — each row read from memory once: its shifted sums in float
// lanes (runs of at most kFloatRun values per lane, each run added to double sums: reduce.h's
// FloatSquaresOk and cancels decide, as the general kernel's blockSums), then y from the row
// while it is still in L1. A row the float sums cannot take (a non-finite first value, a run
// outside FloatSquaresOk, cancellation, a non-finite sum) goes by js.ts's statistic() in double
// (two passes over the row, still in cache). y as the general kernel writes it:
// ((x - hi) - lo) * (γ * invStd) + β in float lanes, the mean split into float hi + lo; in
// double where the split or invStd is not finite. Tasks of whole rows by the geometry only:
// every row's bits are the same for any thread count.
#pragma once

#include <cstdint>

#include "norm.h"
#include "simd.h"

namespace simdnorm {
namespace SIMDNORM_ISA {

constexpr int64_t kRowsForwardMaxInner = 16384;  // 64 kB of float: the row stays in L2 at worst

// Whether rowsTrainForward computes this training-forward descriptor (float data, LayerNorm /
// RMSNorm-shaped, no running stats).
bool rowsForwardShaped(const sn_norm& n);

// The training forward of a descriptor rowsForwardShaped accepted: y, mean (rms: 0), invStd.
// Returns what sn_execute returns (0).
int32_t rowsTrainForward(const sn_norm& n);

}  // namespace SIMDNORM_ISA
}  // namespace simdnorm
