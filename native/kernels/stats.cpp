// Per-channel moments: mean = sum(x)/M, variance = sum((x - mean)^2)/M, accumulated in double
// (float32 data: in float over short runs first where that is accurate, see accumulate).
// Each block gives shifted sums S1 = sum(x - s), S2 = sum((x - s)^2) with s a value of the block
// (a constant block is exact, data far from zero does not cancel); blocks are merged with Chan's
// formula in block order, the mean kept exactly as shift + sum(x - shift) / M (see Moments).
// A channel whose moments come out non-finite (+-Inf or NaN in x, or float64 squares beyond
// double's range) is recomputed as the reference does, so it gets IEEE's values (Sum x/M = +-Inf).
#include "batchnorm.h"
#include "fallback.h"
#include "lanes.h"
#include "parallel.h"
#include "plan.h"
#include "reduce.h"
#include "scratch.h"
#include "simd.h"
#include "tuning.h"

namespace simdnorm {
namespace SIMDNORM_ISA {

template <typename T>
Moments finiteOrPlain(const T* x, const Geometry& g, int64_t c, const Moments& m) {
  if (finite(m)) return m;
  // lib/reference.ts's channelStats, operation for operation.
  const double n = static_cast<double>(g.perChannel());
  double sum = 0;
  forEachOfChannel(g, c, [&](int64_t i) { sum += static_cast<double>(x[i]); });
  double mean = sum / n, residual = 0, squares = 0;
  forEachOfChannel(g, c, [&](int64_t i) {
    const double d = static_cast<double>(x[i]) - mean;
    residual += d;
    squares += d * d;
  });
  if (__builtin_isfinite(residual)) {
    mean += residual / n;
    squares -= residual * (residual / n);
  }
  return {n, mean, squares < 0 ? 0 : squares, 0, 0};
}

// Planes path, shifted by the block's first value.
template <typename T>
Moments blockMoments(const T* x, const Plan& plan, int64_t c, int64_t b) {
  const double shift = shiftOf(x[plan.blockStart(c, b)]);
  const T shiftT = static_cast<T>(shift);  // a value of x (or 0): exact
  double n = 0;
  auto sum = [&](bool useFloat) SIMDNORM_LAMBDA_INLINE {
    Sums sums;
    n = 0;
    plan.forEachSpanGroup<kPlaneStreams>(c, b, [&](auto streams, int64_t start, int64_t stride, int64_t length)
                                                   SIMDNORM_LAMBDA_INLINE {
      constexpr int S = decltype(streams)::value;
      n += static_cast<double>(length * S);
      auto term = [&](int64_t i, int64_t k) SIMDNORM_LAMBDA_INLINE {
        VDouble d = loadDoubleLanes(x + start + i, k) - shift;
        return Terms{d, d * d};
      };
      if constexpr (sizeof(T) == 4 && kFloatRuns) {
        if (useFloat) {
          accumulate<S>(length, stride, term, sums, [&](int64_t i) SIMDNORM_LAMBDA_INLINE {
            VFloat d = load<VFloat>(x + start + i) - shiftT;
            return FloatTerms{d, d * d};
          }, FloatSquaresOk{});
          return;
        }
      }
      accumulate<S>(length, stride, term, sums);
    });
    return sums;
  };
  Sums sums = sum(true);
  if (sizeof(T) == 4 && kFloatRuns && cancels(n, sums.sumU(), sums.sumV())) sums = sum(false);
  return shiftedMoments(n, shift, sums.sumU(), sums.sumV());
}

namespace {

// Rows path: the shift of channel c's sums in row block rb, its value in the block's first row.
template <typename T>
double shiftAt(const T* x, const Plan& plan, int64_t rb, int64_t c) {
  const int64_t r0 = rb * plan.rowsPerBlock, p = plan.firstColumnOf(c);
  return p < plan.rowLength(r0) ? shiftOf(x[r0 * plan.period + p]) : 0.0;
}

// The shifts of the columns from + j (j < count) that are channels: shiftOf of their value in a
// row block's first row, 0 from column `end` on (end <= from + count: a short last row). Natively
// a vector of columns at a time (shiftOf lane by lane): a scalar loop was a tenth of a small
// tensor's statistics pass. (WASM keeps the scalar loop, its modules as built.)
template <typename T>
void firstRowShifts(const T* first, int64_t from, int64_t end, int64_t count, double* shift) {
  int64_t j = 0;
#if !defined(__wasm__)
  for (; from + j + kDoubleLanes <= end; j += kDoubleLanes) {
    const VDouble v = loadDoubleLanes(first + from + j, kDoubleLanes);
    store(shift + j, select(notFiniteLanes(v), VDouble{}, v));
  }
#endif
  for (; j < count; j++) shift[j] = from + j < end ? shiftOf(first[from + j]) : 0.0;
}

}  // namespace

// Shifted by the channel's value in the block's first row (so the columns of a channel add up).
template <typename T>
void rowSums(const T* x, const Plan& plan, int64_t task, double* sum1, double* sum2) {
  const int64_t rb = task / plan.tiles, c0 = task % plan.tiles * plan.tileColumns;
  const int64_t c1 = minOf(plan.period, c0 + plan.tileColumns);
  double shift[kTileColumns + kDoubleLanes];  // per column of the tile
  if (plan.columnIsChannel()) {
    const int64_t r0 = rb * plan.rowsPerBlock, end = minOf(c1, plan.rowLength(r0));
    const T* first = x + r0 * plan.period;
    firstRowShifts(first, c0, end, c1 - c0, shift);
  } else {
    plan.forEachColumnFrom(c0, c1 - c0, [&](int64_t p, int64_t c) { shift[p - c0] = shiftAt(x, plan, rb, c); });
  }
  for (int64_t p = c1; p < c1 + kDoubleLanes; p++) shift[p - c0] = 0;
  auto term = [&](int64_t offset, int64_t column, int64_t k) SIMDNORM_LAMBDA_INLINE {
    if (sizeof(T) == 8) prefetchAhead(x + offset);  // float data: the float runs' term does
    VDouble d = loadDoubleLanes(x + offset, k) - load<VDouble>(shift + (column - c0));
    return Terms{d, d * d};
  };
  if constexpr (sizeof(T) == 4 && kFloatRuns) {
    if (const int64_t r = rb * plan.rowsPerBlock; minOf(plan.rowCount, r + plan.rowsPerBlock) - r == 1) {
      // A block of one row (a small tensor): the sums of a column's one value d = x - shift
      // are d and d², and the float run below would be redone in double for every column but
      // those with d = 0 (the check after it: one value always "cancels"). These are the sums
      // that gives, bit for bit (0 + d as the sums start from 0; a missing column of a short
      // last row 0), without the float run and a scalar division per column: most of a tiny
      // training call's kernel time.
      const int64_t shortFrom = r + 1 == plan.rowCount ? plan.lastRowLength : plan.period;
      const T* row = x + r * plan.period;
      for (int64_t p = c0; p < c1; p++) {
        const double d = p < shortFrom ? static_cast<double>(row[p]) - shift[p - c0] : 0.0;
        sum1[p - c0] = 0.0 + d;
        sum2[p - c0] = p < shortFrom ? 0.0 + d * d : 0.0;
      }
      return;
    }
    // The shifts are values of x (or 0): exact as floats.
    float shiftF[kTileColumns];
    for (int64_t p = c0; p < c1; p++) shiftF[p - c0] = static_cast<float>(shift[p - c0]);
#if defined(__wasm__)
    accumulateRows(plan, task, sum1, sum2, term,
                   [&](int64_t offset, int64_t column) SIMDNORM_LAMBDA_INLINE {
                     prefetchAhead(x + offset);
#else
    const bool ahead = readsAhead(plan.g.elements() * static_cast<int64_t>(sizeof(T)));
    accumulateRows(plan, task, sum1, sum2, term,
                   [SIMDNORM_TERM_CAPTURE(x, c0, ahead)](int64_t offset, int64_t column) SIMDNORM_LAMBDA_INLINE {
                     if (ahead) prefetchAhead(x + offset);
#endif
                     VFloat d = load<VFloat>(x + offset) - load<VFloat>(shiftF + (column - c0));
                     return FloatTerms{d, d * d};
                   },
                   FloatSquaresOk{});
    const int64_t r0 = rb * plan.rowsPerBlock, r1 = minOf(plan.rowCount, r0 + plan.rowsPerBlock);
    const auto redo = [&](int64_t p) {
      const int64_t end = r1 == plan.rowCount && p >= plan.lastRowLength ? r1 - 1 : r1;
      if (!cancels(static_cast<double>(end - r0), sum1[p - c0], sum2[p - c0])) return;
      double s1 = 0, s2 = 0;
      for (int64_t r = r0; r < end; r++) {
        const double d = static_cast<double>(x[r * plan.period + p]) - shift[p - c0];
        s1 += d;
        s2 += d * d;
      }
      sum1[p - c0] = s1;
      sum2[p - c0] = s2;
    };
    // cancels() a vector of columns at a time, lane by lane the same operations (so the same
    // decisions): most vectors have no column to redo, and a division per column was most of
    // a small tensor's statistics pass.
    constexpr int64_t L = kDoubleLanes;
    const double rows = static_cast<double>(r1 - r0);
    const int64_t shortFrom = r1 == plan.rowCount ? plan.lastRowLength : plan.period;
    int64_t p = c0;
    for (; p + L <= c1; p += L) {
      VDouble n = splat<VDouble>(rows);
      if (p + L > shortFrom) {
        for (int64_t i = 0; i < L; i++) n[i] = p + i >= shortFrom ? rows - 1 : rows;
      }
      const VDouble s1 = load<VDouble>(sum1 + (p - c0)), s2 = load<VDouble>(sum2 + (p - c0));
      const VDoubleMask may = (s1 * (s1 / n) > s2 * (15.0 / 16.0)) & (magnitude(s2) <= splat<VDouble>(__DBL_MAX__));
      if (!anyLane(may)) continue;
      for (int64_t i = 0; i < L; i++) redo(p + i);
    }
    for (; p < c1; p++) redo(p);
  } else {
    accumulateRows(plan, task, sum1, sum2, term);
  }
}

namespace {

// Channels [ca, ca + n) of m whose moments are not finite, recomputed by finiteOrPlain.
template <typename T>
void recomputeNotFinite(const T* x, const Plan& plan, int64_t ca, int64_t n, ChunkMoments& m) {
  for (int64_t j = 0; j < n; j++) {
    const Moments mc{m.n[j], m.mean[j], m.m2[j], m.shift[j], m.dev[j]};
    if (finite(mc)) continue;
    const Moments p = finiteOrPlain(x, plan.g, ca + j, mc);
    m.n[j] = p.n, m.mean[j] = p.mean, m.m2[j] = p.m2;
  }
}

}  // namespace

// Each row block's sums give shifted moments (shiftedMoments), merged into m in row-block order
// (merge), vectorised across the channels; a channel whose moments are not finite is then
// recomputed by finiteOrPlain.
template <typename T>
void chunkMoments(const T* x, const Plan& plan, int64_t ca, int64_t n, const double* sum1, const double* sum2,
                  int64_t stride, int64_t base, ChunkMoments& m) {
  double count[kChannelChunk], s1[kChannelChunk], s2[kChannelChunk], shift[kChannelChunk];
  const int64_t padded = ceilDiv(n, kDoubleLanes) * kDoubleLanes;
  for (int64_t rb = 0; rb < plan.rowBlocks; rb++) {
    channelSums(plan, rb, ca, n, sum1 + rb * stride, sum2 + rb * stride, base, count, s1, s2);
    if (plan.columnIsChannel()) {
      const int64_t r0 = rb * plan.rowsPerBlock, end = minOf(ca + n, plan.rowLength(r0));
      const T* first = x + r0 * plan.period;
      firstRowShifts(first, ca, end, n, shift);
    } else {
      for (int64_t j = 0; j < n; j++) shift[j] = shiftAt(x, plan, rb, ca + j);
    }
    for (int64_t j = n; j < padded; j++) shift[j] = 0;
    forLanes(n, [&](int64_t j, int64_t) SIMDNORM_LAMBDA_INLINE {
      // shiftedMoments
      const VDouble bn = load<VDouble>(count + j), bs = load<VDouble>(shift + j), bdev = load<VDouble>(s1 + j);
      const VDouble q = bdev / bn;
      VDouble bm2 = load<VDouble>(s2 + j) - bdev * q;
      bm2 = select(bm2 < VDouble{}, VDouble{}, bm2);
      if (rb == 0) {  // merge into nothing
        store(m.n + j, bn);
        store(m.shift + j, bs);
        store(m.dev + j, bdev);
        store(m.m2 + j, bm2);
        return;
      }
      // merge (Chan's formula on the difference of block means at the spread's precision);
      // an empty side gives the other.
      const VDouble an = load<VDouble>(m.n + j), as = load<VDouble>(m.shift + j), adev = load<VDouble>(m.dev + j);
      const VDouble am2 = load<VDouble>(m.m2 + j);
      const VDouble total = an + bn, delta = (bs - as) + (q - adev / an);
      const VDouble m2 = am2 + (bm2 + (delta * delta) * ((an * bn) / total));
      const VDouble dev = adev + ((bs - as) * bn + bdev);
      const VDoubleMask aEmpty = an == VDouble{}, bEmpty = bn == VDouble{};
      store(m.n + j, select(bEmpty, an, total));
      store(m.shift + j, select(bEmpty | ~aEmpty, as, bs));
      store(m.dev + j, select(bEmpty, adev, select(aEmpty, bdev, dev)));
      store(m.m2 + j, select(bEmpty, am2, select(aEmpty, bm2, m2)));
    });
  }
  // recomputeNotFinite's scan only where a lane's mean or m2 is not finite (or a partial vector,
  // whose padding lanes are 0 / 0): a scalar scan of every channel cost [64,256]'s training ~7%.
  VDoubleMask notFinite{};
  bool partial = false;
  forLanes(n, [&](int64_t j, int64_t k) SIMDNORM_LAMBDA_INLINE {
    const VDouble mean = load<VDouble>(m.shift + j) + load<VDouble>(m.dev + j) / load<VDouble>(m.n + j);
    store(m.mean + j, mean);
    notFinite |= notFiniteLanes(mean) | notFiniteLanes(load<VDouble>(m.m2 + j));
    partial |= k < kDoubleLanes;
  });
  if (partial || anyLane(notFinite)) recomputeNotFinite(x, plan, ca, n, m);
}

// The moments chunkMoments gives for one row block, in one pass: each channel shifted by its
// value in the first row (0 if that is not finite), S1 and S2 summed over the rows in double, then
// shiftedMoments (with S1 * (1 / n) for S1 / n); a channel whose moments are not finite is
// recomputed by finiteOrPlain.
template <typename T>
void fewRowsMoments(const T* x, const Plan& plan, int64_t ca, int64_t n, ChunkMoments& m) {
  const int64_t rows = plan.rowCount, period = plan.period;
  const VDouble count = splat<VDouble>(static_cast<double>(rows)), inverse = splat<VDouble>(1.0 / static_cast<double>(rows));
  VDoubleMask notFinite{};
  forLanes(n, [&](int64_t j, int64_t k) SIMDNORM_LAMBDA_INLINE {
    const T* column = x + ca + j;
    const VDouble first = loadDoubleLanes(column, k);
    const VDouble shift = select(notFiniteLanes(first), VDouble{}, first);
    VDouble s1 = {}, s2 = {};
    for (int64_t r = 0; r < rows; r++) {
      const VDouble d = loadDoubleLanes(column + r * period, k) - shift;
      s1 += d;
      s2 += d * d;
    }
    const VDouble q = s1 * inverse, m2 = s2 - s1 * q, mean = shift + q;  // S1 / n within an ulp
    store(m.n + j, count);
    store(m.shift + j, shift);
    store(m.dev + j, s1);
    store(m.m2 + j, select(m2 < VDouble{}, VDouble{}, m2));
    store(m.mean + j, mean);
    notFinite |= notFiniteLanes(mean) | notFiniteLanes(m2);
  });
  bool any = false;
  for (int i = 0; i < kDoubleLanes; i++) any = any || notFinite[i] != 0;
  if (any) recomputeNotFinite(x, plan, ca, n, m);
}

namespace {

// Rows path: every row task's sums, then the moments of each chunk of channels.
template <typename T>
void rowMoments(const T* x, const Plan& plan, Moments* out, double* partials) {
  const int64_t period = plan.period;
  double* sum1 = partials;
  double* sum2 = partials + plan.rowBlocks * period;
  parallelFor(plan.rowTasks(), plan.g.elements(), [&](int64_t task) {
    const int64_t at = task / plan.tiles * period + task % plan.tiles * plan.tileColumns;
    rowSums(x, plan, task, sum1 + at, sum2 + at);
  });
  parallelFor(ceilDiv(plan.g.channels, kChannelChunk), plan.g.elements(), [&](int64_t chunk) {
    const int64_t ca = chunk * kChannelChunk, n = minOf(kChannelChunk, plan.g.channels - ca);
    ChunkMoments m;
    chunkMoments(x, plan, ca, n, sum1, sum2, period, 0, m);
    for (int64_t j = 0; j < n; j++) out[ca + j] = {m.n[j], m.mean[j], m.m2[j], m.shift[j], m.dev[j]};
  });
}

}  // namespace

template <typename T>
void channelMomentsOf(const T* x, const Plan& plan, Moments* out, double* partials) {
  if (plan.rows) return rowMoments(x, plan, out, partials);
  const int64_t channels = plan.g.channels, blocks = plan.blocksPerChannel;
  if (channels >= kFusedMinChannels) {
    parallelFor(channels, plan.g.elements(), [&](int64_t c) {
      Moments m{};
      for (int64_t b = 0; b < blocks; b++) merge(m, blockMoments(x, plan, c, b));
      out[c] = finiteOrPlain(x, plan.g, c, m);
    });
    return;
  }
  // Few channels: spread the blocks, then merge them in the same order.
  Moments* part = reinterpret_cast<Moments*>(partials);
  parallelFor(channels * blocks, plan.g.elements(),
              [&](int64_t t) { part[t] = blockMoments(x, plan, t / blocks, t % blocks); });
  for (int64_t c = 0; c < channels; c++) {
    Moments m{};
    for (int64_t b = 0; b < blocks; b++) merge(m, part[c * blocks + b]);
    out[c] = finiteOrPlain(x, plan.g, c, m);
  }
}

template <typename T>
void channelMoments(const T* x, Geometry g, T* mean, T* variance) {
  if (g.channels <= 0) return;
  if (g.perChannel() == 0) {
    for (int64_t c = 0; c < g.channels; c++) mean[c] = variance[c] = static_cast<T>(__builtin_nan(""));
    return;
  }
  const Plan plan = makePlan<T>(g);
  Moments* m;
  double* partials;
  const auto scratchLayout = [&](Carver& s) {
    s.take(m, g.channels);
    s.take(partials, momentPartials(plan));
  };
  if (!carveScratch(scratchLayout)) return;  // out of memory: nothing written
  channelMomentsOf(x, plan, m, partials);
  for (int64_t c = 0; c < g.channels; c++) {
    mean[c] = static_cast<T>(m[c].mean);
    variance[c] = static_cast<T>(m[c].m2 / m[c].n);
  }
}

#define SIMDNORM_INSTANTIATE(T)                                                         \
  template Moments blockMoments<T>(const T*, const Plan&, int64_t, int64_t);            \
  template void fewRowsMoments<T>(const T*, const Plan&, int64_t, int64_t, ChunkMoments&); \
  template Moments finiteOrPlain<T>(const T*, const Geometry&, int64_t, const Moments&); \
  template void rowSums<T>(const T*, const Plan&, int64_t, double*, double*);           \
  template void chunkMoments<T>(const T*, const Plan&, int64_t, int64_t, const double*, \
                                const double*, int64_t, int64_t, ChunkMoments&);        \
  template void channelMomentsOf<T>(const T*, const Plan&, Moments*, double*);          \
  template void channelMoments<T>(const T*, Geometry, T*, T*);
SIMDNORM_INSTANTIATE(float)
SIMDNORM_INSTANTIATE(double)
#undef SIMDNORM_INSTANTIATE

}  // namespace SIMDNORM_ISA
}  // namespace simdnorm
