// Forward normalisation, one element-wise formula with four per-channel coefficients:
//   y = ((x - hi) - lo) * scale + shift, then + z (the residual, rounded in T), then max(y, 0) when relu
// Training:  mean, var = channel moments of x, invStd = 1/sqrt(var + eps),
//            hi + lo = mean split in two T (x - mean keeps its precision at 1e4 +- 1),
//            scale = gamma * invStd, shift = beta (where lo is below float's normal range, lo = 0
//            and shift = beta - lo * scale: storeCoefficients).
// Inference: hi = runningMean, lo = 0, scale = gamma / sqrt(runningVar + eps), shift = beta.
// Not x * scale + (beta - mean * scale): in float that loses everything for a mean of 1e7.
// A channel with a non-finite mean, scale or shift (+-Inf or NaN in x or the parameters), and a
// float channel whose scale is not a normal float (gamma ~ 1e37: it overflows while y does not),
// is computed as (x - mean) * scale + beta in double instead (normalizeChannel, fallback.h's
// plainChannel); the other channels are untouched. Per-channel work runs over chunks of channels
// in double vectors (TrainChannels, inferChannels).
#include <cstdlib>

#include "batchnorm.h"
#include "fallback.h"
#include "lanes.h"
#include "parallel.h"
#include "phases.h"
#include "plan.h"
#include "reduce.h"
#include "running.h"
#include "scratch.h"
#include "simd.h"
#include "store.h"
#include "tuning.h"

namespace simdnorm {
namespace SIMDNORM_ISA {

namespace {

// Residual: z (the residual, README "BatchNorm variants") added to the normalised value in T.
template <typename T, typename Relu, typename Residual>
struct Normalize {
  const T *x, *z;
  Relu relu;  // store.h's flag types
  Residual residual;
  Vec<T> operator()(int64_t offset, int64_t k, const Vec<T>* p) const {
    Vec<T> y = mulAdd((loadLanes(x + offset, k) - p[0]) - p[1], p[2], p[3]);
    if (residual) y = y + loadLanes(z + offset, k);
    return reluIf(relu, y);
  }
};

// The same where lo is 0 (inference: the mean is runningMean itself): the same bits, one load
// and one subtraction less per vector (the rows path loads every coefficient per vector).
template <typename T, typename Relu, typename Residual>
struct NormalizeNoLo {
  const T *x, *z;
  Relu relu;
  Residual residual;
  Vec<T> operator()(int64_t offset, int64_t k, const Vec<T>* p) const {
    Vec<T> y = mulAdd(loadLanes(x + offset, k) - p[0], p[2], p[3]);
    if (residual) y = y + loadLanes(z + offset, k);
    return reluIf(relu, y);
  }
};

// Coefficients of a chunk of channels, one array per coefficient (hi, lo, scale, shift).
template <typename T>
struct ChunkCoefficients {
  T v[4][kChannelChunk];
  T* at(int q) { return v[q]; }
};

// hi, lo, scale, shift of channels from their mean, scale and shift in double (lanes of a chunk):
// the identity (y = x exactly, -0 included) where wide is set, for normalizeChannel to read y.
// MeanIsT: the mean is a value of T (inference's runningMean): hi is the mean and lo is 0.
// Where lo is not 0 but below float's normal range, lo as a float keeps only multiples of the
// subnormal spacing 2^-149: ((x - hi) - lo) * scale would be off by up to half a spacing times
// |scale| (x = (i % 4) * 1e-42 with eps 1e-5: 158 spacings, 7.6e-4 of y's RMS). There lo * scale
// goes into the shift instead, (x - hi) * scale + (shift - lo * scale), whose rounding costs y half
// a spacing. A nonzero lo is a multiple of the double ulp of the mean, so below 2^-126 only where
// |mean| < 2^-74: normal data pays one comparison of |mean| (already taken for plainLanes) per
// vector of channels (the per-channel work is most of the time where channels hold a few values,
// NC [2, 1048576]). Never for double: hi is the mean, lo is 0.
template <typename T, bool MeanIsT>
SIMDNORM_INLINE void storeCoefficients(T* const* coef, int64_t j, int64_t k, VDouble mean, VDouble scale,
                                       VDouble shift, VDoubleMask wide) {
  VDouble hi = mean, lo{};
  if constexpr (!MeanIsT && sizeof(T) == sizeof(float)) {
    hi = roundTo<T>(mean);
    lo = mean - hi;
    if (__builtin_expect(anyLane(magnitude(mean) < 0x1p-74), 0)) {
      const VDouble size = magnitude(lo);
      const VDoubleMask fold = (size < 0x1p-126) & (size != VDouble{});
      shift = select(fold, shift - lo * scale, shift);
      lo = select(fold, VDouble{}, lo);
    }
  }
  storeLanesAs(coef[0] + j, select(wide, VDouble{}, hi), k);
  storeLanesAs(coef[1] + j, select(wide, VDouble{}, lo), k);
  storeLanesAs(coef[2] + j, select(wide, splat<VDouble>(1.0), scale), k);
  storeLanesAs(coef[3] + j, select(wide, splat<VDouble>(-0.0), shift), k);
}

// fallback.h's plainChannel<T>({}, {mean, shift}, {scale}) of each lane: computed by
// normalizeChannel (a non-finite or too large mean or shift, a scale outside the vector range).
template <typename T>
SIMDNORM_INLINE VDoubleMask plainLanes(VDouble mean, VDouble shift, VDouble scale) {
  return offsetTooLargeLanes<T>(mean) | offsetTooLargeLanes<T>(shift) | scaleOutsideLanes<T>(scale);
}

// Lanes [ca + j, ca + j + k) of an optional per-channel parameter, as doubles (absent: fill).
template <typename T>
SIMDNORM_INLINE VDouble parameterLanes(const T* p, int64_t c, int64_t k, double fill) {
  return p ? loadDoubleLanes(p + c, k) : splat<VDouble>(fill);
}

// The common tail of the per-channel parts below, for lanes j .. j+k-1 (channels c ..): the
// shift (beta), whether each channel is computed plainly (wide), and the vector formula's
// coefficients coef[q][j]. Returns whether a lane is wide.
template <typename T, bool MeanIsT = false>
SIMDNORM_INLINE bool setCoefficients(const T* beta, int64_t c, int64_t j, int64_t k, VDouble mu, VDouble sc,
                                     T* const* coef, bool* wide) {
  const VDouble shift = parameterLanes(beta, c, k, 0.0);
  const VDoubleMask w = plainLanes<T>(mu, shift, sc);
  storeCoefficients<T, MeanIsT>(coef, j, k, mu, sc, shift, w);
  return storeFlags(wide + j, w, k);
}

// 1 / sqrt(v) for an invStd of type T (simd.h's invSqrtForFloat for float).
template <typename T>
SIMDNORM_INLINE VDouble invSqrtLanes(VDouble v) {
  if constexpr (sizeof(T) == sizeof(float)) return invSqrtForFloat(v);
  return splat<VDouble>(1.0) / sqrtLanes(v);
}

// The per-channel part of training, for the chunk [ca, ca + n) from its moments:
//   var = m2 / M, invStd = 1 / sqrt(var + eps), scale = gamma * invStd,
// written to mean/invStd[ca + j], batchMean/batchVar/scale[j], wide[j] and the coefficients
// coef[q][j]. Returns whether a channel is wide. (Every channel has M = m.n values; var is
// m2 * (1 / M), within an ulp of the quotient: a division per channel costs as much as the rest.)
// With renorm (phases.h's Renorm): first r and d of each channel from its batch statistics and
// the running ones (read before this chunk's running update), and gamma' = gamma * r, beta' =
// beta + gamma * d into gammaPrime/betaPrime (per channel, rounded to T, as the façade's
// composition of phases did: README "BatchNorm variants"), which then stand for gamma and beta.
template <typename T>
struct TrainChannels {
  const T *gamma, *beta;
  double eps, inverseCount;  // 1 / M
  T *mean, *invStd;
  const Renorm<T>* renorm = nullptr;
  T *gammaPrime = nullptr, *betaPrime = nullptr;
  // The beta the output pass reads (also for the wide channels).
  const T* shift() const { return renorm ? betaPrime : beta; }
  void renormChannels(int64_t ca, int64_t n, const ChunkMoments& m, const double* batchVar) const {
    const Renorm<T>& q = *renorm;
    for (int64_t j = 0; j < n; j++) {
      const int64_t c = ca + j;
      const double sigma = __builtin_sqrt(static_cast<double>(q.runningVar[c]) + eps);
      const double sigmaB = __builtin_sqrt(batchVar[j] + eps);
      const double rv = sigmaB / sigma, dv = (m.mean[j] - static_cast<double>(q.runningMean[c])) / sigma;
      // clip, NaN staying NaN (a channel with NaN statistics normalises to NaN, as BatchNorm's)
      const T r = static_cast<T>(rv < 1 / q.rmax ? 1 / q.rmax : rv > q.rmax ? q.rmax : rv);
      const T d = static_cast<T>(dv < -q.dmax ? -q.dmax : dv > q.dmax ? q.dmax : dv);
      q.r[c] = r;
      q.d[c] = d;
      const double g = gamma ? static_cast<double>(gamma[c]) : 1.0, b = beta ? static_cast<double>(beta[c]) : 0.0;
      gammaPrime[c] = static_cast<T>(g * static_cast<double>(r));
      // d = 0 keeps beta as it is (gamma * 0 is NaN for an infinite gamma; beta + 0 turns -0 into +0)
      betaPrime[c] = d == 0 ? static_cast<T>(b) : static_cast<T>(b + g * static_cast<double>(d));
    }
  }
  bool operator()(int64_t ca, int64_t n, const ChunkMoments& m, T* const* coef, bool* wide, double* batchMean,
                  double* batchVar, double* scale) const {
    bool any = false;
    // The square roots first, in a loop of their own: independent, they pipeline.
    forLanes(n, [&](int64_t j, int64_t k) SIMDNORM_LAMBDA_INLINE {
      const VDouble var = load<VDouble>(m.m2 + j) * inverseCount;
      storeLanesAs(batchVar + j, var, k);
      storeLanesAs(scale + j, invSqrtLanes<T>(var + eps), k);  // invStd, for now
    });
    if (renorm) renormChannels(ca, n, m, batchVar);
    const T* scaleBy = renorm ? gammaPrime : gamma;
    const T* shiftBy = shift();
    forLanes(n, [&](int64_t j, int64_t k) SIMDNORM_LAMBDA_INLINE {
      const int64_t c = ca + j;
      const VDouble mu = load<VDouble>(m.mean + j), inv = loadDoubleLanes(scale + j, k);
      const VDouble sc = parameterLanes(scaleBy, c, k, 1.0) * inv;
      storeLanesAs(mean + c, mu, k);
      storeLanesAs(invStd + c, inv, k);
      storeLanesAs(batchMean + j, mu, k);
      storeLanesAs(scale + j, sc, k);
      any |= setCoefficients(shiftBy, c, j, k, mu, sc, coef, wide);
    });
    return any;
  }
};

// The same for inference: mean = runningMean, scale = gamma * (1 / sqrt(runningVar + eps)).
template <typename T>
bool inferChannels(const T* runningMean, const T* runningVar, const T* gamma, const T* beta, double eps, int64_t ca,
                   int64_t n, T* const* coef, bool* wide, double* mean, double* scale) {
  bool any = false;
  // The divisions and square roots first, in a loop of their own: independent, they pipeline.
  forLanes(n, [&](int64_t j, int64_t k) SIMDNORM_LAMBDA_INLINE {
    const int64_t c = ca + j;
    storeLanesAs(scale + j, parameterLanes(gamma, c, k, 1.0) * invSqrtLanes<T>(loadDoubleLanes(runningVar + c, k) + eps), k);
  });
  forLanes(n, [&](int64_t j, int64_t k) SIMDNORM_LAMBDA_INLINE {
    const int64_t c = ca + j;
    const VDouble mu = loadDoubleLanes(runningMean + c, k), sc = loadDoubleLanes(scale + j, k);
    storeLanesAs(mean + j, mu, k);
    any |= setCoefficients<T, true>(beta, c, j, k, mu, sc, coef, wide);
  });
  return any;
}

// y = (x - mean) * scale + shift over channel c, in double (the reference's formula), then relu.
// Per element read then write: src may be y.
template <typename T>
void normalizeChannel(const T* src, const Plan& plan, int64_t c, double mean, double scale, double shift,
                      bool relu, T* y) {
  forEachOfChannel(plan.g, c, [&](int64_t i) {
    const double v = (static_cast<double>(src[i]) - mean) * scale + shift;
    y[i] = static_cast<T>(relu && v < 0 ? 0 : v);
  });
}

// The same with a residual z: that value rounded to T plus z in T, then relu. Per element read
// then write: src and z may be y.
template <typename T>
void normalizeChannel(const T* src, const Plan& plan, int64_t c, double mean, double scale, double shift,
                      bool relu, T* y, const T* z) {
  forEachOfChannel(plan.g, c, [&](int64_t i) {
    const double v = (static_cast<double>(src[i]) - mean) * scale + shift;
    const T sum = static_cast<T>(static_cast<T>(v) + z[i]);
    y[i] = relu && sum < 0 ? T(0) : sum;
  });
}

// With a residual and a wide channel anywhere: every channel from x and z by normalizeChannel
// (the vector pass would need y for the wide channels, and y may be x or z).
template <typename T>
void normalizeAllPlain(const T* x, const Plan& plan, const double* mean, const double* scale, const T* shift,
                       bool relu, T* y, const T* z) {
  parallelFor(plan.g.channels, plan.g.elements(), [&](int64_t c) {
    normalizeChannel(x, plan, c, mean[c], scale[c], shift ? static_cast<double>(shift[c]) : 0.0, relu, y, z);
  });
}

// After the vector formula without relu (the identity on the wide channels): channel c by
// normalizeChannel from y if wide, else relu over it (max(y, 0) of the rounded y: the same bits
// as the vector path's relu).
template <typename T>
void finishChannel(const Plan& plan, int64_t c, bool wide, double mean, double scale, const T* beta, bool relu, T* y) {
  if (wide) {
    normalizeChannel(y, plan, c, mean, scale, beta ? static_cast<double>(beta[c]) : 0.0, relu, y);
  } else if (relu) {
    forEachOfChannel(plan.g, c, [&](int64_t i) {
      if (y[i] < 0) y[i] = 0;
    });
  }
}

template <typename T>
void finishWide(const Plan& plan, const bool* wide, const double* mean, const double* scale, const T* beta,
                bool relu, T* y) {
  parallelFor(plan.g.channels, plan.g.elements(),
              [&](int64_t c) { finishChannel(plan, c, wide[c], mean[c], scale[c], beta, relu, y); });
}

template <typename T>
bool streams(const Plan& plan) {
  return plan.g.elements() * static_cast<int64_t>(sizeof(T)) >= kStreamBytes;
}

// y from per-channel coefficients, on the plan's path (columns: rows-path coefficients per column,
// coef: planes-path coefficients per channel). Last task first: after a statistics pass, the end
// of x is what is still in cache. Flags: how the loops take relu and the residual (store.h's
// FlagAndCopies for inference, whose output loop is the whole call: in WASM a copy per residual
// value; FlagAndNativeCopies for training, whose residual WASM adds in a pass of its own; the
// planes path takes their planes<T>).
template <typename T, template <typename, typename, typename> class Op, typename Flags>
void normalizeAll(const T* x, const Plan& plan, const Coefficients<T>* coef, bool relu, T* y,
                  T* const* columns, const T* z) {
  const bool stream = streams<T>(plan);
  if (plan.rows) {
    Flags::apply(relu, z != nullptr, [&](auto useRelu, auto useZ) {
      const Op<T, decltype(useRelu), decltype(useZ)> op{x, z, useRelu, useZ};
      parallelFor(plan.rowTasks(), plan.g.elements(), [&](int64_t t) {
        applyRows(y, plan, plan.rowTasks() - 1 - t, columns, stream, op);
      });
    });
    return;
  }
  Flags::template planes<T>(relu, z != nullptr, [&](auto useRelu, auto useZ) {
    const Op<T, decltype(useRelu), decltype(useZ)> op{x, z, useRelu, useZ};
    const int64_t last = plan.orderTasks() - 1;
    parallelFor(last + 1, plan.g.elements(), [&](int64_t t) { applyInOrder(y, plan, last - t, coef, stream, op); });
  });
}

template <typename T>
void takeColumns(Carver& s, const Plan& plan, T** columns) {
  for (int q = 0; q < 4; q++) s.take(columns[q], plan.rows && !plan.fusedRows ? columnEntries(plan, lanes<T>()) : 0);
}

// Per-channel coefficients of a chunk of channels [ca, ca + n) to where the output pass reads
// them: the rows path's column arrays, or the planes path's per-channel array.
template <typename T>
void placeCoefficients(const Plan& plan, int64_t ca, int64_t n, ChunkCoefficients<T>& chunk, T* const* columns,
                       Coefficients<T>* coef) {
  if (plan.rows) {
    const T* const value[4] = {chunk.at(0), chunk.at(1), chunk.at(2), chunk.at(3)};
    return spreadChannels(plan, ca, n, value, columns, 0);
  }
  for (int64_t j = 0; j < n; j++) {
    for (int q = 0; q < 4; q++) coef[ca + j].v[q] = chunk.v[q][j];
  }
}

// Per tile of fusedRows: the wide channels of the tile and their double coefficients.
struct TileChannels {
  bool wide[kChannelChunk];
  double mean[kChannelChunk], scale[kChannelChunk];
};

// fusedRows: one task per tile, which computes its channels' coefficients with
// coefficients(t, ca, n, coef, wide, mean, scale) (the tile's channels [ca, ca + n), one chunk;
// returns whether one is wide), then their y. With a wide channel in the tile, the vector pass
// goes without relu and the tile's channels are finished by finishChannel. Flags as normalizeAll's.
template <typename Flags, typename T, typename ChannelCoefficients>
void normalizeTiles(const T* x, const Plan& plan, const T* beta, bool relu, T* y,
                    const ChannelCoefficients& coefficients, const T* z) {
  const bool stream = streams<T>(plan);
  parallelFor(plan.tiles, plan.g.elements(), [&](int64_t t) {
    const int64_t c0 = t * plan.tileColumns, c1 = minOf(plan.period, c0 + plan.tileColumns);
    const int64_t ca = plan.firstChannel(t), n = plan.firstChannel(t + 1) - ca;
    ChunkCoefficients<T> chunk;  // per channel; per column too when the columns are the channels
    T cols[4][kTileColumns];
    T* const perChannel[4] = {chunk.at(0), chunk.at(1), chunk.at(2), chunk.at(3)};
    T* const perColumn[4] = {cols[0], cols[1], cols[2], cols[3]};
    TileChannels tile;
    const bool anyWide = coefficients(t, ca, n, perChannel, tile.wide, tile.mean, tile.scale);
    if (anyWide && z != nullptr) {  // the tile's channels from x and z (normalizeAllPlain)
      for (int64_t j = 0; j < n; j++) {
        normalizeChannel(x, plan, ca + j, tile.mean[j], tile.scale[j], beta ? static_cast<double>(beta[ca + j]) : 0.0,
                         relu, y, z);
      }
      return;
    }
    if (!plan.columnIsChannel()) spreadChannels(plan, ca, n, static_cast<const T* const*>(perChannel), perColumn, c0);
    Flags::apply(relu && !anyWide, z != nullptr, [&](auto useRelu, auto useZ) {
      applyTile(y, plan, c0, c1, plan.columnIsChannel() ? perChannel : perColumn, stream,
                Normalize<T, decltype(useRelu), decltype(useZ)>{x, z, useRelu, useZ});
    });
    if (!anyWide) return;
    for (int64_t j = 0; j < n; j++) finishChannel(plan, ca + j, tile.wide[j], tile.mean[j], tile.scale[j], beta, relu, y);
  });
}

// y = y + z in T, then relu, over n elements (WASM training's residual pass: trainForward).
template <typename T>
void addResidual(T* y, const T* z, int64_t n, bool relu) {
  constexpr int64_t L = lanes<T>();
  withFlag(relu, [&](auto useRelu) {
    parallelFor(ceilDiv(n, kBlockElements), n, [&](int64_t t) {
      const int64_t end = minOf(n, (t + 1) * kBlockElements);
      int64_t i = t * kBlockElements;
      for (; i + L <= end; i += L) store(y + i, reluIf(useRelu, load<Vec<T>>(y + i) + load<Vec<T>>(z + i)));
      if (i < end) storePartial(y + i, reluIf(useRelu, loadLanes(y + i, end - i) + loadLanes(z + i, end - i)), end - i);
    });
  });
}

// WASM keeps one copy of the training output loops and of inference's fused-rows loop, without
// the residual: a residual flag read in every vector cost those loops about 20% more instructions
// (callgrind under V8), and second copies do not fit the module's size budget. There the residual
// goes in a pass of its own: run() computes y without relu and without z, then y = relu(y + z):
// the same bits, as the fused formula adds z to y rounded to T. When z is y, a copy of z is kept
// first (before anything is written). Returns run()'s result.
template <typename T, typename Run>
bool residualPass(T* y, const T* z, int64_t n, bool relu, Run run) {
  T* copy = nullptr;
  if (z == y) {
    copy = static_cast<T*>(scratchBlock(static_cast<size_t>(n) * sizeof(T)));
    if (copy == nullptr) return false;  // out of memory: nothing written
    __builtin_memcpy(copy, z, static_cast<size_t>(n) * sizeof(T));
  }
  const bool result = run();
  if (!scratchFailed()) addResidual(y, copy ? copy : z, n, relu);
  std::free(copy);
  return result;
}

}  // namespace

template <typename T>
bool trainForward(const T* x, Geometry g, const T* gamma, const T* beta, double eps, bool relu,
                  T* y, T* mean, T* invStd, T* runningMean, T* runningVar, RunningUpdate update,
                  double* batchMeanOut, double* batchVarOut, const Renorm<T>* renorm, const T* z) {
  if (!kFlagCopies && z != nullptr && g.elements() > 0) {
    return residualPass(y, z, g.elements(), relu, [&] {
      return trainForward(x, g, gamma, beta, eps, false, y, mean, invStd, runningMean, runningVar, update,
                          batchMeanOut, batchVarOut, renorm, static_cast<const T*>(nullptr));
    });
  }
  const int64_t channels = g.channels;
  if (g.elements() == 0) {
    for (int64_t c = 0; c < channels; c++) mean[c] = invStd[c] = static_cast<T>(__builtin_nan(""));
    return false;
  }
  const Plan plan = makePlan<T>(g);
  const bool running = runningMean != nullptr && runningVar != nullptr;
  // Running statistics updated chunk by chunk, unless a non-finite batch must leave them untouched.
  const bool updateInChunks = running && !update.skipNonFinite;
  const bool perChannel = !plan.fusedRows || (running && !updateInChunks);  // double per-channel arrays
  Moments* m;
  Coefficients<T>* coef;
  double *batchMean, *batchVar, *scale, *partials;
  bool *wide, *chunkWide;
  T* columns[4];
  T *gammaPrime, *betaPrime;
  const int64_t chunks = ceilDiv(channels, kChannelChunk);
  const auto scratchLayout = [&](Carver& s) {
    s.take(gammaPrime, renorm ? channels : 0);
    s.take(betaPrime, renorm ? channels : 0);
    s.take(m, plan.rows ? 0 : channels);
    s.take(coef, plan.rows ? 0 : channels);
    s.take(batchMean, perChannel ? channels : 0);
    s.take(batchVar, perChannel ? channels : 0);
    s.take(scale, perChannel ? channels : 0);
    s.take(wide, perChannel ? channels : 0);
    s.take(chunkWide, chunks);
    s.take(partials, plan.fusedRows ? 0 : momentPartials(plan));
    takeColumns(s, plan, columns);
  };
  if (!carveScratch(scratchLayout)) return false;  // out of memory: nothing written
  const TrainChannels<T> train{gamma, beta, eps, 1.0 / static_cast<double>(g.perChannel()), mean, invStd,
                               renorm, gammaPrime, betaPrime};
  const T* shift = train.shift();  // beta, or beta' with renorm (written by train before it is read)
  auto updateChunk = [&](int64_t ca, int64_t n, const double* bm, const double* bv) {
    if (updateInChunks) {
      updateRunning(runningMean + ca, runningVar + ca, bm, bv, n, update.factor, update.varScale, false);
    }
  };
  if (plan.fusedRows) {
    normalizeTiles<FlagAndNativeCopies>(x, plan, shift, relu, y,
                   [&](int64_t t, int64_t ca, int64_t n, T* const* at, bool* wideOut, double* meanOut,
                       double* scaleOut) {
      ChunkMoments cm;
      if (plan.fewRows()) {
        fewRowsMoments(x, plan, ca, n, cm);
      } else {
        double sum1[kTileColumns], sum2[kTileColumns];
        rowSums(x, plan, t, sum1, sum2);
        chunkMoments(x, plan, ca, n, sum1, sum2, 0, t * plan.tileColumns, cm);
      }
      double bv[kChannelChunk];
      const bool any = train(ca, n, cm, at, wideOut, meanOut, bv, scaleOut);
      updateChunk(ca, n, meanOut, bv);
      if (perChannel) {
        for (int64_t j = 0; j < n; j++) batchMean[ca + j] = meanOut[j], batchVar[ca + j] = bv[j];
      }
      if (batchMeanOut != nullptr) {
        for (int64_t j = 0; j < n; j++) batchMeanOut[ca + j] = meanOut[j], batchVarOut[ca + j] = bv[j];
      }
      return any;
    }, z);
  } else if (!plan.rows && plan.fused) {
    // One task per channel: its statistics, then its y while the channel is still in cache.
    const bool stream = streams<T>(plan);
    const int64_t blocks = plan.blocksPerChannel;
    withFlagAndNativeCopies(relu, z != nullptr, [&](auto useRelu, auto useZ) {
      const Normalize<T, decltype(useRelu), decltype(useZ)> op{x, z, useRelu, useZ};
      parallelFor(channels, g.elements(), [&](int64_t c) {
        Moments mc{};
        for (int64_t b = 0; b < blocks; b++) merge(mc, blockMoments(x, plan, c, b));
        mc = finiteOrPlain(x, g, c, mc);
        ChunkMoments cm;  // one channel: lane 0 of the first vector
        for (int j = 0; j < kDoubleLanes; j++) cm.n[j] = cm.mean[j] = cm.m2[j] = 0;
        cm.n[0] = mc.n, cm.mean[0] = mc.mean, cm.m2[0] = mc.m2;
        ChunkCoefficients<T> k;
        T* const at[4] = {k.at(0), k.at(1), k.at(2), k.at(3)};
        train(c, 1, cm, at, wide + c, batchMean + c, batchVar + c, scale + c);
        updateChunk(c, 1, batchMean + c, batchVar + c);
        if (wide[c]) {
          if (z != nullptr) {  // the residual's overload
            normalizeChannel(x, plan, c, mc.mean, scale[c], shift ? static_cast<double>(shift[c]) : 0.0, relu, y, z);
            return;
          }
          normalizeChannel(x, plan, c, mc.mean, scale[c], shift ? static_cast<double>(shift[c]) : 0.0, relu, y);
          return;
        }
        const Coefficients<T> k4{{k.v[0][0], k.v[1][0], k.v[2][0], k.v[3][0]}};
        // Backwards: the blocks read last are the ones still in L2.
        for (int64_t b = blocks - 1; b >= 0; b--) applyBlock(y, plan, c, b, k4, stream, op);
      });
    });
  } else {
    // Statistics, per-channel coefficients chunk by chunk, then y.
    const int64_t period = plan.period;
    if (plan.rows) {
      parallelFor(plan.rowTasks(), g.elements(), [&](int64_t task) {
        const int64_t at = task / plan.tiles * period + task % plan.tiles * plan.tileColumns;
        rowSums(x, plan, task, partials + at, partials + plan.rowBlocks * period + at);
      });
    } else {
      channelMomentsOf(x, plan, m, partials);
    }
    parallelFor(chunks, g.elements(), [&](int64_t chunk) {
      const int64_t ca = chunk * kChannelChunk, n = minOf(kChannelChunk, channels - ca);
      ChunkMoments cm;
      if (plan.rows) {
        chunkMoments(x, plan, ca, n, partials, partials + plan.rowBlocks * period, period, 0, cm);
      } else {
        for (int64_t j = 0; j < n; j++) cm.n[j] = m[ca + j].n, cm.mean[j] = m[ca + j].mean, cm.m2[j] = m[ca + j].m2;
        // The lanes past n of the last vector: defined (0), not whatever the stack held.
        for (int64_t j = n; j < ceilDiv(n, kDoubleLanes) * kDoubleLanes; j++) cm.n[j] = cm.mean[j] = cm.m2[j] = 0;
      }
      ChunkCoefficients<T> k;
      T* const at[4] = {k.at(0), k.at(1), k.at(2), k.at(3)};
      chunkWide[chunk] = train(ca, n, cm, at, wide + ca, batchMean + ca, batchVar + ca, scale + ca);
      updateChunk(ca, n, batchMean + ca, batchVar + ca);
      placeCoefficients(plan, ca, n, k, columns, coef);
    });
    bool anyWide = false;
    for (int64_t chunk = 0; chunk < chunks; chunk++) anyWide = anyWide || chunkWide[chunk];
    if (plan.rows) wrapColumns(plan, columns);
    if (anyWide && z != nullptr) {
      normalizeAllPlain(x, plan, batchMean, scale, shift, relu, y, z);
    } else {
      normalizeAll<T, Normalize, FlagAndNativeCopies>(x, plan, coef, relu && !anyWide, y, columns, z);
      if (anyWide) finishWide(plan, wide, batchMean, scale, shift, relu, y);
    }
  }
  if (batchMeanOut != nullptr && !plan.fusedRows) {  // perChannel: batchMean/batchVar hold them all
    for (int64_t c = 0; c < channels; c++) batchMeanOut[c] = batchMean[c], batchVarOut[c] = batchVar[c];
  }
  if (!running) return false;
  if (updateInChunks) return true;
  return updateRunning(runningMean, runningVar, batchMean, batchVar, channels, update.factor, update.varScale,
                       update.skipNonFinite);
}

template <typename T>
void inferForward(const T* x, Geometry g, const T* runningMean, const T* runningVar,
                  const T* gamma, const T* beta, double eps, bool relu, T* y, const T* z) {
  if (g.elements() == 0) return;
  const Plan plan = makePlan<T>(g);
  if (!kFlagCopies && z != nullptr && plan.fusedRows) {  // WASM: residualPass
    residualPass(y, z, g.elements(), relu, [&] {
      inferForward(x, g, runningMean, runningVar, gamma, beta, eps, false, y, static_cast<const T*>(nullptr));
      return false;
    });
    return;
  }
  const int64_t chunks = ceilDiv(g.channels, kChannelChunk);
  const int64_t perChannel = plan.fusedRows ? 0 : g.channels;  // fusedRows: all per tile, on the stack
  Coefficients<T>* coef;
  double *mean, *scale;
  bool *wide, *chunkWide;
  T* columns[4];
  const auto scratchLayout = [&](Carver& s) {
    s.take(coef, plan.rows ? 0 : perChannel);
    s.take(mean, perChannel);
    s.take(scale, perChannel);
    s.take(wide, perChannel);
    s.take(chunkWide, chunks);
    takeColumns(s, plan, columns);
  };
  if (!carveScratch(scratchLayout)) return;  // out of memory: nothing written
  if (plan.fusedRows) {
    normalizeTiles<FlagAndNativeCopies>(x, plan, beta, relu, y,
                   [&](int64_t, int64_t ca, int64_t n, T* const* at, bool* w, double* mu, double* sc) {
                     return inferChannels(runningMean, runningVar, gamma, beta, eps, ca, n, at, w, mu, sc);
                   }, z);
    return;
  }
  parallelFor(chunks, g.elements(), [&](int64_t chunk) {
    const int64_t ca = chunk * kChannelChunk, n = minOf(kChannelChunk, g.channels - ca);
    ChunkCoefficients<T> k;
    T* const at[4] = {k.at(0), k.at(1), k.at(2), k.at(3)};
    chunkWide[chunk] = inferChannels(runningMean, runningVar, gamma, beta, eps, ca, n, at, wide + ca, mean + ca,
                                     scale + ca);
    placeCoefficients(plan, ca, n, k, columns, coef);
  });
  bool anyWide = false;
  for (int64_t chunk = 0; chunk < chunks; chunk++) anyWide = anyWide || chunkWide[chunk];
  if (plan.rows) wrapColumns(plan, columns);
  if (anyWide && z != nullptr) return normalizeAllPlain(x, plan, mean, scale, beta, relu, y, z);
  normalizeAll<T, NormalizeNoLo, FlagAndCopies>(x, plan, coef, relu && !anyWide, y, columns, z);
  if (anyWide) finishWide(plan, wide, mean, scale, beta, relu, y);
}

#define SIMDNORM_INSTANTIATE(T)                                                                \
  template bool trainForward<T>(const T*, Geometry, const T*, const T*, double, bool, T*, T*, T*, \
                                T*, T*, RunningUpdate, double*, double*, const Renorm<T>*,     \
                                const T*);                                                     \
  template void inferForward<T>(const T*, Geometry, const T*, const T*, const T*, const T*,     \
                                double, bool, T*, const T*);
SIMDNORM_INSTANTIATE(float)
SIMDNORM_INSTANTIATE(double)
#undef SIMDNORM_INSTANTIATE

}  // namespace SIMDNORM_ISA
}  // namespace simdnorm
