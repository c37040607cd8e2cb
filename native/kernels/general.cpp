// The general kernel of general.h: every phase over any descriptor, statistic by statistic.
#include "general.h"

#include "lanes.h"
#include "parallel.h"
#include "reduce.h"
#include "running.h"
#include "scratch.h"
#include "simd.h"
#include "store.h"
#include "tuning.h"

#include <type_traits>

namespace simdnorm {
namespace SIMDNORM_ISA {

namespace {

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
Tasks statisticTasks(const Shape& sh, int64_t cap) {
  if (sh.K == 0) return {1, 0};
  int64_t per = maxOf(1, kTaskElements / maxOf(sh.M, 1));
  int64_t count = ceilDiv(sh.K, per);
  if (count > cap) {
    per = ceilDiv(sh.K, cap);
    count = ceilDiv(sh.K, per);
  }
  return {per, count};
}

// Streaming (non-temporal) stores for outputs of at least kStreamBytes, as the BatchNorm kernels
// (parallelRun fences them): only for runs of whole 64-byte lines (64-byte aligned start, length
// a multiple of 64 bytes), so every vector of the run is whole and no line is written both ways;
// AVX2 only (the 128-bit float store of four double lanes).
#if defined(__AVX2__) && defined(__FMA__)
constexpr bool kStreamLanes = true;
#else
constexpr bool kStreamLanes = false;
#endif

template <typename T>
bool streamsOutput(const T* out, int64_t elements) {
  return kStreamLanes && elements * static_cast<int64_t>(sizeof(T)) >= kStreamBytes &&
         reinterpret_cast<uintptr_t>(out) % 64 == 0;
}
// Whether a run of n elements at p can take streaming stores (given the output streams).
template <typename T>
inline bool wholeLines(const T* p, int64_t n) {
  return reinterpret_cast<uintptr_t>(p) % 64 == 0 && (n * static_cast<int64_t>(sizeof(T))) % 64 == 0;
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
// f(std::bool_constant<stream>); without streaming stores (kStreamLanes false: SSE2, NEON, WASM)
// only f(false_type) is called, one copy of the loop instead of two identical ones.
template <typename F>
SIMDNORM_INLINE void withStream(bool stream, F f) {
  if (kStreamLanes && stream) f(std::true_type{});
  else f(std::false_type{});
}

template <typename T>
const T* tensorOf(const sn_norm& n, int slot) {
  return static_cast<const T*>(n.tensor[slot]);
}
template <typename T>
T* outputOf(const sn_norm& n, int slot) {
  return static_cast<T*>(n.tensor[slot]);
}

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

// Shifted sums of block b of statistic k (shift: see statistic), in double; float data in float
// over runs of kFloatRun values per lane first where that is accurate (reduce.h's accumulate with
// FloatSquaresOk, as the BatchNorm kernels' blockMoments; useFloat false: in double throughout).
template <typename T>
Sums blockSums(const T* x, const Shape& sh, const Blocks& blocks, int64_t k, int64_t b, double shift, bool useFloat,
               double& n) {
  Sums sums;
  n = 0;
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

// ---- the columns path: short segments (inner < kColumnsMaxInner, GroupNorm channels-last) ----
// Sample n is a matrix [outer][W = stats * inner] whose column p = s * inner + j belongs to
// statistic s. A task is a block of `rows` rows of one sample (by the geometry): per-column shifted
// sums (shift: the column's value in the block's first row) or gradient sums, vectorised across
// the row; a statistic merges its columns' blocks in (row block, column) order; y and dx go row by
// row with per-column coefficients.

constexpr int64_t kColumnsMaxInner = 16;

struct Columns {
  int64_t W, rows, blocks, tasks;
  explicit Columns(const Shape& sh) : W(sh.stats * sh.inner) {
    rows = maxOf(16, kGeneralBlock / maxOf(W, 1));
    blocks = ceilDiv(sh.outer, rows);
    tasks = sh.samples * blocks;
  }
  int64_t sample(int64_t t) const { return t / blocks; }
  int64_t firstRow(int64_t t) const { return t % blocks * rows; }
  int64_t endRow(const Shape& sh, int64_t t) const { return minOf(sh.outer, firstRow(t) + rows); }
  int64_t rowStart(const Shape& sh, int64_t n, int64_t r) const { return (n * sh.outer + r) * W; }
};

bool useColumns(const Shape& sh) { return sh.inner < kColumnsMaxInner && sh.outer >= 16 && sh.K > 0 && sh.M > 0; }

// Task t's per-column shifted sums, to shift/s1/s2[t * W + p].
template <typename T>
void columnSums(const T* x, const Shape& sh, const Columns& c, int64_t t, bool rms, double* shift, double* s1,
                double* s2) {
  const int64_t n = c.sample(t), r0 = c.firstRow(t), r1 = c.endRow(sh, t), W = c.W;
  double* sh0 = shift + t * W;
  const T* first = x + c.rowStart(sh, n, r0);
  for (int64_t p = 0; p < W; p++) sh0[p] = rms ? 0.0 : shiftOf(static_cast<double>(first[p]));
  forLanes(W, [&](int64_t p, int64_t k) SIMDNORM_LAMBDA_INLINE {
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

int64_t columnMomentsWork(const Shape& sh) { return useColumns(sh) ? 3 * Columns(sh).tasks * Columns(sh).W : 0; }

// The γ/β index of column p of statistic k's sample.
inline int64_t columnAffine(const Shape& sh, int64_t p) {
  const int64_t s = p / sh.inner, j = p - s * sh.inner;
  return s % sh.groups * sh.size + (j / sh.run) % sh.size;
}

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

template <typename T>
void columnApplyAll(const T* x, T* y, const Shape& sh, bool relu, const double* cMean, const double* cScale,
                    const double* cShift) {
  const Columns c(sh);
  const bool stream = streamsOutput(y, sh.K * sh.M);
  parallelFor(c.tasks, sh.K * sh.M, [&](int64_t t) {
    withFlag(relu, [&](auto r) { columnApply(x, y, sh, c, t, cMean, cScale, cShift, stream, r); });
  });
}

// ---- forward: y = (x - mean) * coefficient(γ) + β, coefficient(γ) = γ * q (train: q = invStd)
// or γ / q (inference: q = sqrt(runningVar + eps)), as js.ts, in double ----

template <typename T, typename Relu>
SIMDNORM_INLINE void writeSpan(const T* x, T* y, int64_t length, VDouble mu, VDouble scale, VDouble shift,
                               bool stream, Relu relu) {
  if constexpr (sizeof(T) == 4) {
    // Float data in float lanes (as writeElementsFloat, one scale and shift for the span).
    const double mean = mu[0];
    const float hi = static_cast<float>(mean), lo = static_cast<float>(mean - static_cast<double>(hi));
    const float fs = static_cast<float>(scale[0]), ft = static_cast<float>(shift[0]);
    if (__builtin_isfinite(hi) && __builtin_isfinite(lo) && __builtin_isfinite(fs) && __builtin_isfinite(ft)) {
      using VF = Vec<float>;
      constexpr int64_t L = lanes<float>();
      const VF vhi = splat<VF>(hi), vlo = splat<VF>(lo), vs = splat<VF>(fs), vt = splat<VF>(ft);
      withStream(stream && wholeLines(y, length), [&](auto S) SIMDNORM_LAMBDA_INLINE {
        auto body = [&](int64_t j, int64_t k) SIMDNORM_LAMBDA_INLINE {
          VF v = reluIf(relu, ((loadLanes(x + j, k) - vhi) - vlo) * vs + vt);
          if (k == L) {
            if constexpr (decltype(S)::value && kStreamLanes) streamStore(y + j, v);
            else store(y + j, v);
          } else {
            storePartial(y + j, v, k);
          }
        };
        int64_t j = 0;
        for (; j + L <= length; j += L) body(j, L);
        if (j < length) body(j, length - j);
      });
      return;
    }
  }
  withStream(stream && wholeLines(y, length), [&](auto S) SIMDNORM_LAMBDA_INLINE {
    forLanes(length, [&](int64_t j, int64_t k) SIMDNORM_LAMBDA_INLINE {
      const VDouble v = reluIf(relu, (loadDoubleLanes(x + j, k) - mu) * scale + shift);
      putLanes<decltype(S)::value>(y + j, v, k);
    });
  });
}

// y of a LayerNorm-shaped segment (γ/β by the element) for float data in float lanes, twice as
// many per vector: y = ((x - hi) - lo) * (γ * q) + β with the mean split into float hi + lo (as
// the BatchNorm kernels split it: x - hi is exact for x near the mean) and q = invStd (inference:
// 1 / sqrt(runningVar + eps)) in float; a few float roundings, far inside float's tolerance. Only
// for a finite split and q (else the double path keeps js.ts's IEEE results).
template <typename Relu>
SIMDNORM_INLINE void writeElementsFloat(const float* xs, float* ys, int64_t n, const float* g, const float* b,
                                        float hi, float lo, float fq, bool stream, Relu relu) {
  using VF = Vec<float>;
  constexpr int64_t L = lanes<float>();
  const VF vhi = splat<VF>(hi), vlo = splat<VF>(lo), vq = splat<VF>(fq);
  withStream(stream && wholeLines(ys, n), [&](auto S) SIMDNORM_LAMBDA_INLINE {
    auto body = [&](int64_t j, int64_t k) SIMDNORM_LAMBDA_INLINE {
      const VF gv = g ? loadLanes(g + j, k) : splat<VF>(1.0f);
      const VF bv = b ? loadLanes(b + j, k) : VF{};
      VF v = reluIf(relu, ((loadLanes(xs + j, k) - vhi) - vlo) * (gv * vq) + bv);
      if (k == L) {
        if constexpr (decltype(S)::value && kStreamLanes) streamStore(ys + j, v);
        else store(ys + j, v);
      } else {
        storePartial(ys + j, v, k);
      }
    };
    int64_t j = 0;
    for (; j + L <= n; j += L) body(j, L);
    if (j < n) body(j, n - j);
  });
}

template <typename T, typename Relu, bool Divide>
void applyStatistic(const T* x, T* y, const Shape& sh, int64_t k, double mean, double q, const T* gamma,
                    const T* beta, bool stream, Relu relu) {
  const int64_t group = sh.group(k);
  const VDouble mu = splat<VDouble>(mean), vq = splat<VDouble>(q);
  auto coefficient = [&](double g) { return Divide ? g / q : g * q; };
  const bool varies = (gamma != nullptr || beta != nullptr) && sh.varies();
  if (!varies) {
    const VDouble scale = splat<VDouble>(coefficient(gamma ? static_cast<double>(gamma[group]) : 1.0));
    const VDouble shift = splat<VDouble>(beta ? static_cast<double>(beta[group]) : 0.0);
    for (int64_t o = 0; o < sh.outer; o++) {
      const int64_t base = sh.segment(k, o);
      writeSpan(x + base, y + base, sh.inner, mu, scale, shift, stream, relu);
    }
    return;
  }
  if (sh.perElement()) {
    const T* g = gamma ? gamma + group : nullptr;
    const T* b = beta ? beta + group : nullptr;
    if constexpr (sizeof(T) == 4) {
      // inference: γ * (1 / q) for js.ts's γ / q (one more float rounding)
      const float hi = static_cast<float>(mean), fq = static_cast<float>(Divide ? 1 / q : q);
      const float lo = static_cast<float>(mean - static_cast<double>(hi));
      if (__builtin_isfinite(hi) && __builtin_isfinite(lo) && __builtin_isfinite(fq)) {
        for (int64_t o = 0; o < sh.outer; o++) {
          const int64_t base = sh.segment(k, o);
          writeElementsFloat(x + base, y + base, sh.inner, g, b, hi, lo, fq, stream, relu);
        }
        return;
      }
    }
    for (int64_t o = 0; o < sh.outer; o++) {
      const int64_t base = sh.segment(k, o);
      const T* xs = x + base;
      T* ys = y + base;
      withStream(stream && wholeLines(ys, sh.inner), [&](auto S) SIMDNORM_LAMBDA_INLINE {
        forLanes(sh.inner, [&](int64_t j, int64_t lanesK) SIMDNORM_LAMBDA_INLINE {
          const VDouble gv = g ? loadDoubleLanes(g + j, lanesK) : splat<VDouble>(1.0);
          const VDouble bv = b ? loadDoubleLanes(b + j, lanesK) : VDouble{};
          const VDouble v = reluIf(relu, (loadDoubleLanes(xs + j, lanesK) - mu) * (Divide ? gv / vq : gv * vq) + bv);
          putLanes<decltype(S)::value>(ys + j, v, lanesK);
        });
      });
    }
    return;
  }
  // Runs of affineRun elements with one γ/β entry each.
  for (int64_t o = 0; o < sh.outer; o++) {
    const int64_t base = sh.segment(k, o);
    for (int64_t j0 = 0, r = 0; j0 < sh.inner; j0 += sh.run, r++) {
      const int64_t a = group + r % sh.size, length = minOf(sh.run, sh.inner - j0);
      const double scale = coefficient(gamma ? static_cast<double>(gamma[a]) : 1.0);
      const double shift = beta ? static_cast<double>(beta[a]) : 0.0;
      if (length < kDoubleLanes) {
        for (int64_t j = base + j0, e = j + length; j < e; j++) {
          const double v = (static_cast<double>(x[j]) - mean) * scale + shift;
          y[j] = static_cast<T>(relu && v < 0 ? 0 : v);
        }
      } else {
        writeSpan(x + base + j0, y + base + j0, length, mu, splat<VDouble>(scale), splat<VDouble>(shift), stream,
                  relu);
      }
    }
  }
}

template <bool Divide, typename T>
void applyAny(const T* x, T* y, const Shape& sh, int64_t k, double mean, double q, const T* gamma, const T* beta,
              bool relu, bool stream) {
  withFlag(relu, [&](auto r) { applyStatistic<T, decltype(r), Divide>(x, y, sh, k, mean, q, gamma, beta, stream, r); });
}

// Every statistic's moments (columns path or statistic by statistic); work: columnMomentsWork.
template <typename T>
void momentsAll(const T* x, const Shape& sh, bool rms, double* mean, double* variance, double* work) {
  if (useColumns(sh)) return columnMoments(x, sh, rms, mean, variance, work);
  const Blocks blocks(sh);
  const Tasks tasks = statisticTasks(sh, INT64_MAX);
  parallelFor(tasks.count, sh.K * sh.M, [&](int64_t t) {
    for (int64_t k = t * tasks.per, end = minOf(sh.K, k + tasks.per); k < end; k++) {
      statistic(x, sh, blocks, k, rms, mean[k], variance[k]);
    }
  });
}

// ---- phases ----

int32_t noMemory() { return snError(SN_ERROR_NO_MEMORY, 0); }

template <typename T>
int32_t moments(const sn_norm& n) {
  const Shape sh(n);
  double *m, *v, *work;
  if (!carveScratch([&](Carver& s) {
        s.take(m, sh.K);
        s.take(v, sh.K);
        s.take(work, columnMomentsWork(sh));
      })) {
    return noMemory();
  }
  momentsAll(tensorOf<T>(n, SN_SLOT_X), sh, (n.flags & SN_FLAG_RMS) != 0, m, v, work);
  T* mean = outputOf<T>(n, SN_SLOT_MEAN);
  T* variance = outputOf<T>(n, SN_SLOT_VARIANCE);
  for (int64_t k = 0; k < sh.K; k++) {
    mean[k] = static_cast<T>(m[k]);
    variance[k] = static_cast<T>(v[k]);
  }
  return 0;
}

template <typename T>
int32_t train(const sn_norm& n) {
  const Shape sh(n);
  const Blocks blocks(sh);
  const bool rms = (n.flags & SN_FLAG_RMS) != 0, relu = (n.flags & SN_FLAG_RELU) != 0;
  T* runningMean = outputOf<T>(n, SN_SLOT_RUNNING_MEAN);
  const bool running = runningMean != nullptr && sh.K * sh.M > 0;
  const bool columns = useColumns(sh);
  const int64_t SW = columns ? sh.samples * sh.stats * sh.inner : 0;
  double *batchMean, *batchVar, *work, *columnWork, *cMean, *cScale, *cShift;
  if (!carveScratch([&](Carver& s) {
        s.take(batchMean, sh.K);
        s.take(batchVar, sh.K);
        s.take(work, running ? 2 * sh.stats : 0);
        s.take(columnWork, columnMomentsWork(sh));
        s.take(cMean, SW);
        s.take(cScale, SW);
        s.take(cShift, SW);
      })) {
    return noMemory();
  }
  const T* x = tensorOf<T>(n, SN_SLOT_X);
  const T* gamma = tensorOf<T>(n, SN_SLOT_GAMMA);
  const T* beta = tensorOf<T>(n, SN_SLOT_BETA);
  T* y = outputOf<T>(n, SN_SLOT_Y);
  T* mean = outputOf<T>(n, SN_SLOT_MEAN);
  T* invStd = outputOf<T>(n, SN_SLOT_INV_STD);
  const double eps = n.eps;
  if (columns) {
    momentsAll(x, sh, rms, batchMean, batchVar, columnWork);
    const int64_t W = sh.stats * sh.inner;
    for (int64_t k = 0; k < sh.K; k++) {
      const double inv = 1 / __builtin_sqrt(batchVar[k] + eps);
      mean[k] = static_cast<T>(batchMean[k]);
      invStd[k] = static_cast<T>(inv);
      const int64_t nn = k / sh.stats, s = k % sh.stats;
      for (int64_t j = 0; j < sh.inner; j++) {
        const int64_t p = s * sh.inner + j, a = columnAffine(sh, p), i = nn * W + p;
        cMean[i] = batchMean[k];
        cScale[i] = (gamma ? static_cast<double>(gamma[a]) : 1.0) * inv;
        cShift[i] = beta ? static_cast<double>(beta[a]) : 0.0;
      }
    }
    columnApplyAll(x, y, sh, relu, cMean, cScale, cShift);
  } else {
  const bool stream = streamsOutput(y, sh.K * sh.M);
  const Tasks tasks = statisticTasks(sh, INT64_MAX);
  parallelFor(tasks.count, sh.K * sh.M, [&](int64_t t) {
    for (int64_t k = t * tasks.per, end = minOf(sh.K, k + tasks.per); k < end; k++) {
      double mu, var;
      statistic(x, sh, blocks, k, rms, mu, var);
      const double inv = 1 / __builtin_sqrt(var + eps);
      batchMean[k] = mu;
      batchVar[k] = var;
      mean[k] = static_cast<T>(mu);
      invStd[k] = static_cast<T>(inv);
      if (sh.M > 0) applyAny<false>(x, y, sh, k, mu, inv, gamma, beta, relu, stream);
    }
  });
  }
  if (!running) return 0;
  return updateFromStatistics<T, double>(n, batchMean, batchVar, work) ? 1 : 0;
}

template <typename T>
int32_t infer(const sn_norm& n) {
  const Shape sh(n);
  const bool relu = (n.flags & SN_FLAG_RELU) != 0;
  const T* x = tensorOf<T>(n, SN_SLOT_X);
  const T* gamma = tensorOf<T>(n, SN_SLOT_GAMMA);
  const T* beta = tensorOf<T>(n, SN_SLOT_BETA);
  const T* runningMean = tensorOf<T>(n, SN_SLOT_RUNNING_MEAN);
  const T* runningVar = tensorOf<T>(n, SN_SLOT_RUNNING_VAR);
  T* y = outputOf<T>(n, SN_SLOT_Y);
  if (sh.M == 0) return 0;
  if (useColumns(sh)) {
    const int64_t W = sh.stats * sh.inner, SW = sh.samples * W;
    double *cMean, *cScale, *cShift;
    if (!carveScratch([&](Carver& s) {
          s.take(cMean, SW);
          s.take(cScale, SW);
          s.take(cShift, SW);
        })) {
      return noMemory();
    }
    for (int64_t i = 0; i < SW; i++) {
      const int64_t p = i % W, c = p / sh.inner, a = columnAffine(sh, p);
      const double root = __builtin_sqrt(static_cast<double>(runningVar[c]) + n.eps);
      cMean[i] = static_cast<double>(runningMean[c]);
      cScale[i] = (gamma ? static_cast<double>(gamma[a]) : 1.0) / root;
      cShift[i] = beta ? static_cast<double>(beta[a]) : 0.0;
    }
    columnApplyAll(x, y, sh, relu, cMean, cScale, cShift);
    return 0;
  }
  const bool stream = streamsOutput(y, sh.K * sh.M);
  const Tasks tasks = statisticTasks(sh, INT64_MAX);
  parallelFor(tasks.count, sh.K * sh.M, [&](int64_t t) {
    for (int64_t k = t * tasks.per, end = minOf(sh.K, k + tasks.per); k < end; k++) {
      const int64_t c = k % sh.stats;
      const double root = __builtin_sqrt(static_cast<double>(runningVar[c]) + n.eps);
      applyAny<true>(x, y, sh, k, static_cast<double>(runningMean[c]), root, gamma, beta, relu, stream);
    }
  });
  return 0;
}

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

template <typename T, bool Relu>
void backwardStatistic(const T* dy, const T* x, const T* y, const T* gamma, const Shape& sh, int64_t k, double mu,
                       double inv, bool training, bool rms, T* dx, double* partG, double* partB) {
  const int64_t group = sh.group(k);
  const VDouble vmu = splat<VDouble>(mu), vinv = splat<VDouble>(inv);
  const bool perElement = sh.varies() && sh.perElement();
  // Pass 1: sums. Per γ/β entry (partB: Σg, partG: Σg x̂), per statistic Σh, Σh x̂.
  GradVectors s;
  // A span of elements with one entry a (γ value ga): its sums.
  auto constantSpan = [&](int64_t start, int64_t length, double ga, int64_t a) {
    const VDouble vg = splat<VDouble>(ga);
    VDouble sg{}, sgx{};
    forLanes(length, [&](int64_t j, int64_t lanesK) SIMDNORM_LAMBDA_INLINE {
      const VDouble g = gradOf<T, Relu>(dy, y, start + j, lanesK);
      const VDouble xh = (loadDoubleLanes(x + start + j, lanesK) - vmu) * vinv;
      const VDouble h = g * vg;
      const VDouble gxh = g * xh, hxh = h * xh;
      // lanes past lanesK: g = 0 (and x̂ finite or not: masked)
      if (lanesK < kDoubleLanes) {
        sg += keepLanes(g, lanesK);
        sgx += keepLanes(gxh, lanesK);
        s.h += keepLanes(h, lanesK);
        s.hx += keepLanes(hxh, lanesK);
      } else {
        sg += g;
        sgx += gxh;
        s.h += h;
        s.hx += hxh;
      }
    });
    partB[a] += sumLanes(sg);
    partG[a] += sumLanes(sgx);
  };
  for (int64_t o = 0; o < sh.outer; o++) {
    const int64_t base = sh.segment(k, o);
    if (!sh.varies()) {
      constantSpan(base, sh.inner, gamma ? static_cast<double>(gamma[group]) : 1.0, group);
    } else if (perElement) {
      const T* g0 = gamma ? gamma + group : nullptr;
      double* pb = partB + group;
      double* pg = partG + group;
      forLanes(sh.inner, [&](int64_t j, int64_t lanesK) SIMDNORM_LAMBDA_INLINE {
        const VDouble g = gradOf<T, Relu>(dy, y, base + j, lanesK);
        const VDouble xh = (loadDoubleLanes(x + base + j, lanesK) - vmu) * vinv;
        const VDouble h = g0 ? g * loadDoubleLanes(g0 + j, lanesK) : g * splat<VDouble>(1.0);
        const VDouble gxh = g * xh, hxh = h * xh;
        storeLanesAs(pb + j, loadDoubleLanes(pb + j, lanesK) + g, lanesK);
        storeLanesAs(pg + j, loadDoubleLanes(pg + j, lanesK) + gxh, lanesK);
        if (lanesK < kDoubleLanes) {
          s.h += keepLanes(h, lanesK);
          s.hx += keepLanes(hxh, lanesK);
        } else {
          s.h += h;
          s.hx += hxh;
        }
      });
    } else {
      for (int64_t j0 = 0, r = 0; j0 < sh.inner; j0 += sh.run, r++) {
        const int64_t a = group + r % sh.size;
        constantSpan(base + j0, minOf(sh.run, sh.inner - j0), gamma ? static_cast<double>(gamma[a]) : 1.0, a);
      }
    }
  }
  const double sumH = sumLanes(s.h), sumHX = sumLanes(s.hx);
  if (dx == nullptr) return;  // sumsOnly
  // Pass 2: dx.
  const double m = static_cast<double>(sh.M), c = inv / m;
  const VDouble vm = splat<VDouble>(m), vc = splat<VDouble>(c), vsh = splat<VDouble>(rms ? 0.0 : sumH),
                vshx = splat<VDouble>(sumHX);
  auto dxOf = [&](VDouble g, VDouble xh, VDouble gv) SIMDNORM_LAMBDA_INLINE {
    const VDouble h = g * gv;
    return training ? vc * ((vm * h - vsh) - xh * vshx) : h * vinv;
  };
  auto dxSpan = [&](int64_t start, int64_t length, double ga) {
    const VDouble gv = splat<VDouble>(ga);
    forLanes(length, [&](int64_t j, int64_t lanesK) SIMDNORM_LAMBDA_INLINE {
      const VDouble g = gradOf<T, Relu>(dy, y, start + j, lanesK);
      const VDouble xh = (loadDoubleLanes(x + start + j, lanesK) - vmu) * vinv;
      storeLanesAs(dx + start + j, dxOf(g, xh, gv), lanesK);
    });
  };
  for (int64_t o = 0; o < sh.outer; o++) {
    const int64_t base = sh.segment(k, o);
    if (!sh.varies()) {
      dxSpan(base, sh.inner, gamma ? static_cast<double>(gamma[group]) : 1.0);
    } else if (perElement) {
      const T* g0 = gamma ? gamma + group : nullptr;
      forLanes(sh.inner, [&](int64_t j, int64_t lanesK) SIMDNORM_LAMBDA_INLINE {
        const VDouble g = gradOf<T, Relu>(dy, y, base + j, lanesK);
        const VDouble xh = (loadDoubleLanes(x + base + j, lanesK) - vmu) * vinv;
        const VDouble gv = g0 ? loadDoubleLanes(g0 + j, lanesK) : splat<VDouble>(1.0);
        storeLanesAs(dx + base + j, dxOf(g, xh, gv), lanesK);
      });
    } else {
      for (int64_t j0 = 0, r = 0; j0 < sh.inner; j0 += sh.run, r++) {
        const int64_t a = group + r % sh.size;
        dxSpan(base + j0, minOf(sh.run, sh.inner - j0), gamma ? static_cast<double>(gamma[a]) : 1.0);
      }
    }
  }
}

// Columns path of backward: per task and column Σg, Σg x̂, Σh, Σh x̂ (g, x̂, h as backwardStatistic).
template <typename T, bool Relu>
void columnGradSums(const T* dy, const T* x, const T* y, const Shape& sh, const Columns& c, int64_t t,
                    const double* cMean, const double* cInv, const double* cGamma, double* sums) {
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
void columnGrad(const T* dy, const T* x, const T* y, const Shape& sh, const Columns& c, int64_t t, bool training,
                const double* cMean, const double* cInv, const double* cGamma, const double* cSumH,
                const double* cSumHX, const double* cC, T* dx, bool stream) {
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
  const bool rms = (n.flags & SN_FLAG_RMS) != 0, training = (n.flags & SN_FLAG_TRAINING) != 0;
  const T* dy = tensorOf<T>(n, SN_SLOT_DY);
  const T* x = tensorOf<T>(n, SN_SLOT_X);
  const T* mean = tensorOf<T>(n, SN_SLOT_MEAN);
  const T* invStd = tensorOf<T>(n, SN_SLOT_INV_STD);
  const T* gamma = tensorOf<T>(n, SN_SLOT_GAMMA);
  const T* y = (n.flags & SN_FLAG_RELU) != 0 ? tensorOf<T>(n, SN_SLOT_Y) : nullptr;
  const double m = static_cast<double>(sh.M);
  for (int64_t i = 0; i < SW; i++) {
    const int64_t k = i / W * sh.stats + i % W / sh.inner, a = columnAffine(sh, i % W);
    cMean[i] = rms ? 0.0 : static_cast<double>(mean[k]);
    cInv[i] = static_cast<double>(invStd[k]);
    cGamma[i] = gamma ? static_cast<double>(gamma[a]) : 1.0;
    cC[i] = cInv[i] / m;
  }
  parallelFor(c.tasks, sh.K * sh.M, [&](int64_t t) {
    if (y || !kFlagCopies) columnGradSums<T, true>(dy, x, y, sh, c, t, cMean, cInv, cGamma, sums);
    else columnGradSums<T, false>(dy, x, y, sh, c, t, cMean, cInv, cGamma, sums);
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
    cSumH[i] = rms ? 0.0 : sumH[k];
    cSumHX[i] = sumHX[k];
  }
  T* dx = outputOf<T>(n, SN_SLOT_DX);
  const bool stream = dx != nullptr && streamsOutput(dx, sh.K * sh.M);
  if (dx != nullptr) parallelFor(c.tasks, sh.K * sh.M, [&](int64_t t) {  // null: sumsOnly
    if (y || !kFlagCopies) columnGrad<T, true>(dy, x, y, sh, c, t, training, cMean, cInv, cGamma, cSumH, cSumHX, cC, dx, stream);
    else columnGrad<T, false>(dy, x, y, sh, c, t, training, cMean, cInv, cGamma, cSumH, cSumHX, cC, dx, stream);
  });
  T* dgamma = outputOf<T>(n, SN_SLOT_DGAMMA);
  T* dbeta = outputOf<T>(n, SN_SLOT_DBETA);
  for (int64_t a = 0; a < affine; a++) {
    dgamma[a] = static_cast<T>(acc[a]);
    dbeta[a] = static_cast<T>(acc[affine + a]);
  }
  return 0;
}

// ---- the wide rows path of backward: LayerNorm / RMSNorm rows longer than kRowsMaxInner (one
// segment per statistic, γ/β by the element, one γ/β group), where a row and the per-task partial
// arrays no longer stay in cache. Σh, Σh x̂ per (row, piece) merged per row in piece order; then
// tasks of column strips sweep every row (row-major within the strip), writing dx and adding
// Σg, Σg x̂ to their own columns' dgamma/dbeta in row order: no partial arrays to merge. ----

constexpr int64_t kRowsMaxInner = 16384;      // longer rows: the wide path (Σh pieces this long)
constexpr int64_t kWideStrip = 2048;          // columns per task of the wide path's sweep

// The rows path; rows of at most kRowsMaxInner stay with backwardStatistic (row by row: both
// passes read the row from L1, the task's partials stay in L1 too), which measured as fast.
bool useRows(const Shape& sh) {
  return sh.outer == 1 && sh.groups == 1 && sh.size > 1 && sh.perElement() && sh.K > 0 && sh.inner > kRowsMaxInner;
}

// Per-row coefficients of rows from `first` on (row r at [r - first]): mean (rms 0), invStd,
// invStd / M, Σh (rms 0), Σh x̂.
struct RowCoefficients {
  const double *mu, *inv, *c, *sumH, *sumHX;
  int64_t first;
};

template <typename T, bool Relu>
SIMDNORM_INLINE void rowSums(const T* dy, const T* x, const T* y, const T* gamma, int64_t base, int64_t D, double mu,
                             double inv, double& sumH, double& sumHX) {
  const VDouble vmu = splat<VDouble>(mu), vinv = splat<VDouble>(inv);
  VDouble a1{}, a2{}, b1{}, b2{};
  auto terms = [&](int64_t j, int64_t k, VDouble& s1, VDouble& s2) SIMDNORM_LAMBDA_INLINE {
    const VDouble g = gradOf<T, Relu>(dy, y, base + j, k);
    const VDouble xh = (loadDoubleLanes(x + base + j, k) - vmu) * vinv;
    const VDouble h = gamma ? g * loadDoubleLanes(gamma + j, k) : g;
    const VDouble hx = h * xh;
    if (k < kDoubleLanes) {
      s1 += keepLanes(h, k);
      s2 += keepLanes(hx, k);
    } else {
      s1 += h;
      s2 += hx;
    }
  };
  int64_t j = 0;
  for (; j + 2 * kDoubleLanes <= D; j += 2 * kDoubleLanes) {
    terms(j, kDoubleLanes, a1, a2);
    terms(j + kDoubleLanes, kDoubleLanes, b1, b2);
  }
  for (; j + kDoubleLanes <= D; j += kDoubleLanes) terms(j, kDoubleLanes, a1, a2);
  if (j < D) terms(j, D - j, b1, b2);
  sumH = sumLanes(a1 + b1);
  sumHX = sumLanes(a2 + b2);
}

// dx of rows [r0, r1) and columns [j0, j1); Σg, Σg x̂ of each column over those rows added to
// pb[j], pg[j] in row order. Row-major over chunks of `chunk` columns (the chunk's partials stay
// in L1 while every row passes; each row's piece is contiguous for the prefetcher).
template <typename T, bool Relu, bool Training>
void sweepRows(const T* dy, const T* x, const T* y, const T* gamma, int64_t D, int64_t r0, int64_t r1, int64_t j0,
               int64_t j1, int64_t chunk, const RowCoefficients& rc, T* dx, double* pg, double* pb, bool stream) {
  const VDouble vm = splat<VDouble>(static_cast<double>(D));
  for (int64_t c0 = j0; c0 < j1; c0 += chunk) {
    const int64_t c1 = minOf(j1, c0 + chunk);
    for (int64_t r = r0; r < r1; r++) {
      const int64_t q = r - rc.first, base = r * D;
      const VDouble vinv = splat<VDouble>(rc.inv[q]), vmu = splat<VDouble>(rc.mu[q]), vc = splat<VDouble>(rc.c[q]),
                    vsh = splat<VDouble>(rc.sumH[q]), vshx = splat<VDouble>(rc.sumHX[q]);
      auto at = [&](int64_t j, int64_t k, auto S) SIMDNORM_LAMBDA_INLINE {
        const int64_t i = base + j;
        const VDouble g = gradOf<T, Relu>(dy, y, i, k);
        const VDouble xh = (loadDoubleLanes(x + i, k) - vmu) * vinv;
        const VDouble h = gamma ? g * loadDoubleLanes(gamma + j, k) : g;
        const VDouble v = Training ? vc * ((vm * h - vsh) - xh * vshx) : h * vinv;
        putLanes<decltype(S)::value>(dx + i, v, k);
        if (k == kDoubleLanes) {
          store(pb + j, load<VDouble>(pb + j) + g);
          store(pg + j, load<VDouble>(pg + j) + g * xh);
        } else {
          storeLanesAs(pb + j, loadDoubleLanes(pb + j, k) + g, k);
          storeLanesAs(pg + j, loadDoubleLanes(pg + j, k) + g * xh, k);
        }
      };
      withStream(stream && wholeLines(dx + base + c0, c1 - c0), [&](auto S) SIMDNORM_LAMBDA_INLINE {
        int64_t j = c0;
        for (; j + kDoubleLanes <= c1; j += kDoubleLanes) at(j, kDoubleLanes, S);
        if (j < c1) at(j, c1 - j, S);
      });
    }
  }
}

template <typename T>
int32_t rowsBackward(const sn_norm& n) {
  const Shape sh(n);
  const int64_t K = sh.K, D = sh.inner;
  const bool rms = (n.flags & SN_FLAG_RMS) != 0, training = (n.flags & SN_FLAG_TRAINING) != 0;
  const T* dy = tensorOf<T>(n, SN_SLOT_DY);
  const T* x = tensorOf<T>(n, SN_SLOT_X);
  const T* mean = tensorOf<T>(n, SN_SLOT_MEAN);
  const T* invStd = tensorOf<T>(n, SN_SLOT_INV_STD);
  const T* gamma = tensorOf<T>(n, SN_SLOT_GAMMA);
  const T* y = (n.flags & SN_FLAG_RELU) != 0 ? tensorOf<T>(n, SN_SLOT_Y) : nullptr;
  T* dx = outputOf<T>(n, SN_SLOT_DX);
  T* dgamma = outputOf<T>(n, SN_SLOT_DGAMMA);
  T* dbeta = outputOf<T>(n, SN_SLOT_DBETA);
  const double m = static_cast<double>(D);
  const bool stream = streamsOutput(dx, K * D);
  auto sweep = [&](int64_t r0, int64_t r1, int64_t j0, int64_t j1, int64_t chunk, const RowCoefficients& rc,
                   double* pg, double* pb) {
    if (y != nullptr || !kFlagCopies) {
      if (training) sweepRows<T, true, true>(dy, x, y, gamma, D, r0, r1, j0, j1, chunk, rc, dx, pg, pb, stream);
      else sweepRows<T, true, false>(dy, x, y, gamma, D, r0, r1, j0, j1, chunk, rc, dx, pg, pb, stream);
    } else {
      if (training) sweepRows<T, false, true>(dy, x, y, gamma, D, r0, r1, j0, j1, chunk, rc, dx, pg, pb, stream);
      else sweepRows<T, false, false>(dy, x, y, gamma, D, r0, r1, j0, j1, chunk, rc, dx, pg, pb, stream);
    }
  };
  auto sums = [&](int64_t r, int64_t j0, int64_t j1, double mu, double inv, double& sH, double& sHX) {
    const T* g = gamma ? gamma + j0 : nullptr;
    if (y != nullptr || !kFlagCopies) rowSums<T, true>(dy, x, y, g, r * D + j0, j1 - j0, mu, inv, sH, sHX);
    else rowSums<T, false>(dy, x, y, g, r * D + j0, j1 - j0, mu, inv, sH, sHX);
  };
  {
    const int64_t pieces = ceilDiv(D, kRowsMaxInner), pieceLength = ceilDiv(D, pieces);
    const int64_t strips = ceilDiv(D, kWideStrip);
    double *mu, *inv, *c, *sumH, *sumHX, *pieceH, *pieceHX, *pg, *pb;
    if (!carveScratch([&](Carver& s) {
          s.take(mu, K);
          s.take(inv, K);
          s.take(c, K);
          s.take(sumH, K);
          s.take(sumHX, K);
          s.take(pieceH, training ? K * pieces : 0);
          s.take(pieceHX, training ? K * pieces : 0);
          s.take(pg, D);
          s.take(pb, D);
        })) {
      return noMemory();
    }
    for (int64_t r = 0; r < K; r++) {
      mu[r] = rms ? 0.0 : static_cast<double>(mean[r]);
      inv[r] = static_cast<double>(invStd[r]);
      c[r] = inv[r] / m;
    }
    if (training) {
      parallelFor(K * pieces, K * D, [&](int64_t t) {
        const int64_t r = t / pieces, j0 = t % pieces * pieceLength;
        sums(r, j0, minOf(D, j0 + pieceLength), mu[r], inv[r], pieceH[t], pieceHX[t]);
      });
      for (int64_t r = 0; r < K; r++) {
        double a = 0, b = 0;
        for (int64_t p = 0; p < pieces; p++) {
          a += pieceH[r * pieces + p];
          b += pieceHX[r * pieces + p];
        }
        sumH[r] = rms ? 0.0 : a;
        sumHX[r] = b;
      }
    }
    const RowCoefficients rc{mu, inv, c, sumH, sumHX, 0};
    parallelFor(strips, K * D, [&](int64_t t) {
      const int64_t j0 = t * kWideStrip, j1 = minOf(D, j0 + kWideStrip);
      for (int64_t j = j0; j < j1; j++) pg[j] = pb[j] = 0;
      sweep(0, K, j0, j1, kWideStrip, rc, pg, pb);
      for (int64_t j = j0; j < j1; j++) {
        dgamma[j] = static_cast<T>(pg[j]);
        dbeta[j] = static_cast<T>(pb[j]);
      }
    });
    return 0;
  }
  return 0;
}

// ---- LayerNorm-shaped backward of float data in float lanes (one segment per statistic, γ/β by
// the element, one γ/β group), as the BatchNorm kernels' backward (backward.cpp) does it: Σh and
// Σh (x - mean) over float runs (accumulate, runs checked by GradSumsOk), then
// dx = h invStd - ((x - mean) c3 + c2) in float, c2 = invStd Σh / M (rms: 0), c3 = invStd Σh x̂ / M
// (= backwardStatistic's formula expanded). The per-column Σg, Σg x̂ of a task go in float over
// runs of kFloatRun rows (fixed by the geometry), each run added to the task's double partials
// where GradSumsOk holds for its vector of columns, else those columns of the run's rows again in
// double (so dx must not be dy: those rows' g are read again). A row whose sums or coefficients are not finite or not normal floats goes by
// backwardStatistic (in double; its partials straight to the double arrays). ----

bool useFloatRows(const Shape& sh) {
  return kFloatRuns && sh.outer == 1 && sh.groups == 1 && sh.varies() && sh.perElement() && sh.M > 0 &&
         sh.inner <= kRowsMaxInner;
}
// Floats of one per-column float partial array (whole vectors).
int64_t floatRowsPadded(const Shape& sh) { return ceilDiv(sh.inner, kFloatLanes) * kFloatLanes; }

// Whether v rounds to a normal float or is 0.
inline bool floatCoefficient(double v) {
  const double a = v < 0 ? -v : v;
  return v == 0 || (a >= 0x1p-126 && a <= 0x1.fffffep127);
}

// The row's Σh and Σh (x - mean) (mean mu: a float, also as muD).
template <bool Relu>
Sums rowGradSums(const float* dy, const float* x, const float* y, const float* g0, int64_t D, float mu) {
  const double muD = mu;
  Sums sums;
  auto term = [&](int64_t i, int64_t k) SIMDNORM_LAMBDA_INLINE {
    VDouble g = loadDoubleLanes(dy + i, k);
    if (masks<Relu>(y)) g = (VDouble)((VDoubleMask)g & (VDoubleMask)(loadDoubleLanes(y + i, k) > VDouble{}));
    const VDouble h = g0 ? g * loadDoubleLanes(g0 + i, k) : g;
    return Terms{h, h * (loadDoubleLanes(x + i, k) - muD)};
  };
  accumulate(D, 0, term, sums, [&](int64_t i) SIMDNORM_LAMBDA_INLINE {
    VFloat g = load<VFloat>(dy + i);
    if (masks<Relu>(y)) g = (VFloat)((VFloatMask)g & (VFloatMask)(load<VFloat>(y + i) > VFloat{}));
    const VFloat h = g0 ? g * load<VFloat>(g0 + i) : g;
    return FloatTerms{h, h * (load<VFloat>(x + i) - mu)};
  }, GradSumsOk{});
  return sums;
}

// Float per-column partials of a task's current run of rows.
struct FloatRun {
  float *g, *gx;    // Σg, Σg x̂ per column (padded to whole vectors)
  int64_t first;     // the run's first row
  uint64_t rows;     // bit r - first: row r went in float
};

// dx of row k in float, and its Σg, Σg x̂ added to run's float partials.
template <bool Relu, bool Training>
void rowGradFloat(const float* dy, const float* x, const float* y, const float* g0, int64_t D, float mu, float inv,
                  float c2, float c3, float* dx, const FloatRun& run, bool stream) {
  using VF = VFloat;
  constexpr int64_t L = kFloatLanes;
  const VF vmu = splat<VF>(mu), vinv = splat<VF>(inv), vc2 = splat<VF>(c2), vc3 = splat<VF>(c3);
  withStream(stream && wholeLines(dx, D), [&](auto S) SIMDNORM_LAMBDA_INLINE {
    auto body = [&](int64_t j, int64_t k) SIMDNORM_LAMBDA_INLINE {
      VF g = loadLanes(dy + j, k);
      if (masks<Relu>(y)) g = select(loadLanes(y + j, k) > VF{}, g, VF{});
      const VF h = g0 ? g * loadLanes(g0 + j, k) : g;
      const VF xm = loadLanes(x + j, k) - vmu;
      const VF v = Training ? mulAdd(h, vinv, -mulAdd(xm, vc3, vc2)) : h * vinv;
      if (k == L) {
        if constexpr (decltype(S)::value && kStreamLanes) streamStore(dx + j, v);
        else store(dx + j, v);
      } else {
        storePartial(dx + j, v, k);
      }
      store(run.g + j, load<VF>(run.g + j) + g);  // lanes past k: g = 0
      store(run.gx + j, load<VF>(run.gx + j) + g * (xm * vinv));
    };
    int64_t j = 0;
    for (; j + L <= D; j += L) body(j, L);
    if (j < D) body(j, D - j);
  });
}

// Adds the run's float partials to partG/partB (double), or where GradSumsOk fails for a vector
// of columns, those columns of the run's float rows in double; clears the float partials.
template <bool Relu>
void flushRun(const float* dy, const float* x, const float* y, const float* mean, const float* invStd, bool rms,
              int64_t D, FloatRun& run, double* partG, double* partB) {
  constexpr int64_t L = kFloatLanes;
  for (int64_t j = 0; j < D; j += L) {
    const VFloat sg = load<VFloat>(run.g + j), sgx = load<VFloat>(run.gx + j);
    if (allLanes(GradSumsOk{}(sg, sgx, 0))) {
      VDouble lo, hi;
      double gs[L], gxs[L];
      toDoubles(sg, lo, hi);
      store(gs, lo);
      store(gs + L / 2, hi);
      toDoubles(sgx, lo, hi);
      store(gxs, lo);
      store(gxs + L / 2, hi);
      for (int64_t c = j, e = minOf(D, j + L); c < e; c++) {
        partB[c] += gs[c - j];
        partG[c] += gxs[c - j];
      }
    } else {
      for (int64_t r = 0; r < 64; r++) {
        if ((run.rows >> r & 1) == 0) continue;
        const int64_t base = (run.first + r) * D;
        const double mu = rms ? 0.0 : static_cast<double>(mean[run.first + r]);
        const double inv = static_cast<double>(invStd[run.first + r]);
        for (int64_t c = j, e = minOf(D, j + L); c < e; c++) {
          const double g = y && !(y[base + c] > 0) ? 0.0 : static_cast<double>(dy[base + c]);
          partB[c] += g;
          partG[c] += g * ((static_cast<double>(x[base + c]) - mu) * inv);
        }
      }
    }
    store(run.g + j, VFloat{});
    store(run.gx + j, VFloat{});
  }
  run.rows = 0;
}

// Rows [k0, k1) of a float LayerNorm-shaped backward (useFloatRows), partials to partG/partB;
// floats: 2 * floatRowsPadded zeroed floats of scratch.
template <bool Relu>
void floatRowsTask(const float* dy, const float* x, const float* y, const float* gamma, const float* mean,
                   const float* invStd, const Shape& sh, int64_t k0, int64_t k1, bool training, bool rms, float* dx,
                   double* partG, double* partB, float* floats, bool stream) {
  const int64_t D = sh.inner;
  FloatRun run{floats, floats + floatRowsPadded(sh), k0, 0};
  const double m = static_cast<double>(D);
  for (int64_t k = k0; k < k1; k++) {
    if (k - run.first == kFloatRun) {
      flushRun<Relu>(dy, x, y, mean, invStd, rms, D, run, partG, partB);
      run.first = k;
    }
    const int64_t base = k * D;
    const float mu = rms ? 0.0f : mean[k], inv = invStd[k];
    const float* yr = y ? y + base : nullptr;
    double c2 = 0, c3 = 0;
    bool ok = floatCoefficient(inv) && __builtin_isfinite(mu);
    if (training && ok) {
      const Sums sums = rowGradSums<Relu>(dy + base, x + base, yr, gamma, D, mu);
      const double c = static_cast<double>(inv) / m, sumHX = static_cast<double>(inv) * sums.sumV();
      c2 = rms ? 0.0 : c * sums.sumU();
      c3 = static_cast<double>(inv) * c * sumHX;
      ok = __builtin_isfinite(sums.sumU()) && floatCoefficient(c2) && floatCoefficient(c3);
    }
    if (!ok) {
      backwardStatistic<float, Relu || !kFlagCopies>(dy, x, y, gamma, sh, k, mu, inv, training, rms, dx, partG, partB);
      continue;
    }
    run.rows |= uint64_t{1} << (k - run.first);
    if (training) {
      rowGradFloat<Relu, true>(dy + base, x + base, yr, gamma, D, mu, inv, static_cast<float>(c2),
                               static_cast<float>(c3), dx + base, run, stream);
    } else {
      rowGradFloat<Relu, false>(dy + base, x + base, yr, gamma, D, mu, inv, 0, 0, dx + base, run, stream);
    }
  }
  flushRun<Relu>(dy, x, y, mean, invStd, rms, D, run, partG, partB);
}

// ---- backward from given sums (flag givenSums; BatchNorm-shaped training backward, checked by
// sn_prepare): dgamma, dbeta hold Σg x̂ and Σg over a batch of M = sumsCount values per channel
// (e.g. every worker's shard); only dx = γ invStd / M · ((M g - Σg) - x̂ Σg x̂) is written, as
// js.ts. Element by element, so tasks of whole rows (outer) give the same bits for any thread
// count. ----

// Per channel in double: mean, invStd, c = γ invStd / M, Σg, Σg x̂ (5 arrays of `stats`).
struct GivenSums {
  const double *mu, *inv, *c, *sg, *sgx;
};

template <typename T, bool Relu>
void givenSumsRows(const T* dy, const T* x, const T* y, const Shape& sh, int64_t o0, int64_t o1, const GivenSums& p,
                   double m, T* dx) {
  const VDouble vm = splat<VDouble>(m);
  for (int64_t o = o0; o < o1; o++) {
    if (sh.inner == 1) {  // channels-last: a row holds every channel once
      const int64_t base = o * sh.stats;
      forLanes(sh.stats, [&](int64_t s, int64_t k) SIMDNORM_LAMBDA_INLINE {
        const VDouble g = gradOf<T, Relu>(dy, y, base + s, k);
        const VDouble xh = (loadDoubleLanes(x + base + s, k) - loadDoubleLanes(p.mu + s, k)) * loadDoubleLanes(p.inv + s, k);
        const VDouble v = loadDoubleLanes(p.c + s, k) *
                          ((vm * g - loadDoubleLanes(p.sg + s, k)) - xh * loadDoubleLanes(p.sgx + s, k));
        storeLanesAs(dx + base + s, v, k);
      });
      continue;
    }
    for (int64_t s = 0; s < sh.stats; s++) {
      const int64_t base = (o * sh.stats + s) * sh.inner;
      const VDouble mu = splat<VDouble>(p.mu[s]), inv = splat<VDouble>(p.inv[s]), c = splat<VDouble>(p.c[s]),
                    sg = splat<VDouble>(p.sg[s]), sgx = splat<VDouble>(p.sgx[s]);
      forLanes(sh.inner, [&](int64_t j, int64_t k) SIMDNORM_LAMBDA_INLINE {
        const VDouble g = gradOf<T, Relu>(dy, y, base + j, k);
        const VDouble xh = (loadDoubleLanes(x + base + j, k) - mu) * inv;
        storeLanesAs(dx + base + j, c * ((vm * g - sg) - xh * sgx), k);
      });
    }
  }
}

template <typename T>
int32_t givenSumsBackward(const sn_norm& n) {
  const Shape sh(n);
  const int64_t C = sh.stats;
  double* work;
  if (!carveScratch([&](Carver& s) { s.take(work, 5 * C); })) return noMemory();
  const T* mean = tensorOf<T>(n, SN_SLOT_MEAN);
  const T* invStd = tensorOf<T>(n, SN_SLOT_INV_STD);
  const T* gamma = tensorOf<T>(n, SN_SLOT_GAMMA);
  const T* sumGX = tensorOf<T>(n, SN_SLOT_DGAMMA);
  const T* sumG = tensorOf<T>(n, SN_SLOT_DBETA);
  const GivenSums p{work, work + C, work + 2 * C, work + 3 * C, work + 4 * C};
  const double m = n.sumsCount;
  for (int64_t s = 0; s < C; s++) {
    work[s] = static_cast<double>(mean[s]);
    work[C + s] = static_cast<double>(invStd[s]);
    work[2 * C + s] = ((gamma ? static_cast<double>(gamma[s]) : 1.0) * work[C + s]) / m;
    work[3 * C + s] = static_cast<double>(sumG[s]);
    work[4 * C + s] = static_cast<double>(sumGX[s]);
  }
  const T* dy = tensorOf<T>(n, SN_SLOT_DY);
  const T* x = tensorOf<T>(n, SN_SLOT_X);
  const T* y = (n.flags & SN_FLAG_RELU) != 0 ? tensorOf<T>(n, SN_SLOT_Y) : nullptr;
  T* dx = outputOf<T>(n, SN_SLOT_DX);
  const int64_t rowElements = maxOf(1, C * sh.inner);
  const int64_t rowsPerTask = maxOf(1, kTaskElements / rowElements);
  parallelFor(ceilDiv(sh.outer, rowsPerTask), sh.outer * rowElements, [&](int64_t t) {
    const int64_t o0 = t * rowsPerTask, o1 = minOf(sh.outer, o0 + rowsPerTask);
    if (y || !kFlagCopies) givenSumsRows<T, true>(dy, x, y, sh, o0, o1, p, m, dx);
    else givenSumsRows<T, false>(dy, x, y, sh, o0, o1, p, m, dx);
  });
  return 0;
}

// ---- backward's sums alone (flag sumsOnly, BatchNorm-shaped) outside the columns path: per
// channel dbeta = Σg and dgamma = invStd · Σg (x - mean) in double, each channel summed by one
// task in element order (two accumulators of whole vectors, then the tail): the same bits for any
// thread count. ----

template <typename T, bool Relu>
void channelGradSums(const T* dy, const T* x, const T* y, const Shape& sh, int64_t s, double mu, double& sumG,
                     double& sumGD) {
  const VDouble vmu = splat<VDouble>(mu);
  VDouble g0{}, g1{}, d0{}, d1{};
  for (int64_t o = 0; o < sh.outer; o++) {
    const int64_t base = (o * sh.stats + s) * sh.inner;
    int64_t j = 0;
    for (; j + 2 * kDoubleLanes <= sh.inner; j += 2 * kDoubleLanes) {
      const VDouble a = gradOf<T, Relu>(dy, y, base + j, kDoubleLanes);
      const VDouble b = gradOf<T, Relu>(dy, y, base + j + kDoubleLanes, kDoubleLanes);
      g0 += a;
      g1 += b;
      d0 += a * (loadDoubleLanes(x + base + j, kDoubleLanes) - vmu);
      d1 += b * (loadDoubleLanes(x + base + j + kDoubleLanes, kDoubleLanes) - vmu);
    }
    for (; j < sh.inner; j += kDoubleLanes) {
      const int64_t k = minOf(kDoubleLanes, sh.inner - j);
      const VDouble a = gradOf<T, Relu>(dy, y, base + j, k);
      const VDouble ad = a * (loadDoubleLanes(x + base + j, k) - vmu);
      g0 += k < kDoubleLanes ? keepLanes(a, k) : a;
      d0 += k < kDoubleLanes ? keepLanes(ad, k) : ad;
    }
  }
  sumG = sumLanes(g0 + g1);
  sumGD = sumLanes(d0 + d1);
}

template <typename T>
int32_t sumsOnlyBackward(const sn_norm& n) {
  const Shape sh(n);
  const T* dy = tensorOf<T>(n, SN_SLOT_DY);
  const T* x = tensorOf<T>(n, SN_SLOT_X);
  const T* mean = tensorOf<T>(n, SN_SLOT_MEAN);
  const T* invStd = tensorOf<T>(n, SN_SLOT_INV_STD);
  const T* y = (n.flags & SN_FLAG_RELU) != 0 ? tensorOf<T>(n, SN_SLOT_Y) : nullptr;
  T* dgamma = outputOf<T>(n, SN_SLOT_DGAMMA);
  T* dbeta = outputOf<T>(n, SN_SLOT_DBETA);
  parallelFor(sh.stats, sh.K * sh.M, [&](int64_t s) {
    double sumG, sumGD;
    if (y || !kFlagCopies) channelGradSums<T, true>(dy, x, y, sh, s, static_cast<double>(mean[s]), sumG, sumGD);
    else channelGradSums<T, false>(dy, x, y, sh, s, static_cast<double>(mean[s]), sumG, sumGD);
    dbeta[s] = static_cast<T>(sumG);
    dgamma[s] = static_cast<T>(static_cast<double>(invStd[s]) * sumGD);
  });
  return 0;
}

template <typename T>
int32_t backward(const sn_norm& n) {
  if ((n.flags & SN_FLAG_GIVEN_SUMS) != 0) return givenSumsBackward<T>(n);
  if ((n.flags & SN_FLAG_SUMS_ONLY) != 0 && !useColumns(Shape(n))) return sumsOnlyBackward<T>(n);
  if (useColumns(Shape(n))) return columnBackward<T>(n);
  if (useRows(Shape(n))) return rowsBackward<T>(n);
  const Shape sh(n);
  const int64_t affine = sh.affine();
  const Tasks tasks = statisticTasks(sh, maxOf(1, minOf(kMaxGradTasks, kMaxPartialDoubles / maxOf(1, 2 * affine))));
  T* dx = outputOf<T>(n, SN_SLOT_DX);
  // dx in place of dy: a run that fails GradSumsOk could no longer read its g (see floatRowsTask)
  const bool floatRows = sizeof(T) == 4 && dx != nullptr && static_cast<const void*>(dx) != n.tensor[SN_SLOT_DY] && useFloatRows(sh);
  const int64_t floatsPerTask = floatRows ? floatRowsPadded(sh) : 0;  // 2 arrays of floats: as doubles
  double *part, *floats;
  if (!carveScratch([&](Carver& s) {
        s.take(part, 2 * affine * tasks.count);
        s.take(floats, floatsPerTask * tasks.count);
      })) {
    return noMemory();
  }
  const bool rms = (n.flags & SN_FLAG_RMS) != 0, training = (n.flags & SN_FLAG_TRAINING) != 0;
  const T* dy = tensorOf<T>(n, SN_SLOT_DY);
  const T* x = tensorOf<T>(n, SN_SLOT_X);
  const T* mean = tensorOf<T>(n, SN_SLOT_MEAN);
  const T* invStd = tensorOf<T>(n, SN_SLOT_INV_STD);
  const T* gamma = tensorOf<T>(n, SN_SLOT_GAMMA);
  const T* y = (n.flags & SN_FLAG_RELU) != 0 ? tensorOf<T>(n, SN_SLOT_Y) : nullptr;
  T* dgamma = outputOf<T>(n, SN_SLOT_DGAMMA);
  T* dbeta = outputOf<T>(n, SN_SLOT_DBETA);
  const bool stream = dx != nullptr && streamsOutput(dx, sh.K * sh.M);
  parallelFor(tasks.count, sh.K * sh.M, [&](int64_t t) {
    double* partG = part + 2 * affine * t;
    double* partB = partG + affine;
    for (int64_t a = 0; a < 2 * affine; a++) partG[a] = 0;
    if constexpr (sizeof(T) == 4 && kFloatRuns) {
      if (floatRows) {
        float* f = reinterpret_cast<float*>(floats + floatsPerTask * t);
        for (int64_t i = 0; i < 2 * floatsPerTask; i++) f[i] = 0;
        const int64_t k0 = t * tasks.per, k1 = minOf(sh.K, k0 + tasks.per);
        if (y != nullptr) {  // both copies: LayerNorm's hot loops, no flag read per vector
          floatRowsTask<true>(dy, x, y, gamma, mean, invStd, sh, k0, k1, training, rms, dx, partG, partB, f, stream);
        } else {
          floatRowsTask<false>(dy, x, y, gamma, mean, invStd, sh, k0, k1, training, rms, dx, partG, partB, f, stream);
        }
        return;
      }
    }
    for (int64_t k = t * tasks.per, end = minOf(sh.K, k + tasks.per); k < end; k++) {
      if (sh.M == 0) continue;
      const double mu = rms ? 0.0 : static_cast<double>(mean[k]), inv = static_cast<double>(invStd[k]);
      if (y != nullptr || !kFlagCopies) backwardStatistic<T, true>(dy, x, y, gamma, sh, k, mu, inv, training, rms, dx, partG, partB);
      else backwardStatistic<T, false>(dy, x, y, gamma, sh, k, mu, inv, training, rms, dx, partG, partB);
    }
  });
  for (int64_t a = 0; a < affine; a++) {
    double g = 0, b = 0;
    for (int64_t t = 0; t < tasks.count; t++) {
      g += part[2 * affine * t + a];
      b += part[2 * affine * t + affine + a];
    }
    dgamma[a] = static_cast<T>(g);
    dbeta[a] = static_cast<T>(b);
  }
  return 0;
}

template <typename T>
int32_t update(const sn_norm& n) {
  double* work;
  if (!carveScratch([&](Carver& s) { s.take(work, 2 * n.stats); })) return noMemory();
  return updateFromStatistics<T, T>(n, tensorOf<T>(n, SN_SLOT_MEAN), tensorOf<T>(n, SN_SLOT_VARIANCE), work) ? 1 : 0;
}

template <typename T>
int32_t run(const sn_norm& n) {
  switch (n.phase) {
    case SN_PHASE_MOMENTS: return moments<T>(n);
    case SN_PHASE_TRAIN: return train<T>(n);
    case SN_PHASE_INFER: return infer<T>(n);
    case SN_PHASE_BACKWARD: return backward<T>(n);
    case SN_PHASE_UPDATE: return update<T>(n);
    default: return snError(SN_ERROR_UNSUPPORTED, 0);
  }
}

}  // namespace

template <typename T>
bool statisticMoments(const T* x, const sn_norm& n, bool rms, double* mean, double* variance) {
  const Shape sh(n);
  double* work;
  if (!carveScratch([&](Carver& s) { s.take(work, columnMomentsWork(sh)); })) return false;
  momentsAll(x, sh, rms, mean, variance, work);
  return true;
}

template <typename T, typename S>
bool updateFromStatistics(const sn_norm& n, const S* mean, const S* variance, double* work) {
  const int64_t stats = n.stats, K = n.samples * n.stats;
  double* m = work;
  double* v = work + stats;
  const double samples = static_cast<double>(n.samples);
  for (int64_t c = 0; c < stats; c++) m[c] = v[c] = 0;
  for (int64_t k = 0; k < K; k++) {
    m[k % stats] += static_cast<double>(mean[k]) / samples;
    v[k % stats] += static_cast<double>(variance[k]) / samples;
  }
  return updateRunning<T, double>(static_cast<T*>(n.tensor[SN_SLOT_RUNNING_MEAN]),
                                  static_cast<T*>(n.tensor[SN_SLOT_RUNNING_VAR]), m, v, stats, n.factor,
                                  n.varScale, (n.flags & SN_FLAG_SKIP_NON_FINITE) != 0);
}

int32_t executeGeneral(const sn_norm& n) { return n.dtype == SN_DTYPE_F32 ? run<float>(n) : run<double>(n); }

template bool statisticMoments<float>(const float*, const sn_norm&, bool, double*, double*);
template bool statisticMoments<double>(const double*, const sn_norm&, bool, double*, double*);
template bool updateFromStatistics<float, float>(const sn_norm&, const float*, const float*, double*);
template bool updateFromStatistics<float, double>(const sn_norm&, const double*, const double*, double*);
template bool updateFromStatistics<double, double>(const sn_norm&, const double*, const double*, double*);

}  // namespace SIMDNORM_ISA
}  // namespace simdnorm
