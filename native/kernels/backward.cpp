// Backward, with g = dy masked by (y > 0) when the relu's output y is given (and g written to dz,
// the residual's gradient, in the dx pass when dz is given: README "BatchNorm variants"):
//   dbeta = sum(g),  dgamma = invStd * sum(g * (x - mean))        (one pass, sums in double)
//   training: dx = g * k - (x - mean) * (k * dgamma * invStd / M) - k * dbeta / M,  k = gamma * invStd
//             (= gamma * invStd / M * (M * g - dbeta - xhat * dgamma), xhat = (x - mean) * invStd)
//   eval:     dx = g * k                                             (one more pass)
// A channel with a non-finite input (+-Inf or NaN in dy, x, mean, invStd or gamma: its sums are
// then not finite or not IEEE's) gets its sums and dx from the reference's formulas in double, as the
// reference computes them (plainSums, gradChannel). So does a channel whose k, k * dbeta / M or
// k * dgamma * invStd / M is not finite or, in float, not a normal float (gamma ~ 1e37, data std
// above ~1e19: invStd^2 underflows). The other channels are untouched. Per-channel work runs over
// chunks of channels in double vectors (GradChannels).
#include <type_traits>

#include "batchnorm.h"
#include "fallback.h"
#include "lanes.h"
#include "parallel.h"
#include "plan.h"
#include "reduce.h"
#include "scratch.h"
#include "simd.h"
#include "store.h"
#include "tuning.h"

namespace simdnorm {
namespace SIMDNORM_ISA {

namespace {

// (g, g * (x - mean)) of k elements at offset, in double.
template <typename T, typename Relu>
inline Terms gradTerms(const T* dy, const T* x, const T* y, int64_t offset, int64_t k, VDouble mean, Relu relu) {
  VDouble g = loadDoubleLanes(dy + offset, k);
  if (relu) g = select(loadDoubleLanes(y + offset, k) > VDouble{}, g, VDouble{});
  return {g, g * (loadDoubleLanes(x + offset, k) - mean)};
}

// The same of a whole float vector at offset, in float (the float runs' term, float data).
template <typename T, typename Relu>
SIMDNORM_INLINE FloatTerms gradTermsFloat(const T* dy, const T* x, const T* y, int64_t offset, VFloat mean, Relu relu) {
  VFloat g = load<VFloat>(dy + offset);
  if (relu) g = select(load<VFloat>(y + offset) > VFloat{}, g, VFloat{});
  return {g, g * (load<VFloat>(x + offset) - mean)};
}

// dx from the coefficients (mean, k, k * dbeta / M, k * dgamma * invStd / M); with dz, g to dz
// too (dz may be dy: g is read before it is written, and masking twice changes nothing).
template <typename T, typename Relu, typename Training, typename Dz>
struct InputGrad {
  const T *dy, *x, *y;
  T* dz;
  Relu relu;  // store.h's flag types
  Training training;
  Dz withDz;
  Vec<T> operator()(int64_t offset, int64_t k, const Vec<T>* p) const {
    Vec<T> g = loadLanes(dy + offset, k);
    if (relu) g = select(loadLanes(y + offset, k) > Vec<T>{}, g, Vec<T>{});
    if (withDz) {
      if (k == lanes<T>()) store(dz + offset, g);
      else storePartial(dz + offset, g, k);
    }
    if (!training) return g * p[1];
    return mulAdd(g, p[1], -mulAdd(loadLanes(x + offset, k) - p[0], p[3], p[2]));
  }
};

// dz = dy masked by (y > 0) when y is given over channel c (dz may be dy), for gradChannel's channels.
template <typename T>
void maskChannel(const T* dy, const T* y, const Plan& plan, int64_t c, T* dz) {
  forEachOfChannel(plan.g, c, [&](int64_t i) { dz[i] = y && !(y[i] > 0) ? T(0) : dy[i]; });
}

// dx over channel c by the reference's formula in double, with g = src masked by (y > 0) when y is
// given. Per element read then write: src may be dx.
template <typename T>
void gradChannel(const T* src, const T* x, const T* y, const Plan& plan, int64_t c, double mean, double inv,
                 double gamma, double dbeta, double dgamma, bool training, T* dx) {
  const double n = static_cast<double>(plan.count), k = gamma * inv / n;
  forEachOfChannel(plan.g, c, [&](int64_t i) {
    const double grad = y && !(y[i] > 0) ? 0.0 : static_cast<double>(src[i]);
    const double xhat = (static_cast<double>(x[i]) - mean) * inv;
    dx[i] = static_cast<T>(training ? k * (n * grad - dbeta - xhat * dgamma) : grad * gamma * inv);
  });
}

// Lanes [c, c + k) of gamma as doubles (absent: 1).
template <typename T>
SIMDNORM_INLINE VDouble parameterOf(const T* gamma, int64_t c, int64_t k) {
  return gamma ? loadDoubleLanes(gamma + c, k) : splat<VDouble>(1.0);
}

// dbeta = sum(g) and dgamma = sum(g * (x - mean) * invStd) of channel c as lib/reference.ts's
// backward computes them, g = dy masked by (y > 0) when y is given.
template <typename T>
void plainSums(const T* dy, const T* x, const T* y, const Geometry& g, int64_t c, double mean, double inv,
               double& dbeta, double& dgamma) {
  double sg = 0, sgx = 0;
  forEachOfChannel(g, c, [&](int64_t i) {
    const double grad = y && !(y[i] > 0) ? 0.0 : static_cast<double>(dy[i]);
    sg += grad;
    sgx += grad * (static_cast<double>(x[i]) - mean) * inv;
  });
  dbeta = sg;
  dgamma = sgx;
}

// Per chunk of channels: sum(g) and sum(g * (x - mean)) of each (GradChannels makes them dbeta
// and dgamma).
struct ChunkSums {
  double g[kChannelChunk], gx[kChannelChunk];
};

// The per-channel part of backward for the chunk [ca, ca + n) from its sums:
//   dbeta = sum(g), dgamma = invStd * sum(g (x - mean)), k = gamma * invStd,
//   coefficients (mean, k, k * dbeta * (1/M), k * dgamma * invStd * (1/M)) to coef[q][j], dbeta/dgamma[ca + j],
//   wide[j] (computed by gradChannel: fallback.h's plainChannel). A channel with a non-finite
// dbeta, dgamma, mean, invStd or gamma (plain) gets its sums from plainSums first; anyPlain says
// whether there was one. The identity coefficients of a wide channel give dx = g exactly where x
// is finite. s.g and s.gx are dbeta and dgamma afterwards. Returns whether a channel is wide.
template <typename T>
struct GradChannels {
  const T *dy, *x, *y;
  const Geometry* g;
  const T *mean, *invStd, *gamma;
  double count;
  bool training;
  T *dgamma, *dbeta;
  bool operator()(int64_t ca, int64_t n, ChunkSums& s, T* const* coef, bool* wide, bool& anyPlain) const {
    bool any = false;
    anyPlain = false;
    bool plain[kChannelChunk];
    forLanes(n, [&](int64_t j, int64_t k) SIMDNORM_LAMBDA_INLINE {
      const int64_t c = ca + j;
      const VDouble inv = loadDoubleLanes(invStd + c, k), sg = load<VDouble>(s.g + j);
      const VDouble dg = load<VDouble>(s.gx + j) * inv;
      store(s.gx + j, dg);
      const VDoubleMask p = notFiniteLanes(sg) | notFiniteLanes(dg) | notFiniteLanes(loadDoubleLanes(mean + c, k)) |
                            notFiniteLanes(inv) | notFiniteLanes(parameterOf(gamma, c, k));
      anyPlain |= storeFlags(plain + j, p, k);
    });
    if (anyPlain) {
      for (int64_t j = 0; j < n; j++) {
        if (plain[j]) {
          plainSums(dy, x, y, *g, ca + j, static_cast<double>(mean[ca + j]), static_cast<double>(invStd[ca + j]),
                    s.g[j], s.gx[j]);
        }
      }
    }
    // 1 / M once: two divisions per channel cost more than a channel of two values moves.
    const double perCount = 1 / count;
    forLanes(n, [&](int64_t j, int64_t k) SIMDNORM_LAMBDA_INLINE {
      const int64_t c = ca + j;
      const VDouble inv = loadDoubleLanes(invStd + c, k), sg = load<VDouble>(s.g + j), dg = load<VDouble>(s.gx + j);
      const VDouble mu = loadDoubleLanes(mean + c, k), kk = parameterOf(gamma, c, k) * inv;
      const VDouble p2 = kk * sg * perCount, p3 = kk * dg * inv * perCount;
      storeLanesAs(dbeta + c, sg, k);
      storeLanesAs(dgamma + c, dg, k);
      VDoubleMask w = scaleOutsideLanes<T>(kk);
      if (training) w |= offsetTooLargeLanes<T>(mu) | offsetTooLargeLanes<T>(p2) | scaleOutsideLanes<T>(p3);
      if (anyPlain) {
        VDoubleMask pl{};
        for (int64_t i = 0; i < k; i++) pl[i] = plain[j + i] ? -1 : 0;
        w |= pl;
      }
      any |= storeFlags(wide + j, w, k);
      storeLanesAs(coef[0] + j, select(w, VDouble{}, mu), k);
      storeLanesAs(coef[1] + j, select(w, splat<VDouble>(1.0), kk), k);
      storeLanesAs(coef[2] + j, select(w, VDouble{}, p2), k);
      storeLanesAs(coef[3] + j, select(w, VDouble{}, p3), k);
    });
    return any;
  }
};

template <typename T>
struct ChunkCoefficients {
  T v[4][kChannelChunk];
};

// g = dy where y > 0, else +0 (as the kernels mask it), into dx and, when given, into dz (dx or
// dz may be dy: each element is read before it is written); without y, dz = dy. For the kernels
// to run after it without relu and without dz (without kFlagCopies: one copy of them).
template <typename T>
void maskByRelu(const T* dy, const T* y, int64_t n, T* dx, T* dz) {
  constexpr int64_t L = lanes<T>(), kBlock = 16384;
  if (y == nullptr && (dz == nullptr || dz == dy)) return;
  parallelFor(ceilDiv(n, kBlock), n, [&](int64_t t) {
    const int64_t i1 = minOf(n, (t + 1) * kBlock);
    int64_t i = t * kBlock;
    if (y == nullptr) {
      for (; i + L <= i1; i += L) store(dz + i, load<Vec<T>>(dy + i));
      for (; i < i1; i++) dz[i] = dy[i];
      return;
    }
    for (; i + L <= i1; i += L) {
      const Vec<T> g = select(load<Vec<T>>(y + i) > Vec<T>{}, load<Vec<T>>(dy + i), Vec<T>{});
      store(dx + i, g);
      if (dz != nullptr) store(dz + i, g);
    }
    for (; i < i1; i++) {
      const T g = y[i] > 0 ? dy[i] : T(0);
      dx[i] = g;
      if (dz != nullptr) dz[i] = g;
    }
  });
}

}  // namespace

template <typename T>
void backward(const T* dy, const T* x, Geometry g, const T* mean, const T* invStd, const T* gamma,
              const T* y, bool training, T* dx, T* dgamma, T* dbeta, T* dz) {
  const int64_t channels = g.channels;
  if (g.elements() == 0) {
    for (int64_t c = 0; c < channels; c++) dgamma[c] = dbeta[c] = 0;
    return;
  }
  // The per-channel double fallbacks (plainSums, gradChannel from dy) keep reading the mask: their
  // arithmetic as it was, NaN signs included.
  const T* mask = y;
  if (!kFlagCopies && (y != nullptr || dz != nullptr)) {
    // WASM (store.h's withFlags): relu's mask first, into dx (the ABI lets dx be dy and nothing
    // else), and dz written there too; then the kernels without relu and without dz: the same g,
    // the same bits, two copies less of them (a dz flag read per vector cost backward 1.2x its
    // instructions in WASM).
    maskByRelu(dy, y, g.elements(), dx, dz);
    if (y != nullptr) dy = dx;
    y = nullptr;
    dz = nullptr;
  }
  const Plan plan = makePlan<T>(g);
  const bool stream = g.elements() * static_cast<int64_t>(sizeof(T)) >= kStreamBytes;
  const int64_t blocks = plan.blocksPerChannel, period = plan.period, chunks = ceilDiv(channels, kChannelChunk);
  const bool staged = !plan.fusedRows && !(!plan.rows && plan.fused);
  Coefficients<T>* coef;  // planes path, per channel
  double *sumG, *sumGx;   // per channel (not fusedRows): dbeta, dgamma
  bool *wide, *chunkWide, *chunkPlain;  // per channel: computed by gradChannel; per chunk: any, any plain
  double* blockSums;      // planes path with few channels: per block, sum(g) then sum(g (x - mean))
  double* rowSums;        // rows path: per row block, sum(g) of each column, then sum(g (x - mean))
  T* columns[4];
  const auto scratchLayout = [&](Carver& s) {
    s.take(coef, plan.rows ? 0 : channels);
    s.take(sumG, plan.fusedRows ? 0 : channels);
    s.take(sumGx, plan.fusedRows ? 0 : channels);
    s.take(wide, plan.fusedRows ? 0 : channels);
    s.take(chunkWide, chunks);
    s.take(chunkPlain, chunks);
    s.take(blockSums, !plan.rows && !plan.fused ? 2 * channels * blocks : 0);
    s.take(rowSums, plan.rows && !plan.fusedRows ? 2 * plan.rowBlocks * period : 0);
    for (int q = 0; q < 4; q++) s.take(columns[q], plan.rows && !plan.fusedRows ? columnEntries(plan, lanes<T>()) : 0);
  };
  if (!carveScratch(scratchLayout)) return;  // out of memory: nothing written
  const GradChannels<T> grad{dy, x, mask, &g, mean, invStd, gamma, static_cast<double>(plan.count), training, dgamma, dbeta};
  // A wide channel from src (dy with the mask y, dz first; or dx holding g, dz written already).
  auto wideChannel = [&](int64_t c, double db, double dg, const T* src, const T* mask) {
    if (dz != nullptr && src == dy) maskChannel(dy, mask, plan, c, dz);
    gradChannel(src, x, mask, plan, c, static_cast<double>(mean[c]), static_cast<double>(invStd[c]),
                gamma ? static_cast<double>(gamma[c]) : 1.0, db, dg, training, dx);
  };
  withFlags(y != nullptr, training, [&](auto relu, auto train) {
    // Rows path: per-column sums of the task, with the mean of column p at meanOf[p - base].
    auto sumRows = [&](int64_t task, const T* meanOf, int64_t base, double* sums1, double* sums2) {
      auto term = [&](int64_t offset, int64_t column, int64_t k) SIMDNORM_LAMBDA_INLINE {
        if (sizeof(T) == 8) {  // float data: the float runs' term does
          prefetchAhead(dy + offset);
          prefetchAhead(x + offset);
        }
        return gradTerms(dy, x, y, offset, k, loadDoubleLanes(meanOf + (column - base), k), relu);
      };
      if constexpr (sizeof(T) == 4 && kFloatRuns) {
#if defined(__wasm__)
        accumulateRows(plan, task, sums1, sums2, term,
                       [&](int64_t offset, int64_t column) SIMDNORM_LAMBDA_INLINE {
                         prefetchAhead(dy + offset);
                         prefetchAhead(x + offset);
#else
        const bool ahead = readsAhead(2 * g.elements() * static_cast<int64_t>(sizeof(T)));
        accumulateRows(plan, task, sums1, sums2, term,
                       [SIMDNORM_TERM_CAPTURE(dy, x, y, meanOf, base, ahead)](int64_t offset, int64_t column) SIMDNORM_LAMBDA_INLINE {
                         if (ahead) {
                           prefetchAhead(dy + offset);
                           prefetchAhead(x + offset);
                         }
#endif
                         return gradTermsFloat(dy, x, y, offset, load<VFloat>(meanOf + (column - base)), relu);
                       },
                       GradSumsOk{});
      } else {
        accumulateRows(plan, task, sums1, sums2, term);
      }
    };
    // Planes path: the sums of block b of channel c.
    auto sumBlock = [&](int64_t c, int64_t b, double& sg, double& sgx) {
      const VDouble mu = splat<VDouble>(static_cast<double>(mean[c]));
      Sums sums;
      plan.forEachSpanGroup<kPlaneStreams>(c, b, [&](auto streams, int64_t start, int64_t stride, int64_t length)
                                                     SIMDNORM_LAMBDA_INLINE {
        constexpr int S = decltype(streams)::value;
        auto term = [&](int64_t i, int64_t k) SIMDNORM_LAMBDA_INLINE {
          return gradTerms(dy, x, y, start + i, k, mu, relu);
        };
        if constexpr (sizeof(T) == 4 && kPlaneGradFloatRuns) {
          const VFloat muF = splat<VFloat>(static_cast<float>(mean[c]));
          accumulate<S>(length, stride, term, sums, [&](int64_t i) SIMDNORM_LAMBDA_INLINE {
            return gradTermsFloat(dy, x, y, start + i, muF, relu);
          }, GradSumsOk{});
        } else {
          accumulate<S>(length, stride, term, sums);
        }
      });
      sg = sums.sumU();
      sgx = sums.sumV();
    };
    withNativeCopies(dz != nullptr, [&](auto withDz) {
      // apply(op) with the dx formula of the flags. In WASM (train a RuntimeFlag) a copy per
      // training value of float's dx loops alone: the flag read in every vector cost them 17% more
      // instructions (callgrind under V8; WASM's engines do not unswitch the loop), and copies of
      // the whole kernel, or of double's loops too, do not fit the module's size budget.
      auto withOp = [&](auto apply) SIMDNORM_LAMBDA_INLINE {
        auto make = [&](auto t) { return InputGrad<T, decltype(relu), decltype(t), decltype(withDz)>{dy, x, y, dz, relu, t, withDz}; };
        if constexpr (std::is_same<decltype(train), RuntimeFlag>::value && sizeof(T) == 4) {
          withCopies(train.value, [&](auto t) { apply(make(t)); });
        } else {
          apply(make(train));
        }
      };
      if (plan.fusedRows) {
        // One task per tile: its sums, its channels' coefficients, its dx.
        parallelFor(plan.tiles, g.elements(), [&](int64_t t) {
          const int64_t c0 = t * plan.tileColumns, c1 = minOf(period, c0 + plan.tileColumns);
          const int64_t ca = plan.firstChannel(t), n = plan.firstChannel(t + 1) - ca;
          ChunkCoefficients<T> k;  // per channel; per column too when the columns are the channels
          T cols[4][kTileColumns];
          T* const perChannel[4] = {k.v[0], k.v[1], k.v[2], k.v[3]};
          T* const perColumn[4] = {cols[0], cols[1], cols[2], cols[3]};
          const bool byChannel = plan.columnIsChannel();
          if (!byChannel) {
            const T* const means[4] = {mean + ca, mean + ca, mean + ca, mean + ca};
            spreadChannels(plan, ca, n, means, perColumn, c0);
          }
          ChunkSums s;
          if (plan.fewRows()) {
            // A few values per channel: the sums of each chunk of channels straight from dy and x.
            forLanes(n, [&](int64_t j, int64_t k) SIMDNORM_LAMBDA_INLINE {
              const VDouble mu = loadDoubleLanes(mean + ca + j, k);
              VDouble sg = {}, sgx = {};
              for (int64_t r = 0; r < plan.rowCount; r++) {
                const Terms terms = gradTerms(dy, x, y, r * period + ca + j, k, mu, relu);
                sg += terms.u;
                sgx += terms.v;
              }
              store(s.g + j, sg);
              store(s.gx + j, sgx);
            });
          } else {
            double sum1[kTileColumns], sum2[kTileColumns], count[kChannelChunk];
            sumRows(t, byChannel ? mean : cols[0], byChannel ? 0 : c0, sum1, sum2);
            channelSums(plan, 0, ca, n, sum1, sum2, c0, count, s.g, s.gx);
          }
          bool w[kChannelChunk], anyPlain;
          const bool anyWide = grad(ca, n, s, perChannel, w, anyPlain);
          if (training && anyPlain) {
            // The identity coefficients would turn a non-finite x into NaN: the tile's channels
            // (all of its elements) from dy by gradChannel (per element read then write).
            for (int64_t j = 0; j < n; j++) wideChannel(ca + j, s.g[j], s.gx[j], dy, mask);
            return;
          }
          if (!byChannel) spreadChannels(plan, ca, n, static_cast<const T* const*>(perChannel), perColumn, c0);
          withOp([&](const auto& op) { applyTile(dx, plan, c0, c1, byChannel ? perChannel : perColumn, stream, op); });
          if (!anyWide) return;
          for (int64_t j = 0; j < n; j++) {
            if (w[j]) wideChannel(ca + j, s.g[j], s.gx[j], dx, nullptr);
          }
        });
      } else if (!staged) {
        // One task per channel: its sums, then its dx while dy and x are still in cache.
        parallelFor(channels, g.elements(), [&](int64_t c) {
          ChunkSums s;  // one channel: lane 0 of the first vector
          for (int j = 0; j < kDoubleLanes; j++) s.g[j] = s.gx[j] = 0;
          for (int64_t b = 0; b < blocks; b++) {
            double sg, sgx;
            sumBlock(c, b, sg, sgx);
            s.g[0] += sg;
            s.gx[0] += sgx;
          }
          ChunkCoefficients<T> k;
          T* const at[4] = {k.v[0], k.v[1], k.v[2], k.v[3]};
          bool anyPlain;
          if (grad(c, 1, s, at, wide + c, anyPlain)) return wideChannel(c, s.g[0], s.gx[0], dy, mask);
          const Coefficients<T> k4{{k.v[0][0], k.v[1][0], k.v[2][0], k.v[3][0]}};
          withOp([&](const auto& op) {
            for (int64_t b = blocks - 1; b >= 0; b--) applyBlock(dx, plan, c, b, k4, stream, op);
          });
        });
      } else {
        // The sums by blocks, each chunk of channels adds them up in block order and finds its
        // coefficients, then dx.
        if (plan.rows) {
          plan.forEachColumnFrom(0, period, [&](int64_t p, int64_t c) { columns[0][p] = mean[c]; });
          parallelFor(plan.rowTasks(), g.elements(), [&](int64_t task) {
            const int64_t at = task / plan.tiles * 2 * period + task % plan.tiles * plan.tileColumns;
            sumRows(task, columns[0], 0, rowSums + at, rowSums + at + period);
          });
        } else {
          parallelFor(channels * blocks, g.elements(), [&](int64_t t) {
            sumBlock(t / blocks, t % blocks, blockSums[2 * t], blockSums[2 * t + 1]);
          });
        }
        parallelFor(chunks, g.elements(), [&](int64_t chunk) {
          const int64_t ca = chunk * kChannelChunk, n = minOf(kChannelChunk, channels - ca);
          ChunkSums s;
          for (int64_t j = 0; j < kChannelChunk; j++) s.g[j] = s.gx[j] = 0;
          if (plan.rows) {
            for (int64_t rb = 0; rb < plan.rowBlocks; rb++) {
              double count[kChannelChunk], sg[kChannelChunk], sgx[kChannelChunk];
              const double* sums = rowSums + rb * 2 * period;
              channelSums(plan, rb, ca, n, sums, sums + period, 0, count, sg, sgx);
              for (int64_t j = 0; j < n; j++) s.g[j] += sg[j], s.gx[j] += sgx[j];
            }
          } else {
            for (int64_t j = 0; j < n; j++) {
              for (int64_t b = 0; b < blocks; b++) {
                s.g[j] += blockSums[2 * ((ca + j) * blocks + b)];
                s.gx[j] += blockSums[2 * ((ca + j) * blocks + b) + 1];
              }
            }
          }
          ChunkCoefficients<T> k;
          T* const at[4] = {k.v[0], k.v[1], k.v[2], k.v[3]};
          chunkWide[chunk] = grad(ca, n, s, at, wide + ca, chunkPlain[chunk]);
          for (int64_t j = 0; j < n; j++) sumG[ca + j] = s.g[j], sumGx[ca + j] = s.gx[j];
          if (plan.rows) {
            spreadChannels(plan, ca, n, static_cast<const T* const*>(at), columns, 0);
          } else {
            for (int64_t j = 0; j < n; j++) {
              for (int q = 0; q < 4; q++) coef[ca + j].v[q] = k.v[q][j];
            }
          }
        });
        // In training, the identity coefficients turn a non-finite x into NaN: with a plain
        // channel every channel's dx comes from dy by gradChannel instead (per element read
        // then write, so dx may be dy).
        bool anyPlain = false;
        for (int64_t chunk = 0; chunk < chunks; chunk++) anyPlain = anyPlain || chunkPlain[chunk];
        if (training && anyPlain) {
          parallelFor(channels, g.elements(), [&](int64_t c) { wideChannel(c, sumG[c], sumGx[c], dy, mask); });
          return;
        }
        if (plan.rows) {
          wrapColumns(plan, columns);
          withOp([&](const auto& op) {
            parallelFor(plan.rowTasks(), g.elements(), [&](int64_t t) {
              applyRows(dx, plan, plan.rowTasks() - 1 - t, columns, stream, op);  // cache-warm end first
            });
          });
        } else {
          const int64_t last = plan.orderTasks() - 1;
          withOp([&](const auto& op) {
            parallelFor(last + 1, g.elements(), [&](int64_t t) { applyInOrder(dx, plan, last - t, coef, stream, op); });
          });
        }
        // dx = g on the wide channels: now by gradChannel from dx.
        bool any = false;
        for (int64_t chunk = 0; chunk < chunks; chunk++) any = any || chunkWide[chunk];
        if (!any) return;
        parallelFor(channels, g.elements(), [&](int64_t c) {
          if (wide[c]) wideChannel(c, sumG[c], sumGx[c], dx, nullptr);
        });
      }
    });
  });
}

template void backward<float>(const float*, const float*, Geometry, const float*, const float*,
                              const float*, const float*, bool, float*, float*, float*, float*);
template void backward<double>(const double*, const double*, Geometry, const double*, const double*,
                               const double*, const double*, bool, double*, double*, double*, double*);

}  // namespace SIMDNORM_ISA
}  // namespace simdnorm
