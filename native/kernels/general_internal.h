// The general kernel's internals (general.h), shared by its sources: general.cpp (the phases,
// moments and y), general_backward.cpp (backward statistic by statistic, givenSums, sumsOnly),
// columns.cpp (the columns path: short segments, GroupNorm channels-last) and rows_backward.cpp
// (LayerNorm / RMSNorm-shaped backward: float rows, wide rows). Numerics and task cuts: general.h.
#pragma once

#include <cstdint>
#include <type_traits>

#include "general.h"
#include "lanes.h"
#include "norm.h"
#include "parallel.h"
#include "reduce.h"
#include "scratch.h"
#include "simd.h"
#include "store.h"
#include "tuning.h"

namespace simdnorm {
namespace SIMDNORM_ISA {
namespace general {

constexpr int64_t kGeneralBlock = 16384;   // elements per block of shifted sums
constexpr int64_t kTaskElements = 32768;   // elements per task (whole statistics)
constexpr int64_t kMaxGradTasks = 64;      // backward: partial dgamma/dbeta arrays per call...
constexpr int64_t kMaxPartialDoubles = int64_t{1} << 22;  // ... and at most this many doubles of them

// The geometry of a descriptor.
struct Shape {
  int64_t samples, outer, stats, inner, groups, size, run;
  int64_t K, M;  // statistics, values per statistic
  explicit Shape(const sn_norm& n)
      : samples(n.samples), outer(n.outer), stats(n.stats), inner(n.inner), groups(n.affineGroups),
        size(n.affineSize), run(n.affineRun), K(n.samples * n.stats), M(n.outer * n.inner) {}
  // The first element of segment o of statistic k.
  int64_t segment(int64_t k, int64_t o) const {
    const int64_t n = k / stats, s = k - n * stats;
    return ((n * outer + o) * stats + s) * inner;
  }
  // The first γ/β index of statistic k.
  int64_t group(int64_t k) const { return (k % stats) % groups * size; }
  int64_t affine() const { return groups * size; }
  // Whether γ/β vary inside a segment (else one entry per statistic: `group`).
  bool varies() const { return size > 1 && run < inner; }
  // Whether element j of a segment takes entry group + j (LayerNorm, RMSNorm).
  bool perElement() const { return run == 1 && size == inner; }
};

// Tasks of whole statistics: `per` statistics each, `count` of them (by the geometry only).
struct Tasks {
  int64_t per, count;
};
inline Tasks statisticTasks(const Shape& sh, int64_t cap) {
  if (sh.K == 0) return {1, 0};
  int64_t per = maxOf(1, kTaskElements / maxOf(sh.M, 1));
  int64_t count = ceilDiv(sh.K, per);
  if (count > cap) {
    per = ceilDiv(sh.K, cap);
    count = ceilDiv(sh.K, per);
  }
  return {per, count};
}

// Streaming stores for outputs of at least kStreamBytes (forStreamRun, store.h).
template <typename T>
inline bool streamsOutput(const T*, int64_t elements) {
  return kStreamLanes && elements * static_cast<int64_t>(sizeof(T)) >= kStreamBytes;
}
// storeLanesAs, or with Stream a streaming store of a whole vector (k == kDoubleLanes).
template <bool Stream, typename T>
SIMDNORM_INLINE void putLanes(T* p, VDouble v, int64_t k) {
#if defined(__AVX2__) && defined(__FMA__)
  if constexpr (Stream) {
    const typename HalfOf<T>::V t = toLanesOf<T>(v);
    if constexpr (sizeof(T) == 4) _mm_stream_ps(reinterpret_cast<float*>(p), (__m128)t);
    else _mm256_stream_pd(reinterpret_cast<double*>(p), (__m256d)t);
    return;
  }
#endif
  storeLanesAs(p, v, k);
}

template <typename T>
const T* tensorOf(const sn_norm& n, int slot) {
  return static_cast<const T*>(n.tensor[slot]);
}
template <typename T>
T* outputOf(const sn_norm& n, int slot) {
  return static_cast<T*>(n.tensor[slot]);
}

// A backward call's tensors and flags (y: only with the relu flag, else null; dx: null with sumsOnly).
template <typename T>
struct BackwardTensors {
  const T *dy, *x, *mean, *invStd, *gamma, *y;
  T *dx, *dgamma, *dbeta;
  bool rms, training;
  explicit BackwardTensors(const sn_norm& n)
      : dy(tensorOf<T>(n, SN_SLOT_DY)), x(tensorOf<T>(n, SN_SLOT_X)), mean(tensorOf<T>(n, SN_SLOT_MEAN)),
        invStd(tensorOf<T>(n, SN_SLOT_INV_STD)), gamma(tensorOf<T>(n, SN_SLOT_GAMMA)),
        y((n.flags & SN_FLAG_RELU) != 0 ? tensorOf<T>(n, SN_SLOT_Y) : nullptr), dx(outputOf<T>(n, SN_SLOT_DX)),
        dgamma(outputOf<T>(n, SN_SLOT_DGAMMA)), dbeta(outputOf<T>(n, SN_SLOT_DBETA)),
        rms((n.flags & SN_FLAG_RMS) != 0), training((n.flags & SN_FLAG_TRAINING) != 0) {}
};

// f(start, length) for the spans of block b of a statistic (first element of segment o: base(o)).
struct Blocks {
  int64_t pieces, pieceLength, segmentsPerBlock, count;
  explicit Blocks(const Shape& sh) {
    if (sh.inner > kGeneralBlock) {
      pieces = ceilDiv(sh.inner, kGeneralBlock);
      pieceLength = ceilDiv(sh.inner, pieces);
      segmentsPerBlock = 1;
      count = sh.outer * pieces;
    } else {
      pieces = 1;
      pieceLength = sh.inner;
      segmentsPerBlock = maxOf(1, kGeneralBlock / maxOf(sh.inner, 1));
      count = ceilDiv(sh.outer, segmentsPerBlock);
    }
  }
  // The first element of block b of statistic k.
  int64_t first(const Shape& sh, int64_t k, int64_t b) const {
    return pieces > 1 ? sh.segment(k, b / pieces) + b % pieces * pieceLength : sh.segment(k, b * segmentsPerBlock);
  }
  template <typename F>
  void forEachSpan(const Shape& sh, int64_t k, int64_t b, F f) const {
    if (pieces > 1) {
      const int64_t o = b / pieces, j0 = b % pieces * pieceLength;
      f(sh.segment(k, o) + j0, minOf(sh.inner, j0 + pieceLength) - j0);
      return;
    }
    const int64_t o1 = minOf(sh.outer, (b + 1) * segmentsPerBlock);
    for (int64_t o = b * segmentsPerBlock; o < o1; o++) f(sh.segment(k, o), sh.inner);
  }
};

// js.ts's statistic(), operation for operation (the non-finite case, and M == 0).
template <typename T>
void plainStatistic(const T* x, const Shape& sh, int64_t k, bool rms, double& mean, double& variance) {
  const double count = static_cast<double>(sh.M);
  auto each = [&](auto f) {
    for (int64_t o = 0; o < sh.outer; o++) {
      const T* p = x + sh.segment(k, o);
      for (int64_t j = 0; j < sh.inner; j++) f(static_cast<double>(p[j]));
    }
  };
  if (rms) {
    double squares = 0;
    each([&](double v) { squares += v * v; });
    mean = 0;
    variance = squares / count;
    return;
  }
  double sum = 0;
  each([&](double v) { sum += v; });
  double m = sum / count, residual = 0, squares = 0;
  each([&](double v) {
    const double d = v - m;
    residual += d;
    squares += d * d;
  });
  if (__builtin_isfinite(residual)) {
    m += residual / count;
    squares -= residual * (residual / count);
  }
  mean = m;
  variance = (squares < 0 ? 0 : squares) / count;
}

// mean and variance of statistic k from its merged moments (rms: its sum of squares); where they
// are not finite, as js.ts computes them.
template <typename T>
void finishStatistic(const T* x, const Shape& sh, int64_t k, bool rms, const Moments& total, double squares,
                     double& mean, double& variance) {
  const double count = static_cast<double>(sh.M);
  if (rms) {
    if (!__builtin_isfinite(squares)) return plainStatistic(x, sh, k, rms, mean, variance);
    mean = 0;
    variance = squares / count;
    return;
  }
  if (!finite(total)) return plainStatistic(x, sh, k, rms, mean, variance);
  mean = total.mean;
  variance = total.m2 / count;
}

// Whether passes over a statistic read the next one's values ahead (prefetchAhead): where each is
// one segment (GroupNorm, InstanceNorm channels-first: statistics end to end), natively, out of
// cache (readsAhead).
template <typename T>
inline bool readsStatisticsAhead(const Shape& sh) {
  return sh.outer == 1 && readsAhead(sh.K * sh.M * static_cast<int64_t>(sizeof(T)));
}

// Shifted sums of block b of statistic k (shift: see statistic), in double; float data in float
// over runs of kFloatRun values per lane first where that is accurate (reduce.h's accumulate with
// FloatSquaresOk, as the BatchNorm kernels' blockMoments; useFloat false: in double throughout).
template <typename T>
Sums blockSums(const T* x, const Shape& sh, const Blocks& blocks, int64_t k, int64_t b, double shift, bool useFloat,
               double& n) {
  Sums sums;
  n = 0;
  const bool ahead = readsStatisticsAhead<T>(sh);
  blocks.forEachSpan(sh, k, b, [&](int64_t start, int64_t length) {
    n += static_cast<double>(length);
    const T* p = x + start;
    auto term = [&](int64_t i, int64_t lanesK) SIMDNORM_LAMBDA_INLINE {
      const VDouble d = loadDoubleLanes(p + i, lanesK) - shift;
      return Terms{d, d * d};
    };
    if constexpr (sizeof(T) == 4 && kFloatRuns) {
      if (useFloat) {
        const float shiftF = static_cast<float>(shift);  // a value of x (or 0): exact
        accumulate(length, 0, term, sums, [&](int64_t i) SIMDNORM_LAMBDA_INLINE {
          if (ahead) prefetchAhead(p + i);
          const VFloat d = load<VFloat>(p + i) - shiftF;
          return FloatTerms{d, d * d};
        }, FloatSquaresOk{});
        return;
      }
    }
    accumulate(length, 0, term, sums);
  });
  return sums;
}

// The moments of statistic k (header comment): mean (rms: 0) and biased variance, in double.
template <typename T>
void statistic(const T* x, const Shape& sh, const Blocks& blocks, int64_t k, bool rms, double& mean,
               double& variance) {
  if (sh.M == 0) return plainStatistic(x, sh, k, rms, mean, variance);
  Moments total{};
  double squares = 0;
  for (int64_t b = 0; b < blocks.count; b++) {
    const double shift = rms ? 0.0 : shiftOf(static_cast<double>(x[blocks.first(sh, k, b)]));
    double n;
    Sums sums = blockSums(x, sh, blocks, k, b, shift, true, n);
    // rms: sums of squares do not cancel; else a shift far from the block's mean does (stats.cpp)
    if (sizeof(T) == 4 && kFloatRuns && !rms && cancels(n, sums.sumU(), sums.sumV())) {
      sums = blockSums(x, sh, blocks, k, b, shift, false, n);
    }
    if (rms) {
      squares += sums.sumV();
    } else {
      merge(total, shiftedMoments(n, shift, sums.sumU(), sums.sumV()));
    }
  }
  finishStatistic(x, sh, k, rms, total, squares, mean, variance);
}

inline int32_t noMemory() { return snError(SN_ERROR_NO_MEMORY, 0); }

// ---- the columns path: short segments (inner < kColumnsMaxInner, GroupNorm channels-last) ----
// Sample n is a matrix [outer][W = stats * inner] whose column p = s * inner + j belongs to
// statistic s. A task is a block of `rows` rows of one sample (by the geometry): per-column shifted
// sums (shift: the column's value in the block's first row) or gradient sums, vectorised across
// the row; a statistic merges its columns' blocks in (row block, column) order; y and dx go row by
// row with per-column coefficients.

constexpr int64_t kColumnsMaxInner = 16;
// Elements per task of the columns path (whole rows, at least 16): few blocks per statistic to merge.
constexpr int64_t kColumnsBlock = 65536;

struct Columns {
  int64_t W, rows, blocks, tasks;
  explicit Columns(const Shape& sh) : W(sh.stats * sh.inner) {
    rows = maxOf(16, kColumnsBlock / maxOf(W, 1));
    blocks = ceilDiv(sh.outer, rows);
    tasks = sh.samples * blocks;
  }
  int64_t sample(int64_t t) const { return t / blocks; }
  int64_t firstRow(int64_t t) const { return t % blocks * rows; }
  int64_t endRow(const Shape& sh, int64_t t) const { return minOf(sh.outer, firstRow(t) + rows); }
  int64_t rowStart(const Shape& sh, int64_t n, int64_t r) const { return (n * sh.outer + r) * W; }
};

inline bool useColumns(const Shape& sh) { return sh.inner < kColumnsMaxInner && sh.outer >= 16 && sh.K > 0 && sh.M > 0; }

inline int64_t columnMomentsWork(const Shape& sh) { return useColumns(sh) ? 3 * Columns(sh).tasks * Columns(sh).W : 0; }

// The γ/β index of column p of statistic k's sample.
inline int64_t columnAffine(const Shape& sh, int64_t p) {
  const int64_t s = p / sh.inner, j = p - s * sh.inner;
  return s % sh.groups * sh.size + (j / sh.run) % sh.size;
}

// Per-column float coefficients of y on the stack up to this many columns (16 kB; columns.cpp).
constexpr int64_t kColumnsFloatMax = 1024;

// Natively, float data of at least 16 rows of at most kColumnsFloatMax columns (GroupNorm
// channels-last, any C / G): the columns path's training forward sample by sample
// (columnTrainFloat), PyTorch's group_norm design: a sample's x comes from memory once, for its
// sums, and from cache for y. Not in WASM (no kFlagCopies: its size budget, README "Browsers and
// bundlers"), whose forward keeps the columns path below kColumnsMaxInner and the statistics
// above.
inline bool useSampleColumns(const Shape& sh) {
  return kFloatRuns && kFlagCopies && sh.outer >= 16 && sh.K > 0 && sh.M > 0 &&
         sh.stats * sh.inner <= kColumnsFloatMax;
}
inline int64_t sampleColumnsWork(const Shape& sh) { return 3 * Columns(sh).tasks * Columns(sh).W; }

#if !defined(__wasm__)
// The training forward where useSampleColumns holds (float data): y, mean, invStd, and the batch
// moments in double (batchMean, batchVar: K each); work: sampleColumnsWork doubles; cMean,
// cScale, cShift: samples * W doubles each.
void columnTrainFloat(const sn_norm& n, const Shape& sh, double* batchMean, double* batchVar, double* work,
                      double* cMean, double* cScale, double* cShift);
#endif

// The columns path (columns.cpp): every statistic's moments (work: columnMomentsWork doubles), y
// with per-column coefficients of each sample (mean, scale, shift at [n * W + p]), backward.
template <typename T>
void columnMoments(const T* x, const Shape& sh, bool rms, double* mean, double* variance, double* work);
template <typename T>
void columnApplyAll(const T* x, T* y, const Shape& sh, bool relu, const double* cMean, const double* cScale,
                    const double* cShift);
template <typename T>
int32_t columnBackward(const sn_norm& n);

// ---- backward (js.ts): g = dy masked by y > 0 (relu, y given), x̂ = (x - mean) * invStd (rms:
// mean 0), h = g * γ; dbeta = Σg, dgamma = Σg x̂ per γ/β entry; training: dx = invStd / M *
// (M h - Σh - x̂ Σh x̂) (rms: without Σh), else dx = h * invStd ----

struct GradVectors {
  VDouble g{}, gx{}, h{}, hx{};
};

// Whether g is masked by y > 0. Natively the backward kernels below have a copy per Relu; without
// store.h's kFlagCopies (WASM: module size, issue 19) only the Relu copy is compiled (the callers'
// `y || !kFlagCopies`), and it masks where y is given.
template <bool Relu, typename T>
SIMDNORM_INLINE bool masks(const T* y) {
  return Relu && (kFlagCopies || y != nullptr);
}

template <typename T, bool Relu>
SIMDNORM_INLINE VDouble gradOf(const T* dy, const T* y, int64_t i, int64_t k) {
  const VDouble g = loadDoubleLanes(dy + i, k);
  if (!masks<Relu>(y)) return g;
  return select(loadDoubleLanes(y + i, k) > VDouble{}, g, VDouble{});
}

// Whether v rounds to a normal float or is 0.
inline bool floatCoefficient(double v) {
  const double a = v < 0 ? -v : v;
  return v == 0 || (a >= 0x1p-126 && a <= 0x1.fffffep127);
}

// Backward of statistic k (general_backward.cpp): Σg, Σg x̂ added to partB/partG per γ/β entry;
// dx (nullptr: the sums only).
template <typename T, bool Relu>
void backwardStatistic(const T* dy, const T* x, const T* y, const T* gamma, const Shape& sh, int64_t k, double mu,
                       double inv, bool training, bool rms, T* dx, double* partG, double* partB);

// The backward phase (general_backward.cpp), every flag.
template <typename T>
int32_t backward(const sn_norm& n);

// ---- LayerNorm / RMSNorm-shaped backward (rows_backward.cpp) ----

constexpr int64_t kRowsMaxInner = 16384;      // longer rows: the wide path (Σh pieces this long)

// The wide rows path (rowsBackward); rows of at most kRowsMaxInner stay with backwardStatistic or
// the float rows (row by row: both passes read the row from L1, the task's partials stay in L1 too).
inline bool useRows(const Shape& sh) {
  return sh.outer == 1 && sh.groups == 1 && sh.size > 1 && sh.perElement() && sh.K > 0 && sh.inner > kRowsMaxInner;
}
template <typename T>
int32_t rowsBackward(const sn_norm& n);

// Float rows (floatRowsTask): float data, one segment per statistic, γ/β by the element.
inline bool useFloatRows(const Shape& sh) {
  return kFloatRuns && sh.outer == 1 && sh.groups == 1 && sh.varies() && sh.perElement() && sh.M > 0 &&
         sh.inner <= kRowsMaxInner;
}
// Floats of one per-column float partial array (whole vectors).
// (one vector more than whole vectors: forStreamRun's vectors need not start at multiples of the
// lanes, and the last may reach a vector past the row's end)
inline int64_t floatRowsPadded(const Shape& sh) { return (ceilDiv(sh.inner, kFloatLanes) + 1) * kFloatLanes; }

// Rows [k0, k1) of a float LayerNorm-shaped backward (useFloatRows), partials to partG/partB;
// floats: 2 * floatRowsPadded zeroed floats of scratch. Only where kFloatRuns holds.
template <bool Relu>
void floatRowsTask(const BackwardTensors<float>& args, const Shape& sh, int64_t k0, int64_t k1, double* partG,
                   double* partB, float* floats, bool stream);

}  // namespace general
}  // namespace SIMDNORM_ISA
}  // namespace simdnorm
