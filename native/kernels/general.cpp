// The general kernel of general.h: every phase over any descriptor, statistic by statistic.
#include "general.h"
#include "general_internal.h"

#include "lanes.h"
#include "parallel.h"
#include "reduce.h"
#include "rows.h"
#include "running.h"
#include "scratch.h"
#include "simd.h"
#include "store.h"
#include "tuning.h"

#include <type_traits>

namespace simdnorm {
namespace SIMDNORM_ISA {
namespace general {
namespace {

// ---- forward: y = (x - mean) * coefficient(γ) + β, coefficient(γ) = γ * q (train: q = invStd)
// or γ / q (inference: q = sqrt(runningVar + eps)), as js.ts, in double ----

template <typename T, typename Relu>
SIMDNORM_INLINE void writeSpan(const T* x, T* y, int64_t length, VDouble mu, VDouble scale, VDouble shift,
                               bool stream, bool ahead, Relu relu) {
  if constexpr (sizeof(T) == 4) {
    // Float data in float lanes (as writeElementsFloat, one scale and shift for the span).
    const double mean = mu[0];
    const float hi = static_cast<float>(mean), lo = static_cast<float>(mean - static_cast<double>(hi));
    const float fs = static_cast<float>(scale[0]), ft = static_cast<float>(shift[0]);
    if (__builtin_isfinite(hi) && __builtin_isfinite(lo) && __builtin_isfinite(fs) && __builtin_isfinite(ft)) {
      using VF = Vec<float>;
      constexpr int64_t L = lanes<float>();
      const VF vhi = splat<VF>(hi), vlo = splat<VF>(lo), vs = splat<VF>(fs), vt = splat<VF>(ft);
      forStreamRun<L>(y, length, stream, [&](int64_t j, int64_t k, auto S) SIMDNORM_LAMBDA_INLINE {
        if (ahead) prefetchAhead(x + j);  // the next statistic's values, while this one is written
        putVector<decltype(S)::value>(y + j, reluIf(relu, ((loadLanes(x + j, k) - vhi) - vlo) * vs + vt), k);
      });
      return;
    }
  }
  forStreamRun<kDoubleLanes>(y, length, stream, [&](int64_t j, int64_t k, auto S) SIMDNORM_LAMBDA_INLINE {
    putLanes<decltype(S)::value>(y + j, reluIf(relu, (loadDoubleLanes(x + j, k) - mu) * scale + shift), k);
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
  forStreamRun<L>(ys, n, stream, [&](int64_t j, int64_t k, auto S) SIMDNORM_LAMBDA_INLINE {
    const VF gv = g ? loadLanes(g + j, k) : splat<VF>(1.0f);
    const VF bv = b ? loadLanes(b + j, k) : VF{};
    putVector<decltype(S)::value>(ys + j, reluIf(relu, ((loadLanes(xs + j, k) - vhi) - vlo) * (gv * vq) + bv), k);
  });
}

template <typename T, typename Relu, bool Divide>
void applyStatistic(const T* x, T* y, const Shape& sh, int64_t k, double mean, double q, const T* gamma,
                    const T* beta, bool stream, Relu relu) {
  const int64_t group = sh.group(k);
  const VDouble mu = splat<VDouble>(mean), vq = splat<VDouble>(q);
  auto coefficient = [&](double g) { return Divide ? g / q : g * q; };
  const bool varies = (gamma != nullptr || beta != nullptr) && sh.varies();
  const bool ahead = readsStatisticsAhead<T>(sh);  // the writes read the next statistic's values ahead
  if (!varies) {
    const VDouble scale = splat<VDouble>(coefficient(gamma ? static_cast<double>(gamma[group]) : 1.0));
    const VDouble shift = splat<VDouble>(beta ? static_cast<double>(beta[group]) : 0.0);
    for (int64_t o = 0; o < sh.outer; o++) {
      const int64_t base = sh.segment(k, o);
      writeSpan(x + base, y + base, sh.inner, mu, scale, shift, stream, ahead, relu);
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
      forStreamRun<kDoubleLanes>(ys, sh.inner, stream, [&](int64_t j, int64_t lanesK, auto S) SIMDNORM_LAMBDA_INLINE {
        const VDouble gv = g ? loadDoubleLanes(g + j, lanesK) : splat<VDouble>(1.0);
        const VDouble bv = b ? loadDoubleLanes(b + j, lanesK) : VDouble{};
        const VDouble v = reluIf(relu, (loadDoubleLanes(xs + j, lanesK) - mu) * (Divide ? gv / vq : gv * vq) + bv);
        putLanes<decltype(S)::value>(ys + j, v, lanesK);
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
                  ahead, relu);
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
  if (rowsForwardShaped(n)) return rowsTrainForward(n);  // LayerNorm / RMSNorm float rows: rows.h
  const Shape sh(n);
  const Blocks blocks(sh);
  const bool rms = (n.flags & SN_FLAG_RMS) != 0, relu = (n.flags & SN_FLAG_RELU) != 0;
  T* runningMean = outputOf<T>(n, SN_SLOT_RUNNING_MEAN);
  const bool running = runningMean != nullptr && sh.K * sh.M > 0;
#if defined(__wasm__)
  const bool samples = false, columns = useColumns(sh);
#else
  const bool samples = sizeof(T) == 4 && useSampleColumns(sh);
  const bool columns = samples || useColumns(sh);
#endif
  const int64_t SW = columns ? sh.samples * sh.stats * sh.inner : 0;
  double *batchMean, *batchVar, *work, *columnWork, *cMean, *cScale, *cShift;
  if (!carveScratch([&](Carver& s) {
        s.take(batchMean, sh.K);
        s.take(batchVar, sh.K);
        s.take(work, running ? 2 * sh.stats : 0);
        s.take(columnWork, samples ? sampleColumnsWork(sh) : columnMomentsWork(sh));
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
  if (samples) {
#if !defined(__wasm__)
    if constexpr (sizeof(T) == 4) columnTrainFloat(n, sh, batchMean, batchVar, columnWork, cMean, cScale, cShift);
#endif
  } else if (columns) {
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
}  // namespace general

using general::Shape;

template <typename T>
bool statisticMoments(const T* x, const sn_norm& n, bool rms, double* mean, double* variance) {
  const Shape sh(n);
  double* work;
  if (!carveScratch([&](Carver& s) { s.take(work, general::columnMomentsWork(sh)); })) return false;
  general::momentsAll(x, sh, rms, mean, variance, work);
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

// In WASM compiled for size (-378 bytes gzipped of the module's budget, wasm/README.md): what it
// inlines is the phases' set-up and per-statistic work; the element loops run in parallelFor's
// tasks and columns.cpp / rows.cpp, functions of their own, optimized for speed.
#if defined(__wasm__)
__attribute__((minsize))
#endif
int32_t executeGeneral(const sn_norm& n) {
  return n.dtype == SN_DTYPE_F32 ? general::run<float>(n) : general::run<double>(n);
}

template bool statisticMoments<float>(const float*, const sn_norm&, bool, double*, double*);
template bool statisticMoments<double>(const double*, const sn_norm&, bool, double*, double*);
template bool updateFromStatistics<float, float>(const sn_norm&, const float*, const float*, double*);
template bool updateFromStatistics<float, double>(const sn_norm&, const double*, const double*, double*);
template bool updateFromStatistics<double, double>(const sn_norm&, const double*, const double*, double*);

}  // namespace SIMDNORM_ISA
}  // namespace simdnorm
