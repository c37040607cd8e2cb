// The general kernel's columns path (general_internal.h): short segments (GroupNorm channels-last).
#include "general_internal.h"

namespace simdnorm {
namespace SIMDNORM_ISA {
namespace general {

namespace {

// Float data: the shifted sums of the whole float vectors of columns of `rows` rows from `first`
// (row stride W; shifts: values of x or 0, exact in float) in float lanes over runs of at most
// kFloatRun rows, each run added to the double sums where FloatSquaresOk holds for its lanes, else
// summed again in double; to s1/s2[p]. Returns how many columns it did (a multiple of the lanes).
template <int = 0>
int64_t floatColumnSums(const float* first, int64_t W, int64_t rows, const double* shifts, double* s1, double* s2) {
  using VF = VFloat;
  constexpr int64_t FL = kFloatLanes, L = kDoubleLanes;
  const int64_t whole = W / FL * FL;
  for (int64_t p = 0; p < whole; p += FL) {
    float sf[FL];
    for (int64_t i = 0; i < FL; i++) sf[i] = static_cast<float>(shifts[p + i]);
    const VF vs = load<VF>(sf);
    const VDouble dlo = load<VDouble>(shifts + p), dhi = load<VDouble>(shifts + p + L);
    VDouble u0{}, u1{}, v0{}, v1{};
    const float* at = first + p;
    for (int64_t r = 0; r < rows; r += kFloatRun) {
      const int64_t re = minOf(rows, r + kFloatRun);
      VF a1{}, a2{}, b1{}, b2{};
      int64_t q = r;
      for (; q + 2 <= re; q += 2) {
        const VF d = load<VF>(at + q * W) - vs, e = load<VF>(at + (q + 1) * W) - vs;
        a1 += d;
        a2 += d * d;
        b1 += e;
        b2 += e * e;
      }
      if (q < re) {
        const VF d = load<VF>(at + q * W) - vs;
        a1 += d;
        a2 += d * d;
      }
      const VF fu = a1 + b1, fv = a2 + b2;
      if (allLanes(FloatSquaresOk{}(fu, fv, 0.0f))) {
        VDouble lo, hi;
        toDoubles(fu, lo, hi);
        u0 += lo;
        u1 += hi;
        toDoubles(fv, lo, hi);
        v0 += lo;
        v1 += hi;
      } else {
        for (q = r; q < re; q++) {
          const VDouble d = loadDouble(at + q * W) - dlo, e = loadDouble(at + q * W + L) - dhi;
          u0 += d;
          v0 += d * d;
          u1 += e;
          v1 += e * e;
        }
      }
    }
    store(s1 + p, u0);
    store(s1 + p + L, u1);
    store(s2 + p, v0);
    store(s2 + p + L, v1);
  }
  return whole;
}

// Task t's per-column shifted sums, to shift/s1/s2[t * W + p].
template <typename T>
void columnSums(const T* x, const Shape& sh, const Columns& c, int64_t t, bool rms, double* shift, double* s1,
                double* s2) {
  const int64_t n = c.sample(t), r0 = c.firstRow(t), r1 = c.endRow(sh, t), W = c.W;
  double* sh0 = shift + t * W;
  const T* first = x + c.rowStart(sh, n, r0);
  for (int64_t p = 0; p < W; p++) sh0[p] = rms ? 0.0 : shiftOf(static_cast<double>(first[p]));
  int64_t whole = 0;  // columns done in float runs (natively: see general_backward.cpp's groupGrad)
  if constexpr (sizeof(T) == 4 && kFloatRuns && kFlagCopies) {
    whole = floatColumnSums(first, W, r1 - r0, sh0, s1 + t * W, s2 + t * W);
  }
  forLanes(W - whole, [&](int64_t q, int64_t k) SIMDNORM_LAMBDA_INLINE {
    const int64_t p = whole + q;
    const VDouble base = loadDoubleLanes(sh0 + p, k);
    VDouble a1{}, a2{}, b1{}, b2{};
    const T* at = first + p;
    int64_t r = r0;
    for (; r + 2 <= r1; r += 2, at += 2 * W) {
      const VDouble d = loadDoubleLanes(at, k) - base, e = loadDoubleLanes(at + W, k) - base;
      a1 += d;
      a2 += d * d;
      b1 += e;
      b2 += e * e;
    }
    if (r < r1) {
      const VDouble d = loadDoubleLanes(at, k) - base;
      a1 += d;
      a2 += d * d;
    }
    storeLanesAs(s1 + t * W + p, a1 + b1, k);
    storeLanesAs(s2 + t * W + p, a2 + b2, k);
  });
}

// Every statistic's moments on the columns path; work: 3 * tasks * W doubles.

}  // namespace

template <typename T>
void columnMoments(const T* x, const Shape& sh, bool rms, double* mean, double* variance, double* work) {
  const Columns c(sh);
  double* shift = work;
  double* s1 = work + c.tasks * c.W;
  double* s2 = s1 + c.tasks * c.W;
  parallelFor(c.tasks, sh.K * sh.M, [&](int64_t t) { columnSums(x, sh, c, t, rms, shift, s1, s2); });
  const Tasks tasks = statisticTasks(sh, INT64_MAX);
  parallelFor(tasks.count, sh.K * sh.M, [&](int64_t task) {
    for (int64_t k = task * tasks.per, end = minOf(sh.K, k + tasks.per); k < end; k++) {
      const int64_t n = k / sh.stats, s = k % sh.stats;
      Moments total{};
      double squares = 0;
      for (int64_t rb = 0; rb < c.blocks; rb++) {
        const int64_t t = n * c.blocks + rb;
        const double rows = static_cast<double>(c.endRow(sh, t) - c.firstRow(t));
        for (int64_t j = 0; j < sh.inner; j++) {
          const int64_t i = t * c.W + s * sh.inner + j;
          if (rms) squares += s2[i];
          else merge(total, shiftedMoments(rows, shift[i], s1[i], s2[i]));
        }
      }
      finishStatistic(x, sh, k, rms, total, squares, mean[k], variance[k]);
    }
  });
}

namespace {

// y over task t's rows with per-column coefficients of its sample (mean, scale, shift at [n * W + p]).
template <typename T, typename Relu>
void columnApply(const T* x, T* y, const Shape& sh, const Columns& c, int64_t t, const double* cMean,
                 const double* cScale, const double* cShift, bool stream, Relu relu) {
  const int64_t n = c.sample(t), W = c.W;
  const double *m = cMean + n * W, *sc = cScale + n * W, *sf = cShift + n * W;
  for (int64_t r = c.firstRow(t), r1 = c.endRow(sh, t); r < r1; r++) {
    const int64_t start = c.rowStart(sh, n, r);
    const T* xs = x + start;
    T* ys = y + start;
    withStream(stream && wholeLines(ys, W), [&](auto S) SIMDNORM_LAMBDA_INLINE {
      forLanes(W, [&](int64_t p, int64_t k) SIMDNORM_LAMBDA_INLINE {
        VDouble v = (loadDoubleLanes(xs + p, k) - loadDoubleLanes(m + p, k)) * loadDoubleLanes(sc + p, k) +
                    loadDoubleLanes(sf + p, k);
        v = reluIf(relu, v);
        putLanes<decltype(S)::value>(ys + p, v, k);
      });
    });
  }
}


// Float data in float lanes, as the general kernel's writeSpan: y = ((x - hi) - lo) * scale + shift
// per column, the mean split into float hi + lo and scale, shift rounded to float; false (nothing
// written) where a column's split or coefficients are not finite or W exceeds kColumnsFloatMax.
constexpr int64_t kColumnsFloatMax = 1024;  // per-column float coefficients on the stack (16 kB)

template <typename Relu>
bool columnApplyFloat(const float* x, float* y, const Shape& sh, const Columns& c, int64_t t, const double* cMean,
                      const double* cScale, const double* cShift, bool stream, Relu relu) {
  constexpr int64_t L = lanes<float>();
  const int64_t n = c.sample(t), W = c.W;
  if (W > kColumnsFloatMax) return false;
  alignas(64) float hi[kColumnsFloatMax], lo[kColumnsFloatMax], sc[kColumnsFloatMax], sf[kColumnsFloatMax];
  const double *m = cMean + n * W, *s = cScale + n * W, *f = cShift + n * W;
  for (int64_t p = 0; p < W; p++) {
    hi[p] = static_cast<float>(m[p]);
    lo[p] = static_cast<float>(m[p] - static_cast<double>(hi[p]));
    sc[p] = static_cast<float>(s[p]);
    sf[p] = static_cast<float>(f[p]);
    if (!__builtin_isfinite(hi[p]) || !__builtin_isfinite(lo[p]) || !__builtin_isfinite(sc[p]) ||
        !__builtin_isfinite(sf[p])) {
      return false;
    }
  }
  for (int64_t r = c.firstRow(t), r1 = c.endRow(sh, t); r < r1; r++) {
    const int64_t start = c.rowStart(sh, n, r);
    const float* xs = x + start;
    float* ys = y + start;
    auto value = [&](int64_t p, int64_t k) SIMDNORM_LAMBDA_INLINE {
      return reluIf(relu, ((loadLanes(xs + p, k) - loadLanes(hi + p, k)) - loadLanes(lo + p, k)) *
                                  loadLanes(sc + p, k) +
                              loadLanes(sf + p, k));
    };
    withStream(stream && wholeLines(ys, W), [&](auto S) SIMDNORM_LAMBDA_INLINE {
      int64_t p = 0;
      for (; p + L <= W; p += L) {
        if constexpr (decltype(S)::value && kStreamLanes) streamStore(ys + p, value(p, L));
        else store(ys + p, value(p, L));
      }
      if (p < W) storePartial(ys + p, value(p, W - p), W - p);
    });
  }
  return true;
}

}  // namespace

template <typename T>
void columnApplyAll(const T* x, T* y, const Shape& sh, bool relu, const double* cMean, const double* cScale,
                    const double* cShift) {
  const Columns c(sh);
  const bool stream = streamsOutput(y, sh.K * sh.M);
  parallelFor(c.tasks, sh.K * sh.M, [&](int64_t t) {
    withFlag(relu, [&](auto r) {
      if constexpr (sizeof(T) == 4) {
        if (columnApplyFloat(x, y, sh, c, t, cMean, cScale, cShift, stream, r)) return;
      }
      columnApply(x, y, sh, c, t, cMean, cScale, cShift, stream, r);
    });
  });
}

namespace {

// Columns path of backward: per task and column Σg, Σg x̂, Σh, Σh x̂ (g, x̂, h as backwardStatistic).
template <typename T, bool Relu>
void columnGradSums(const BackwardTensors<T>& args, const Shape& sh, const Columns& c, int64_t t, const double* cMean,
                    const double* cInv, const double* cGamma, double* sums) {
  const T *dy = args.dy, *x = args.x, *y = args.y;
  const int64_t n = c.sample(t), W = c.W, r0 = c.firstRow(t), r1 = c.endRow(sh, t);
  const int64_t first = c.rowStart(sh, n, r0);
  double* out = sums + 4 * t * W;
  forLanes(W, [&](int64_t p, int64_t k) SIMDNORM_LAMBDA_INLINE {
    const VDouble mu = loadDoubleLanes(cMean + n * W + p, k), inv = loadDoubleLanes(cInv + n * W + p, k);
    const VDouble gm = loadDoubleLanes(cGamma + n * W + p, k);
    VDouble sg{}, sgx{}, sh_{}, shx{};
    for (int64_t r = r0, i = first + p; r < r1; r++, i += W) {
      const VDouble g = gradOf<T, Relu>(dy, y, i, k);
      const VDouble xh = (loadDoubleLanes(x + i, k) - mu) * inv;
      const VDouble h = g * gm;
      sg += g;
      sgx += g * xh;
      sh_ += h;
      shx += h * xh;
    }
    storeLanesAs(out + p, sg, k);
    storeLanesAs(out + W + p, sgx, k);
    storeLanesAs(out + 2 * W + p, sh_, k);
    storeLanesAs(out + 3 * W + p, shx, k);
  });
}

template <typename T, bool Relu>
void columnGrad(const BackwardTensors<T>& args, const Shape& sh, const Columns& c, int64_t t, const double* cMean,
                const double* cInv, const double* cGamma, const double* cSumH, const double* cSumHX, const double* cC,
                bool stream) {
  const T *dy = args.dy, *x = args.x, *y = args.y;
  T* dx = args.dx;
  const bool training = args.training;
  const int64_t n = c.sample(t), W = c.W;
  const VDouble vm = splat<VDouble>(static_cast<double>(sh.M));
  const double *mu = cMean + n * W, *inv = cInv + n * W, *gm = cGamma + n * W, *sH = cSumH + n * W,
               *sHX = cSumHX + n * W, *cc = cC + n * W;
  for (int64_t r = c.firstRow(t), r1 = c.endRow(sh, t); r < r1; r++) {
    const int64_t start = c.rowStart(sh, n, r);
    withStream(stream && wholeLines(dx + start, W), [&](auto S) SIMDNORM_LAMBDA_INLINE {
    forLanes(W, [&](int64_t p, int64_t k) SIMDNORM_LAMBDA_INLINE {
      const VDouble g = gradOf<T, Relu>(dy, y, start + p, k);
      const VDouble vinv = loadDoubleLanes(inv + p, k);
      const VDouble xh = (loadDoubleLanes(x + start + p, k) - loadDoubleLanes(mu + p, k)) * vinv;
      const VDouble h = g * loadDoubleLanes(gm + p, k);
      const VDouble v = training ? loadDoubleLanes(cc + p, k) *
                                       ((vm * h - loadDoubleLanes(sH + p, k)) - xh * loadDoubleLanes(sHX + p, k))
                                 : h * vinv;
      putLanes<decltype(S)::value>(dx + start + p, v, k);
    });
    });
  }
}


}  // namespace

template <typename T>
int32_t columnBackward(const sn_norm& n) {
  const Shape sh(n);
  const Columns c(sh);
  const int64_t affine = sh.affine(), W = c.W, SW = sh.samples * W;
  double *cMean, *cInv, *cGamma, *cSumH, *cSumHX, *cC, *sums, *sumH, *sumHX, *acc;
  if (!carveScratch([&](Carver& s) {
        s.take(cMean, SW);
        s.take(cInv, SW);
        s.take(cGamma, SW);
        s.take(cSumH, SW);
        s.take(cSumHX, SW);
        s.take(cC, SW);
        s.take(sums, 4 * c.tasks * W);
        s.take(sumH, sh.K);
        s.take(sumHX, sh.K);
        s.take(acc, 2 * affine);
      })) {
    return noMemory();
  }
  const BackwardTensors<T> args(n);
  const double m = static_cast<double>(sh.M);
  for (int64_t i = 0; i < SW; i++) {
    const int64_t k = i / W * sh.stats + i % W / sh.inner, a = columnAffine(sh, i % W);
    cMean[i] = args.rms ? 0.0 : static_cast<double>(args.mean[k]);
    cInv[i] = static_cast<double>(args.invStd[k]);
    cGamma[i] = args.gamma ? static_cast<double>(args.gamma[a]) : 1.0;
    cC[i] = cInv[i] / m;
  }
  parallelFor(c.tasks, sh.K * sh.M, [&](int64_t t) {
    if (args.y || !kFlagCopies) columnGradSums<T, true>(args, sh, c, t, cMean, cInv, cGamma, sums);
    else columnGradSums<T, false>(args, sh, c, t, cMean, cInv, cGamma, sums);
  });
  // Per statistic Σh, Σh x̂ and per entry Σg x̂, Σg: in (sample, row block, column) order.
  for (int64_t k = 0; k < sh.K; k++) sumH[k] = sumHX[k] = 0;
  for (int64_t a = 0; a < 2 * affine; a++) acc[a] = 0;
  for (int64_t t = 0; t < c.tasks; t++) {
    const double* ts = sums + 4 * t * W;
    const int64_t k0 = c.sample(t) * sh.stats;
    for (int64_t p = 0; p < W; p++) {
      const int64_t k = k0 + p / sh.inner, a = columnAffine(sh, p);
      acc[affine + a] += ts[p];
      acc[a] += ts[W + p];
      sumH[k] += ts[2 * W + p];
      sumHX[k] += ts[3 * W + p];
    }
  }
  for (int64_t i = 0; i < SW; i++) {
    const int64_t k = i / W * sh.stats + i % W / sh.inner;
    cSumH[i] = args.rms ? 0.0 : sumH[k];
    cSumHX[i] = sumHX[k];
  }
  const bool stream = args.dx != nullptr && streamsOutput(args.dx, sh.K * sh.M);
  if (args.dx != nullptr) parallelFor(c.tasks, sh.K * sh.M, [&](int64_t t) {  // null: sumsOnly
    if (args.y || !kFlagCopies) columnGrad<T, true>(args, sh, c, t, cMean, cInv, cGamma, cSumH, cSumHX, cC, stream);
    else columnGrad<T, false>(args, sh, c, t, cMean, cInv, cGamma, cSumH, cSumHX, cC, stream);
  });
  for (int64_t a = 0; a < affine; a++) {
    args.dgamma[a] = static_cast<T>(acc[a]);
    args.dbeta[a] = static_cast<T>(acc[affine + a]);
  }
  return 0;
}
template void columnMoments<float>(const float*, const Shape&, bool, double*, double*, double*);
template void columnMoments<double>(const double*, const Shape&, bool, double*, double*, double*);
template void columnApplyAll<float>(const float*, float*, const Shape&, bool, const double*, const double*, const double*);
template void columnApplyAll<double>(const double*, double*, const Shape&, bool, const double*, const double*, const double*);
template int32_t columnBackward<float>(const sn_norm&);
template int32_t columnBackward<double>(const sn_norm&);

}  // namespace general
}  // namespace SIMDNORM_ISA
}  // namespace simdnorm
