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
// Row by row, the run's float sums in L1 (tiles of at most kColumnsTile columns): the rows come
// from memory in order, with read-ahead hints (a column at a time, down `rows` rows 4W bytes
// apart, they read memory slower: GroupNorm NHWC [8,64,64,320] G=32, README's benchmark case). Per lane the same operations in the same order as a column at a
// time: a run's even rows to one float sum, its odd rows to another, added at the run's end.
constexpr int64_t kColumnsTile = 512;

template <int = 0>
int64_t floatColumnSums(const float* first, int64_t W, int64_t rows, const double* shifts, double* s1, double* s2) {
  using VF = VFloat;
  constexpr int64_t FL = kFloatLanes, L = kDoubleLanes, perLine = 64 / (FL * 4) > 0 ? 64 / (FL * 4) : 1;
  const int64_t whole = W / FL * FL;
  alignas(64) float sf[kColumnsTile], a1[kColumnsTile], a2[kColumnsTile], b1[kColumnsTile], b2[kColumnsTile];
  for (int64_t c0 = 0; c0 < whole; c0 += kColumnsTile) {
    const int64_t n = minOf(kColumnsTile, whole - c0);
    for (int64_t p = 0; p < n; p++) {
      sf[p] = static_cast<float>(shifts[c0 + p]);
      a1[p] = a2[p] = b1[p] = b2[p] = 0;
    }
    for (int64_t p = 0; p < n; p += FL) {
      store(s1 + c0 + p, VDouble{});
      store(s1 + c0 + p + L, VDouble{});
      store(s2 + c0 + p, VDouble{});
      store(s2 + c0 + p + L, VDouble{});
    }
    const float* at = first + c0;
    // rows q (even in the run: a1, a2) and q + 1 (odd: b1, b2), or q alone
    auto rowPair = [&](int64_t q, bool pair) SIMDNORM_LAMBDA_INLINE {
      const float* u = at + q * W;
      const float* v = u + W;
      auto add = [&](int64_t p) SIMDNORM_LAMBDA_INLINE {
        const VF vs = load<VF>(sf + p);
        const VF d = load<VF>(u + p) - vs;
        store(a1 + p, load<VF>(a1 + p) + d);
        store(a2 + p, load<VF>(a2 + p) + d * d);
        if (pair) {
          const VF e = load<VF>(v + p) - vs;
          store(b1 + p, load<VF>(b1 + p) + e);
          store(b2 + p, load<VF>(b2 + p) + e * e);
        }
      };
      int64_t p = 0;
      for (; p + perLine * FL <= n; p += perLine * FL) {  // a hint per 64-byte line
        prefetchAhead(u + p);  // (the first row's only: with a hint for v too it read slower)
        for (int64_t i = 0; i < perLine; i++) add(p + i * FL);
      }
      for (; p < n; p += FL) add(p);
    };
    for (int64_t r = 0; r < rows; r += kFloatRun) {
      const int64_t re = minOf(rows, r + kFloatRun);
      int64_t q = r;
      for (; q + 2 <= re; q += 2) rowPair(q, true);
      if (q < re) rowPair(q, false);
      for (int64_t p = 0; p < n; p += FL) {
        const VF fu = load<VF>(a1 + p) + load<VF>(b1 + p), fv = load<VF>(a2 + p) + load<VF>(b2 + p);
        double *u = s1 + c0 + p, *v = s2 + c0 + p;
        if (allLanes(FloatSquaresOk{}(fu, fv, 0.0f))) {
          VDouble lo, hi;
          toDoubles(fu, lo, hi);
          store(u, load<VDouble>(u) + lo);
          store(u + L, load<VDouble>(u + L) + hi);
          toDoubles(fv, lo, hi);
          store(v, load<VDouble>(v) + lo);
          store(v + L, load<VDouble>(v + L) + hi);
        } else {
          const VDouble dlo = load<VDouble>(shifts + c0 + p), dhi = load<VDouble>(shifts + c0 + p + L);
          VDouble u0 = load<VDouble>(u), u1 = load<VDouble>(u + L), v0 = load<VDouble>(v), v1 = load<VDouble>(v + L);
          for (int64_t k = r; k < re; k++) {
            const VDouble d = loadDouble(at + k * W + p) - dlo, e = loadDouble(at + k * W + p + L) - dhi;
            u0 += d;
            v0 += d * d;
            u1 += e;
            v1 += e * e;
          }
          store(u, u0);
          store(u + L, u1);
          store(v, v0);
          store(v + L, v1);
        }
        store(a1 + p, VF{});
        store(a2 + p, VF{});
        store(b1 + p, VF{});
        store(b2 + p, VF{});
      }
    }
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

// Statistic k's moments from its columns' sums (columnSums of its sample's row blocks), merged
// in (row block, column) order (columnMoments, columnTrainFloat).
template <typename T>
SIMDNORM_INLINE void columnStatistic(const T* x, const Shape& sh, const Columns& c, int64_t k, bool rms,
                                     const double* shift, const double* s1, const double* s2, double& mean,
                                     double& variance) {
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
  finishStatistic(x, sh, k, rms, total, squares, mean, variance);
}

}  // namespace

// Every statistic's moments on the columns path; work: 3 * tasks * W doubles.
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
      columnStatistic(x, sh, c, k, rms, shift, s1, s2, mean[k], variance[k]);
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
    forStreamRun<kDoubleLanes>(ys, W, stream, [&](int64_t p, int64_t k, auto S) SIMDNORM_LAMBDA_INLINE {
      VDouble v = (loadDoubleLanes(xs + p, k) - loadDoubleLanes(m + p, k)) * loadDoubleLanes(sc + p, k) +
                  loadDoubleLanes(sf + p, k);
      v = reluIf(relu, v);
      putLanes<decltype(S)::value>(ys + p, v, k);
    });
  }
}


// out[p] = value(p, k) over a row of W floats (vectors, k < lanes at a stretch's end); streaming
// stores where stream holds (forStreamRun).
template <typename F>
SIMDNORM_INLINE void writeFloatRow(float* out, int64_t W, bool stream, F value) {
  forStreamRun<kFloatLanes>(out, W, stream, [&](int64_t p, int64_t k, auto S) SIMDNORM_LAMBDA_INLINE {
    putVector<decltype(S)::value>(out + p, value(p, k), k);
  });
}

// Float data in float lanes, as the general kernel's writeSpan: y = ((x - hi) - lo) * scale + shift
// per column, the mean split into float hi + lo and scale, shift rounded to float; false (nothing
// written) where a column's split or coefficients are not finite or W exceeds kColumnsFloatMax.
template <typename Relu>
bool columnApplyFloat(const float* x, float* y, const Shape& sh, const Columns& c, int64_t t, const double* cMean,
                      const double* cScale, const double* cShift, bool stream, Relu relu) {
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
    writeFloatRow(ys, W, stream, value);
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

#if !defined(__wasm__)
namespace {

// y's per-column float coefficients (as columnApplyFloat's): the mean split into hi + lo, scale,
// shift, W entries each and then the first kFloatLanes again (a vector that wraps to the next row).
struct FloatCoefficients {
  float *hi, *lo, *sc, *sf;
};

// f from a sample's double coefficients (W <= kColumnsFloatMax); false where one is not finite
// (then y goes in double, columnApply, as columnApplyFloat's callers do).
bool floatCoefficients(const double* m, const double* s, const double* t, int64_t W, const FloatCoefficients& f) {
  for (int64_t p = 0; p < W; p++) {
    f.hi[p] = static_cast<float>(m[p]);
    f.lo[p] = static_cast<float>(m[p] - static_cast<double>(f.hi[p]));
    f.sc[p] = static_cast<float>(s[p]);
    f.sf[p] = static_cast<float>(t[p]);
    if (!__builtin_isfinite(f.hi[p]) || !__builtin_isfinite(f.lo[p]) || !__builtin_isfinite(f.sc[p]) ||
        !__builtin_isfinite(f.sf[p])) {
      return false;
    }
  }
  for (int64_t p = 0; p < kFloatLanes; p++) {
    const int64_t q = p % W;
    f.hi[W + p] = f.hi[q];
    f.lo[W + p] = f.lo[q];
    f.sc[W + p] = f.sc[q];
    f.sf[W + p] = f.sf[q];
  }
  return true;
}

// y of `count` elements of whole rows (W columns) from x, y in float lanes as columnApplyFloat
// (the same operations per element), as one run (forStreamRun: with stream, the 64-byte lines
// wholly inside it go out with streaming stores, the rest with plain stores).
template <typename Relu>
SIMDNORM_INLINE void applyFloatRun(const float* x, float* y, int64_t count, int64_t W, const FloatCoefficients& f,
                                   bool stream, Relu relu) {
  const float *hi = f.hi, *lo = f.lo, *sc = f.sc, *sf = f.sf;
  int64_t p = 0;  // the column of the run's next vector
  forStreamRun<kFloatLanes>(y, count, stream, [&](int64_t i, int64_t k, auto S) SIMDNORM_LAMBDA_INLINE {
    const VFloat v = ((loadLanes(x + i, k) - loadLanes(hi + p, k)) - loadLanes(lo + p, k)) * loadLanes(sc + p, k) +
                     loadLanes(sf + p, k);
    putVector<decltype(S)::value>(y + i, reluIf(relu, v), k);
    p += k;
    while (p >= W) p -= W;  // (W may be less than a vector)
  });
}

// y of sample n (its coefficients at [n * W + p]; f: scratch for their float copies) in float
// lanes by applyFloatRun, row block by row block (the last first: the sums pass left them in the
// nearest cache), or, where a float coefficient is not finite, in double by columnApply.
void applySample(const float* x, float* y, const Shape& sh, const Columns& c, int64_t n, const double* cMean,
                 const double* cScale, const double* cShift, const FloatCoefficients& f, bool stream, bool relu) {
  const int64_t W = c.W, t0 = n * c.blocks;
  const bool inFloat = floatCoefficients(cMean + n * W, cScale + n * W, cShift + n * W, W, f);
  parallelFor(c.blocks, sh.stats * sh.M, [&](int64_t b) {
    const int64_t t = t0 + c.blocks - 1 - b;
    withFlag(relu, [&](auto r) {
      if (!inFloat) return columnApply(x, y, sh, c, t, cMean, cScale, cShift, stream, r);
      const int64_t start = c.rowStart(sh, n, c.firstRow(t));
      applyFloatRun(x + start, y + start, (c.endRow(sh, t) - c.firstRow(t)) * W, W, f, stream, r);
    });
  });
}

}  // namespace

// The training forward of float data sample by sample (general_internal.h's useSampleColumns;
// native only, as general_backward.cpp's groupGrad): a sample's column sums (its row blocks in
// parallel), its statistics, per-column coefficients and y while the sample is still in cache
// (the last row blocks first), each step as columnMoments, train's coefficients and
// columnApplyAll do them: the same operations, the same bits.
void columnTrainFloat(const sn_norm& nd, const Shape& sh, double* batchMean, double* batchVar, double* work,
                      double* cMean, double* cScale, double* cShift) {
  const Columns c(sh);
  const int64_t W = c.W;
  const bool rms = (nd.flags & SN_FLAG_RMS) != 0, relu = (nd.flags & SN_FLAG_RELU) != 0;
  const float* x = tensorOf<float>(nd, SN_SLOT_X);
  const float* gamma = tensorOf<float>(nd, SN_SLOT_GAMMA);
  const float* beta = tensorOf<float>(nd, SN_SLOT_BETA);
  float* y = outputOf<float>(nd, SN_SLOT_Y);
  float* mean = outputOf<float>(nd, SN_SLOT_MEAN);
  float* invStd = outputOf<float>(nd, SN_SLOT_INV_STD);
  double* shift = work;
  double* s1 = work + c.tasks * W;
  double* s2 = s1 + c.tasks * W;
  // y's float coefficients of the current sample (W entries and the first vector's again)
  alignas(64) float hi[kColumnsFloatMax + kFloatLanes], lo[kColumnsFloatMax + kFloatLanes],
      sc[kColumnsFloatMax + kFloatLanes], sf[kColumnsFloatMax + kFloatLanes];
  const FloatCoefficients f{hi, lo, sc, sf};
  // streaming stores for large outputs at any alignment of y (applyFloatRun: whole lines only)
  const bool stream = kStreamLanes && sh.K * sh.M * static_cast<int64_t>(sizeof(float)) >= kStreamBytes;
  const int64_t sampleElements = sh.stats * sh.M;
  for (int64_t n = 0; n < sh.samples; n++) {
    const int64_t t0 = n * c.blocks;
    parallelFor(c.blocks, sampleElements, [&](int64_t b) { columnSums(x, sh, c, t0 + b, rms, shift, s1, s2); });
    for (int64_t k = n * sh.stats; k < (n + 1) * sh.stats; k++) {
      double mu, var;
      columnStatistic(x, sh, c, k, rms, shift, s1, s2, mu, var);
      const double inv = 1 / __builtin_sqrt(var + nd.eps);
      batchMean[k] = mu;
      batchVar[k] = var;
      mean[k] = static_cast<float>(mu);
      invStd[k] = static_cast<float>(inv);
      for (int64_t p = k % sh.stats * sh.inner, e = p + sh.inner; p < e; p++) {
        const int64_t a = columnAffine(sh, p), i = n * W + p;
        cMean[i] = mu;
        cScale[i] = (gamma ? static_cast<double>(gamma[a]) : 1.0) * inv;
        cShift[i] = beta ? static_cast<double>(beta[a]) : 0.0;
      }
    }
    applySample(x, y, sh, c, n, cMean, cScale, cShift, f, stream, relu);
  }
}
#endif

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
    forStreamRun<kDoubleLanes>(dx + start, W, stream, [&](int64_t p, int64_t k, auto S) SIMDNORM_LAMBDA_INLINE {
      const VDouble g = gradOf<T, Relu>(dy, y, start + p, k);
      const VDouble vinv = loadDoubleLanes(inv + p, k);
      const VDouble xh = (loadDoubleLanes(x + start + p, k) - loadDoubleLanes(mu + p, k)) * vinv;
      const VDouble h = g * loadDoubleLanes(gm + p, k);
      const VDouble v = training ? loadDoubleLanes(cc + p, k) *
                                       ((vm * h - loadDoubleLanes(sH + p, k)) - xh * loadDoubleLanes(sHX + p, k))
                                 : h * vinv;
      putLanes<decltype(S)::value>(dx + start + p, v, k);
    });
  }
}


// ---- the columns path's backward of float data in float lanes (natively: kFloatRuns and
// kFlagCopies, as general_backward.cpp's groupGrad), PyTorch's group_norm backward: sample by
// sample, so a sample's dy and x come from memory once for the sums and from cache for dx. Per
// task and column Σg and Σg (x - mean) in float over runs of kFloatRun rows (fixed by the
// geometry), each run added to the double sums where GradSumsOk holds for its vector of columns,
// else that run in double; per statistic Σh = Σ γ Σg and Σh (x - mean) = Σ γ Σg (x - mean) in
// double in (row block, column) order; then dx = g A - ((x - mean) c3 + c2) in float with per
// column A = γ invStd and the statistic's c2 = invStd Σh / M (rms: 0), c3 = invStd² Σh (x - mean)
// / M (backwardStatistic's formula expanded, as groupGradFloat). A sample with a statistic whose
// coefficients are not finite or not normal floats goes by backwardStatistic in double, decided
// before any of its dx is written (so dx may be dy). ----

// Float partial sums of a task's current run of rows: Σg, Σg (x - mean) per column (whole
// vectors), the run's first row and its end.
struct ColumnRun {
  float *g, *gd;
  int64_t first, end;
};

// Adds row r (whole vectors of columns; dy, x, y at the task's first row) to the run's float sums.
// One row at a time, with read-ahead hints: rows in lockstep (more streams) read memory slower here.
template <bool Relu>
SIMDNORM_INLINE void addRowFloat(const float* dy, const float* x, const float* y, int64_t W, int64_t whole, int64_t r,
                                 const float* fMu, const ColumnRun& run) {
  using VF = VFloat;
  constexpr int64_t FL = kFloatLanes, perLine = 64 / (FL * 4) > 0 ? 64 / (FL * 4) : 1;
  auto add = [&](int64_t p, int64_t i) SIMDNORM_LAMBDA_INLINE {
    VF g = load<VF>(dy + i);
    if (masks<Relu>(y)) g = select(load<VF>(y + i) > VF{}, g, VF{});
    store(run.g + p, load<VF>(run.g + p) + g);
    store(run.gd + p, load<VF>(run.gd + p) + g * (load<VF>(x + i) - load<VF>(fMu + p)));
  };
  int64_t p = 0, i = r * W;
  for (; p + perLine * FL <= whole; p += perLine * FL, i += perLine * FL) {  // a hint per 64-byte line
    prefetchAhead(dy + i);
    prefetchAhead(x + i);
    for (int64_t v = 0; v < perLine; v++) add(p + v * FL, i + v * FL);
  }
  for (; p < whole; p += FL, i += FL) add(p, i);
}

// Adds the run's float sums to sg/sgd (double) where GradSumsOk holds for a vector of columns,
// else those columns of the run's rows in double; clears the float sums.
template <bool Relu>
void flushColumnRun(const float* dy, const float* x, const float* y, int64_t W, int64_t whole, const float* fMu,
                    const ColumnRun& run, double* sg, double* sgd) {
  constexpr int64_t FL = kFloatLanes, L = kDoubleLanes;
  for (int64_t p = 0; p < whole; p += FL) {
    const VFloat a = load<VFloat>(run.g + p), b = load<VFloat>(run.gd + p);
    if (allLanes(GradSumsOk{}(a, b, 0.0f))) {
      VDouble lo, hi;
      toDoubles(a, lo, hi);
      store(sg + p, load<VDouble>(sg + p) + lo);
      store(sg + p + L, load<VDouble>(sg + p + L) + hi);
      toDoubles(b, lo, hi);
      store(sgd + p, load<VDouble>(sgd + p) + lo);
      store(sgd + p + L, load<VDouble>(sgd + p + L) + hi);
    } else {
      for (int64_t r = run.first; r < run.end; r++) {
        for (int64_t h = 0; h < FL; h += L) {
          const int64_t i = r * W + p + h;
          const VDouble g = gradOf<float, Relu>(dy, y, i, L);
          store(sg + p + h, load<VDouble>(sg + p + h) + g);
          store(sgd + p + h, load<VDouble>(sgd + p + h) + g * (loadDouble(x + i) - loadDouble(fMu + p + h)));
        }
      }
    }
    store(run.g + p, VFloat{});
    store(run.gd + p, VFloat{});
  }
}

// Task t's per-column Σg, Σg (x - mean) (sample n's means fMu) to sums[4 t W + p], [.. + W + p];
// floats: 2 W zeroed floats of the task's own.
template <bool Relu>
void columnGradSumsFloat(const BackwardTensors<float>& args, const Shape& sh, const Columns& c, int64_t t,
                         const float* fMu, double* sums, float* floats) {
  const int64_t n = c.sample(t), W = c.W, whole = W / kFloatLanes * kFloatLanes;
  const int64_t rows = c.endRow(sh, t) - c.firstRow(t), first = c.rowStart(sh, n, c.firstRow(t));
  const float *dy = args.dy + first, *x = args.x + first, *y = args.y ? args.y + first : nullptr;
  double* sg = sums + 4 * t * W;
  double* sgd = sg + W;
  for (int64_t p = 0; p < 2 * W; p++) sg[p] = 0;
  for (int64_t r0 = 0; r0 < rows; r0 += kFloatRun) {
    const ColumnRun run{floats, floats + W, r0, minOf(rows, r0 + kFloatRun)};
    for (int64_t r = r0; r < run.end; r++) addRowFloat<Relu>(dy, x, y, W, whole, r, fMu, run);
    flushColumnRun<Relu>(dy, x, y, W, whole, fMu, run, sg, sgd);
  }
  for (int64_t p = whole; p < W; p++) {  // the last columns (W not a whole number of vectors) in double
    const double mu = fMu[p];
    for (int64_t r = 0; r < rows; r++) {
      const int64_t i = r * W + p;
      const double g = y && !(y[i] > 0) ? 0.0 : static_cast<double>(dy[i]);
      sg[p] += g;
      sgd[p] += g * (static_cast<double>(x[i]) - mu);
    }
  }
}

// Per-column float coefficients of one sample: mean, A = γ invStd, c2, c3 (W each).
struct ColumnCoefficients {
  float *mu, *A, *c2, *c3;
};

// dx of task t's rows in float: g A - ((x - mean) c3 + c2) (training), else g A.
template <bool Relu, bool Training>
void columnGradFloat(const BackwardTensors<float>& args, const Shape& sh, const Columns& c, int64_t t,
                     const ColumnCoefficients& f, bool stream) {
  using VF = VFloat;
  const int64_t n = c.sample(t), W = c.W;
  const float *mu = f.mu, *A = f.A, *c2 = f.c2, *c3 = f.c3;  // in registers, not read again after each store
  for (int64_t r = c.firstRow(t), r1 = c.endRow(sh, t); r < r1; r++) {
    const int64_t start = c.rowStart(sh, n, r);
    const float *dy = args.dy + start, *x = args.x + start, *y = args.y ? args.y + start : nullptr;
    float* dx = args.dx + start;
    auto value = [&](int64_t p, int64_t k) SIMDNORM_LAMBDA_INLINE {
      VF g = loadLanes(dy + p, k);
      if (masks<Relu>(y)) g = select(loadLanes(y + p, k) > VF{}, g, VF{});
      if constexpr (Training) {
        const VF xm = loadLanes(x + p, k) - loadLanes(mu + p, k);
        return mulAdd(g, loadLanes(A + p, k), -mulAdd(xm, loadLanes(c3 + p, k), loadLanes(c2 + p, k)));
      } else {
        return g * loadLanes(A + p, k);
      }
    };
    writeFloatRow(dx, W, stream, value);
  }
}

// Per column of a sample: its statistic within the sample (p / inner) and its γ/β entry.
struct ColumnIndex {
  int64_t *statistic, *affine;
};

// Sample n of a float backward on the columns path (dx given); false (nothing written, nothing
// added to acc) where it must go in double. floats: (4 + 2 blocks) W floats; sumH, sumHD:
// stats doubles.
template <bool Relu>
bool columnSampleFloat(const BackwardTensors<float>& args, const Shape& sh, const Columns& c, int64_t n,
                       const ColumnIndex& index, double* sums, double* sumH, double* sumHD, double* acc, float* floats,
                       bool stream) {
  const int64_t W = c.W, affine = sh.affine(), k0 = n * sh.stats, t0 = n * c.blocks;
  float* fMu = floats;
  for (int64_t p = 0; p < W; p++) {
    const float mu = args.rms ? 0.0f : args.mean[k0 + p / sh.inner];
    if (!__builtin_isfinite(mu)) return false;
    fMu[p] = mu;
  }
  const ColumnCoefficients f{fMu, floats + W, floats + 2 * W, floats + 3 * W};
  parallelFor(c.blocks, sh.M * sh.stats, [&](int64_t b) {
    float* own = floats + (4 + 2 * b) * W;
    for (int64_t p = 0; p < 2 * W; p++) own[p] = 0;
    columnGradSumsFloat<Relu>(args, sh, c, t0 + b, fMu, sums, own);
  });
  for (int64_t s = 0; s < sh.stats; s++) sumH[s] = sumHD[s] = 0;
  for (int64_t t = t0; t < t0 + c.blocks; t++) {
    const double* ts = sums + 4 * t * W;
    for (int64_t p = 0; p < W; p++) {
      const double ga = args.gamma ? static_cast<double>(args.gamma[index.affine[p]]) : 1.0;
      sumH[index.statistic[p]] += ga * ts[p];
      sumHD[index.statistic[p]] += ga * ts[W + p];
    }
  }
  const double m = static_cast<double>(sh.M);
  for (int64_t s = 0; s < sh.stats; s++) {
    const double inv = static_cast<double>(args.invStd[k0 + s]), cs = inv / m;
    const double c2 = args.rms ? 0.0 : cs * sumH[s], c3 = inv * cs * (inv * sumHD[s]);
    if (!floatCoefficient(inv) || inv == 0 || !__builtin_isfinite(sumH[s]) || !__builtin_isfinite(sumHD[s]) ||
        (args.training && (!floatCoefficient(c2) || !floatCoefficient(c3)))) {
      return false;
    }
    for (int64_t p = s * sh.inner; p < (s + 1) * sh.inner; p++) {
      const double A = (args.gamma ? static_cast<double>(args.gamma[index.affine[p]]) : 1.0) * inv;
      if (!floatCoefficient(A)) return false;
      f.A[p] = static_cast<float>(A);
      f.c2[p] = static_cast<float>(c2);
      f.c3[p] = static_cast<float>(c3);
    }
  }
  for (int64_t t = t0; t < t0 + c.blocks; t++) {  // dgamma, dbeta: in (row block, column) order
    const double* ts = sums + 4 * t * W;
    for (int64_t p = 0; p < W; p++) {
      const int64_t a = index.affine[p];
      acc[affine + a] += ts[p];
      acc[a] += static_cast<double>(args.invStd[k0 + index.statistic[p]]) * ts[W + p];
    }
  }
  // the last blocks first: the sums pass left them in the nearest cache
  parallelFor(c.blocks, sh.M * sh.stats, [&](int64_t b) {
    const int64_t t = t0 + c.blocks - 1 - b;
    if (args.training) columnGradFloat<Relu, true>(args, sh, c, t, f, stream);
    else columnGradFloat<Relu, false>(args, sh, c, t, f, stream);
  });
  return true;
}


// The float path of columnBackward (natively, float data, dx given), sample by sample: a sample
// whose coefficients columnSampleFloat refuses goes statistic by statistic through
// backwardStatistic (in double), before any of its dx is written. (A template: only where kFloatRuns.)
template <int = 0>
int32_t columnBackwardFloat(const BackwardTensors<float>& args, const Shape& sh, const Columns& c, ColumnIndex index,
                            double* sums, double* sumH, double* sumHD, double* acc, float* floats) {
  const int64_t affine = sh.affine();
  const bool stream = streamsOutput(args.dx, sh.K * sh.M);
  for (int64_t p = 0; p < c.W; p++) {
    index.statistic[p] = p / sh.inner;
    index.affine[p] = columnAffine(sh, p);
  }
  for (int64_t a = 0; a < 2 * affine; a++) acc[a] = 0;
  auto samples = [&](auto relu) {
    constexpr bool Relu = decltype(relu)::value;
    for (int64_t s = 0; s < sh.samples; s++) {
      double *sH = sumH + s * sh.stats, *sHD = sumHD + s * sh.stats;
      if (columnSampleFloat<Relu>(args, sh, c, s, index, sums, sH, sHD, acc, floats, stream)) continue;
      for (int64_t k = s * sh.stats; k < (s + 1) * sh.stats; k++) {
        const double mu = args.rms ? 0.0 : static_cast<double>(args.mean[k]), inv = args.invStd[k];
        backwardStatistic<float, Relu>(args.dy, args.x, args.y, args.gamma, sh, k, mu, inv, args.training, args.rms,
                                       args.dx, acc, acc + affine);
      }
    }
  };
  if (args.y) samples(std::true_type{});
  else samples(std::false_type{});
  for (int64_t a = 0; a < affine; a++) {
    args.dgamma[a] = static_cast<float>(acc[a]);
    args.dbeta[a] = static_cast<float>(acc[affine + a]);
  }
  return 0;
}
}  // namespace

template <typename T>
int32_t columnBackward(const sn_norm& n) {
  const Shape sh(n);
  const Columns c(sh);
  const int64_t affine = sh.affine(), W = c.W, SW = sh.samples * W;
  // float data natively, dx given (not sumsOnly): sample by sample in float lanes where it can
  const bool inFloat = sizeof(T) == 4 && kFloatRuns && kFlagCopies && (n.flags & SN_FLAG_SUMS_ONLY) == 0 &&
                       outputOf<T>(n, SN_SLOT_DX) != nullptr;
  double *cMean, *cInv, *cGamma, *cSumH, *cSumHX, *cC, *sums, *sumH, *sumHX, *acc;
  float* floats;
  ColumnIndex index;
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
        s.take(floats, inFloat ? (4 + 2 * c.blocks) * W : 0);
        s.take(index.statistic, inFloat ? W : 0);
        s.take(index.affine, inFloat ? W : 0);
      })) {
    return noMemory();
  }
  const BackwardTensors<T> args(n);
  if constexpr (sizeof(T) == 4 && kFloatRuns && kFlagCopies) {
    if (inFloat) return columnBackwardFloat(args, sh, c, index, sums, sumH, sumHX, acc, floats);
  }
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
