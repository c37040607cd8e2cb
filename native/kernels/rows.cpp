// The rows kernels of rows.h: LayerNorm / RMSNorm training forward of float rows, one read each.
#include "rows.h"

#include "lanes.h"
#include "parallel.h"
#include "reduce.h"
#include "simd.h"
#include "store.h"
#include "tuning.h"

#include <type_traits>

namespace simdnorm {
namespace SIMDNORM_ISA {

namespace {

constexpr int64_t kRowTaskElements = 32768;  // elements per task (whole rows)

// js.ts's statistic() of one row, operation for operation (in double).
void plainRow(const float* x, int64_t D, bool rms, double& mean, double& variance) {
  const double count = static_cast<double>(D);
  if (rms) {
    double squares = 0;
    for (int64_t j = 0; j < D; j++) squares += static_cast<double>(x[j]) * static_cast<double>(x[j]);
    mean = 0;
    variance = squares / count;
    return;
  }
  double sum = 0;
  for (int64_t j = 0; j < D; j++) sum += static_cast<double>(x[j]);
  double m = sum / count, residual = 0, squares = 0;
  for (int64_t j = 0; j < D; j++) {
    const double d = static_cast<double>(x[j]) - m;
    residual += d;
    squares += d * d;
  }
  if (__builtin_isfinite(residual)) {
    m += residual / count;
    squares -= residual * (residual / count);
  }
  mean = m;
  variance = (squares < 0 ? 0 : squares) / count;
}

// The row's mean (rms: 0) and biased variance (rms: mean of squares) from shifted sums in float
// runs (shift: the row's first value; rms: 0); false where the float sums cannot be used. (A
// template: its float-run body is instantiated only where kFloatRuns holds.)
template <int = 0>
bool floatRow(const float* x, int64_t D, bool rms, double& mean, double& variance) {
  if constexpr (!kFloatRuns) {
    return false;
  } else {
    using VF = VFloat;
    constexpr int64_t L = kFloatLanes, run = kFloatRun * L;
    const float s = rms ? 0.0f : x[0];
    if (!__builtin_isfinite(s)) return false;
    const VF vs = splat<VF>(s);
    VDouble u0{}, u1{}, v0{}, v1{};
    const int64_t whole = D / L * L;
    int64_t j = 0;
    while (j < whole) {
      const int64_t end = minOf(whole, j + run);
      VF a1{}, a2{}, b1{}, b2{};
      for (; j + 2 * L <= end; j += 2 * L) {
        prefetchAhead(x + j);  // a line per step (AVX2; SSE2: every other): the stream stays busy
        const VF d = load<VF>(x + j) - vs, e = load<VF>(x + j + L) - vs;
        a1 += d;
        a2 += d * d;
        b1 += e;
        b2 += e * e;
      }
      if (j < end) {
        const VF d = load<VF>(x + j) - vs;
        a1 += d;
        a2 += d * d;
        j += L;
      }
      const VF u = a1 + b1, v = a2 + b2;
      if (!allLanes(FloatSquaresOk{}(u, v, 0.0f))) return false;
      VDouble lo, hi;
      toDoubles(u, lo, hi);
      u0 += lo;
      u1 += hi;
      toDoubles(v, lo, hi);
      v0 += lo;
      v1 += hi;
    }
    double s1 = sumLanes(u0 + u1), s2 = sumLanes(v0 + v1);
    for (; j < D; j++) {
      const double d = static_cast<double>(x[j]) - static_cast<double>(s);
      s1 += d;
      s2 += d * d;
    }
    const double n = static_cast<double>(D);
    if (!__builtin_isfinite(s1) || !__builtin_isfinite(s2)) return false;
    if (rms) {
      mean = 0;
      variance = s2 / n;
      return true;
    }
    if (cancels(n, s1, s2)) return false;
    const Moments m = shiftedMoments(n, static_cast<double>(s), s1, s2);
    mean = m.mean;
    variance = m.m2 / n;
    return true;
  }
}

// y of a row in float lanes: ((x - hi) - lo) * (γ * q) + β (g: γ, or nullptr for 1; b: β or
// nullptr for 0); streaming stores with stream (forStreamRun).
template <typename Relu>
SIMDNORM_INLINE void applyRowFloat(const float* x, float* y, int64_t D, const float* g, const float* b, float hi,
                                   float lo, float q, bool stream, Relu relu) {
  using VF = VFloat;
  const VF vhi = splat<VF>(hi), vlo = splat<VF>(lo), vq = splat<VF>(q);
  forStreamRun<kFloatLanes>(y, D, stream, [&](int64_t j, int64_t k, auto S) SIMDNORM_LAMBDA_INLINE {
    prefetchAhead(x + j);  // the next rows, while this one is written from L1
    const VF gv = g ? loadLanes(g + j, k) : splat<VF>(1.0f);
    const VF bv = b ? loadLanes(b + j, k) : VF{};
    putVector<decltype(S)::value>(y + j, reluIf(relu, ((loadLanes(x + j, k) - vhi) - vlo) * (gv * vq) + bv), k);
  });
}

// y of a row in double (a split or coefficient that is not finite: js.ts's IEEE results).
template <typename Relu>
void applyRowDouble(const float* x, float* y, int64_t D, const float* g, const float* b, double mean, double q,
                    Relu relu) {
  for (int64_t j = 0; j < D; j++) {
    const double v = (static_cast<double>(x[j]) - mean) * ((g ? static_cast<double>(g[j]) : 1.0) * q) +
                     (b ? static_cast<double>(b[j]) : 0.0);
    y[j] = static_cast<float>(relu && v < 0 ? 0 : v);
  }
}

// Rows [k0, k1).
template <bool HasG, bool HasB, typename Relu>
void rowsTask(const float* x, float* y, int64_t D, const float* gamma, const float* beta, float* mean, float* invStd,
              double eps, bool rms, bool stream, int64_t k0, int64_t k1, Relu relu) {
  const float* g = HasG ? gamma : nullptr;
  const float* b = HasB ? beta : nullptr;
  for (int64_t k = k0; k < k1; k++) {
    const float* xs = x + k * D;
    float* ys = y + k * D;
    double mu, var;
    if (!floatRow(xs, D, rms, mu, var)) plainRow(xs, D, rms, mu, var);
    const double inv = 1 / __builtin_sqrt(var + eps);
    mean[k] = static_cast<float>(mu);
    invStd[k] = static_cast<float>(inv);
    const float hi = static_cast<float>(mu), lo = static_cast<float>(mu - static_cast<double>(hi));
    const float fq = static_cast<float>(inv);
    if (__builtin_isfinite(hi) && __builtin_isfinite(lo) && __builtin_isfinite(fq)) {
      applyRowFloat(xs, ys, D, g, b, hi, lo, fq, stream, relu);
    } else {
      applyRowDouble(xs, ys, D, g, b, mu, inv, relu);
    }
  }
}

}  // namespace

bool rowsForwardShaped(const sn_norm& n) {
  return kFloatRuns && n.dtype == SN_DTYPE_F32 && n.phase == SN_PHASE_TRAIN && n.outer == 1 && n.affineGroups == 1 &&
         n.affineSize == n.inner && n.affineRun == 1 && n.inner > 1 && n.inner <= kRowsForwardMaxInner &&
         n.samples * n.stats > 0 && n.tensor[SN_SLOT_RUNNING_MEAN] == nullptr && (n.flags & SN_FLAG_RESIDUAL) == 0;
}

int32_t rowsTrainForward(const sn_norm& n) {
  const int64_t K = n.samples * n.stats, D = n.inner;
  const float* x = static_cast<const float*>(n.tensor[SN_SLOT_X]);
  const float* gamma = static_cast<const float*>(n.tensor[SN_SLOT_GAMMA]);
  const float* beta = static_cast<const float*>(n.tensor[SN_SLOT_BETA]);
  float* y = static_cast<float*>(n.tensor[SN_SLOT_Y]);
  float* mean = static_cast<float*>(n.tensor[SN_SLOT_MEAN]);
  float* invStd = static_cast<float*>(n.tensor[SN_SLOT_INV_STD]);
  const bool rms = (n.flags & SN_FLAG_RMS) != 0, relu = (n.flags & SN_FLAG_RELU) != 0;
  const bool stream = kStreamLanes && K * D * static_cast<int64_t>(sizeof(float)) >= kStreamBytes;
  const int64_t per = maxOf(1, kRowTaskElements / D), tasks = ceilDiv(K, per);
  parallelFor(tasks, K * D, [&](int64_t t) {
    const int64_t k0 = t * per, k1 = minOf(K, k0 + per);
    withFlag(relu, [&](auto r) {
      // (without kFlagCopies, WASM: one copy, γ/β absent read as null pointers per vector)
      if (!kFlagCopies || (gamma && beta)) rowsTask<true, true>(x, y, D, gamma, beta, mean, invStd, n.eps, rms, stream, k0, k1, r);
      else if (gamma) rowsTask<true, false>(x, y, D, gamma, beta, mean, invStd, n.eps, rms, stream, k0, k1, r);
      else rowsTask<false, false>(x, y, D, gamma, beta, mean, invStd, n.eps, rms, stream, k0, k1, r);
    });
  });
  return 0;
}

}  // namespace SIMDNORM_ISA
}  // namespace simdnorm
