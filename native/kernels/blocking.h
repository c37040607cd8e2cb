// How the per-ISA kernels cut a tensor into blocks, and the two loops every kernel is made of:
// a reduction into double sums and an element-wise write. Shared by stats.cpp, forward.cpp and
// backward.cpp; everything is in namespace simdnorm::SIMDNORM_ISA (see simd.h).
//
// Two paths, as in PyTorch's batch_norm_kernel.cpp:
//  - planes (channels-first, inner >= kMinPlane): vectorised along the plane. A block is a group
//    of whole planes of one channel, or a piece of one plane when planes are large.
//  - rows (channels-last, and channels-first with small planes): the tensor is read as rows of
//    `period` values, a whole number of [channels][inner] runs chosen so that a row is a multiple
//    of the vector width where that is cheap; vectorised across the row, per-column partial sums
//    over a fixed range of rows (the nspc design of oneDNN). A task is a row block times a tile
//    of columns; a statistics block is a row block times the columns of one channel.
//    When all rows are one row block and every tile holds whole channels (fusedRows), one task per
//    tile does everything for its channels: sums, per-channel coefficients, output. That is the path
//    of many channels with little data each (NC [2, 1048576]), where per-channel arrays would move
//    as many bytes as the tensor.
// Per-channel work (statistics from sums, coefficients) runs over chunks of channels vectorised
// across channels: per-channel costs (a division, a square root) stay well below a channel's data.
// Every cut depends on the geometry (and the vector width) only, never on the thread count, and
// partial results are merged in block order: results are bitwise the same for any thread count.
#pragma once

#include <initializer_list>
#include <type_traits>

#include "batchnorm.h"
#include "parallel.h"
#include "simd.h"

namespace simdnorm {
namespace SIMDNORM_ISA {

constexpr int64_t kMinPlane = 16;             // planes shorter than this: rows path
constexpr int64_t kFusedRowsMaxPlane = 32;     // ... and shorter than this when fusedRows holds
constexpr int64_t kBlockElements = 16384;      // planes path: elements per block (64 KiB of float)
constexpr int64_t kRowBlockElements = 65536;   // rows path: elements per row block and column
constexpr int64_t kMinRowsPerBlock = 256;      // ... so per-column partials stay small
constexpr int64_t kTileColumns = 512;          // rows path: per-column sums of a task stay in L1
constexpr int64_t kFusedMinChannels = 8;       // planes path: one task per channel from here
constexpr int64_t kFusedMinPlane = 512;        // ... fusing statistics and output from here
constexpr int64_t kStreamBytes = int64_t{8} << 20;  // outputs this large bypass the caches
constexpr int64_t kChannelChunk = 512;         // channels per chunk of vectorised per-channel work
constexpr int64_t kFewRows = 8;                // rows path: moments straight from x up to this many rows
// Streams of memory that one loop goes through in lockstep, a vector from each in turn: the
// planes of a planes-path block (C planes apart) and the parts of a rows-path task (rows apart).
// One core reading one stream at a time leaves much of the memory bandwidth unused (a single
// stream's demand misses, a few lines ahead at most, are all it has in flight); reading four,
// the planes path's statistics pass takes 0.6-0.75 of the time, natively and in WASM (NCHW
// [32,64,56,56], one thread).
//  - kPlaneStreams: the planes path's reductions, everywhere.
//  - kRowStreams: the rows path's reductions in WASM. Natively they prefetch instead
//    (kPrefetchBytes), and row streams there cost 5-10%; WASM has no prefetch instruction.
//  - kWriteStreams: the output passes in WASM (0.85-0.95 of the time there). Natively, large
//    outputs bypass the caches (streamStore) and small ones are faster written in one stream
//    (lockstep: 1.3-1.9x the time of infer on NCHW [8,16,33,35], in cache).
// SIMDNORM_WASM_STREAMS gives a native build WASM's settings (the checks of the portable kernels).
constexpr int kPlaneStreams = 4;
#if defined(__wasm__) || defined(SIMDNORM_WASM_STREAMS)
constexpr int kRowStreams = 4, kWriteStreams = 4;
#else
constexpr int kRowStreams = 1, kWriteStreams = 1;
#endif

// f(std::integral_constant<int, S>{}, i) for consecutive groups [i, i + S) of [first, last), in
// order: as many groups of Max as fit, then of 2 and 1.
template <int Max, typename F>
SIMDNORM_INLINE void forEachGroup(int64_t first, int64_t last, F f) {
  static_assert(Max == 1 || Max == 2 || Max == 4, "groups of 4, 2, 1");
  int64_t i = first;
  if constexpr (Max >= 4) {
    for (; i + 4 <= last; i += 4) f(std::integral_constant<int, 4>{}, i);
  }
  if constexpr (Max >= 2) {
    for (; i + 2 <= last; i += 2) f(std::integral_constant<int, 2>{}, i);
  }
  for (; i < last; i++) f(std::integral_constant<int, 1>{}, i);
}

struct Plan {
  Geometry g;
  int64_t count;  // M, values per channel
  bool rows;
  // Rows path in one row block, with tiles of whole channels: one task per tile does it all.
  bool fusedRows;
  // Planes path, training: one task per channel computes its statistics and then its output
  // while the channel is still in cache. Else the output goes in memory order (applyInOrder).
  bool fused;
  // planes path
  int64_t planesPerBlock, pieceLength, pieces, blocksPerChannel;
  // rows path
  int64_t runs;  // [channels][inner] runs per row
  int64_t period, rowCount, lastRowLength, rowsPerBlock, rowBlocks, tileColumns, tiles;

  // Planes path: the spans of block b of channel c, in order, in lockstep groups of up to Max
  // (forEachGroup): f(std::integral_constant<int, S>, the group's first offset, the offset
  // between its spans, length).
  template <int Max, typename F>
  SIMDNORM_INLINE void forEachSpanGroup(int64_t c, int64_t b, F f) const {
    int64_t group = b / pieces, piece = b % pieces;
    int64_t o0 = group * planesPerBlock, o1 = minOf(g.outer, o0 + planesPerBlock);
    int64_t k0 = piece * pieceLength, length = minOf(g.inner, k0 + pieceLength) - k0;
    forEachGroup<Max>(o0, o1, [&](auto streams, int64_t o) SIMDNORM_LAMBDA_INLINE {
      f(streams, (o * g.channels + c) * g.inner + k0, g.channels * g.inner, length);
    });
  }
  // The same one span at a time: f(offset, length).
  template <typename F>
  SIMDNORM_INLINE void forEachSpan(int64_t c, int64_t b, F f) const {
    forEachSpanGroup<1>(c, b, [&](auto, int64_t start, int64_t, int64_t length) SIMDNORM_LAMBDA_INLINE {
      f(start, length);
    });
  }
  int64_t orderTasks() const { return ceilDiv(g.outer * g.channels, planesPerBlock) * pieces; }
  int64_t blockStart(int64_t c, int64_t b) const {
    return ((b / pieces) * planesPerBlock * g.channels + c) * g.inner + (b % pieces) * pieceLength;
  }

  // Rows path.
  int64_t rowTasks() const { return rowBlocks * tiles; }
  int64_t rowLength(int64_t r) const { return r == rowCount - 1 ? lastRowLength : period; }
  // The end of the whole rows of [.., r1): r1, or r1 - 1 when r1 ends the tensor with a short row.
  int64_t wholeRowsEnd(int64_t r1) const { return r1 == rowCount && lastRowLength < period ? r1 - 1 : r1; }
  int64_t firstRow(int64_t task) const { return task / tiles * rowsPerBlock; }
  // Calls f(column, channel) for the columns [first, first + n) of a row, past the period too
  // (it wraps).
  template <typename F>
  void forEachColumnFrom(int64_t first, int64_t n, F f) const {
    int64_t c = first % (g.channels * g.inner) / g.inner, i = first % g.inner;
    for (int64_t p = first; p < first + n; p++) {
      f(p, c);
      if (++i == g.inner) {
        i = 0;
        if (++c == g.channels) c = 0;
      }
    }
  }
  // Calls f(column, rows of that column in the block) for the columns of channel c in row block
  // rb, in order.
  template <typename F>
  void forEachColumnOf(int64_t rb, int64_t c, F f) const {
    const int64_t width = g.channels * g.inner, r1 = minOf(rowCount, (rb + 1) * rowsPerBlock);
    const int64_t rows = r1 - rb * rowsPerBlock;
    for (int64_t run = 0; run < runs; run++) {
      for (int64_t p = run * width + c * g.inner, end = p + g.inner; p < end; p++) {
        const int64_t n = rows - (r1 == rowCount && p >= lastRowLength ? 1 : 0);
        if (n > 0) f(p, n);
      }
    }
  }
  // The column where channel c starts in a row: its statistics blocks are shifted by the value
  // there in the block's first row.
  int64_t firstColumnOf(int64_t c) const { return c * g.inner; }
  // Whether column p of a row is channel p (channels-last in one run): per-column values are
  // per-channel values, no gathering.
  bool columnIsChannel() const { return g.inner == 1 && runs == 1; }
  // Channels-last with a few values per channel (M <= kFewRows): the moments of a chunk of
  // channels are taken straight from x (fewRowsMoments), without per-column partial sums.
  bool fewRows() const { return columnIsChannel() && rowCount <= kFewRows; }
  // Tasks of fusedRows: tile t holds channels [firstChannel(t), firstChannel(t + 1)).
  int64_t firstChannel(int64_t tile) const { return minOf(g.channels, tile * tileColumns / g.inner); }
};

inline int64_t gcdOf(int64_t a, int64_t b) {
  while (b != 0) {
    int64_t t = a % b;
    a = b;
    b = t;
  }
  return a;
}

template <typename T>
void rowsPlan(Plan& p);

// Needs g.elements() > 0.
template <typename T>
Plan makePlan(Geometry g) {
  Plan p{};
  p.g = g;
  p.count = g.perChannel();
  // Planes of a few values: rows, whose per-column coefficient arrays are reused over many rows.
  // Planes shorter than kFusedRowsMaxPlane in one row block: rows too when fusedRows holds (a
  // task per tile of whole channels; measured: NCL [32,4096,16] train 2.1 vs 3.6-4.3 of the copy
  // bound on planes, NCHW [32,2048,7,7] slower on rows).
  rowsPlan<T>(p);
  p.rows = g.inner < kMinPlane || (g.inner < kFusedRowsMaxPlane && p.fusedRows);
  p.fusedRows = p.rows && p.fusedRows;
  if (!p.rows) {
    p.pieces = ceilDiv(g.inner, kBlockElements);
    p.pieceLength = p.pieces == 1 ? g.inner : ceilDiv(ceilDiv(g.inner, p.pieces), 64) * 64;
    p.pieces = ceilDiv(g.inner, p.pieceLength);
    p.planesPerBlock = p.pieces == 1 ? maxOf(1, kBlockElements / g.inner) : 1;
    // Whole lockstep groups (forEachSpanGroup).
    if (p.planesPerBlock > kPlaneStreams) p.planesPerBlock -= p.planesPerBlock % kPlaneStreams;
    p.blocksPerChannel = ceilDiv(g.outer, p.planesPerBlock) * p.pieces;
    p.fused = g.channels >= kFusedMinChannels && g.inner >= kFusedMinPlane;
  }
  return p;
}

// The rows path's fields of p (p.g set).
template <typename T>
void rowsPlan(Plan& p) {
  const Geometry& g = p.g;
  const int64_t width = g.channels * g.inner, vector = lanes<T>();
  p.runs = 1;
  if (width % vector != 0 && width * (vector / gcdOf(width, vector)) <= 4096) {
    p.runs = vector / gcdOf(width, vector);  // rows a multiple of the vector: no tails
  }
  if (width * p.runs < 64) p.runs *= ceilDiv(64, width * p.runs);  // short rows cost loop overhead
  p.period = width * p.runs;
  p.rowCount = ceilDiv(g.outer, p.runs);
  p.lastRowLength = g.elements() - (p.rowCount - 1) * p.period;
  p.rowsPerBlock = maxOf(kMinRowsPerBlock, kRowBlockElements / p.period);
  p.rowBlocks = ceilDiv(p.rowCount, p.rowsPerBlock);
  p.tileColumns = minOf(p.period, kTileColumns);
  // One run per row: tiles of whole channels (planes are shorter than a tile on this path).
  if (p.runs == 1 && g.inner <= kTileColumns) p.tileColumns = minOf(p.period, kTileColumns / g.inner * g.inner);
  p.tiles = ceilDiv(p.period, p.tileColumns);
  p.fusedRows = p.rowBlocks == 1 && (p.runs == 1 || p.tiles == 1);
}

// ---- statistics helpers -------------------------------------------------------------------

// Count, mean and sum of squared deviations of a set of values (Chan et al.).
// The moments of n values: the mean as shift + dev / n, where shift is the first block's shift
// and dev = sum(x - shift) (a block's S1; merging adds (b.shift - a.shift) * b.n + b.dev), and
// m2 = sum((x - mean)^2). dev and the differences of shifts have the size of the data's spread,
// not of the mean, so the mean is rounded once, when it is formed (within an ulp of sum(x)/n
// however many blocks there are), and Chan's merge of m2 sees the difference of two block means
// at the spread's precision. Merging rounded means instead drifts by an ulp of |mean| per merge,
// which for float64 data at 1e8 +- 1 moves the variance by 1e-10.
struct Moments {
  double n, mean, m2, shift, dev;  // mean = shift + dev / n
};

// The shift of a block's shifted sums: one of its values, or 0 when that is not finite (the
// channel's moments are then not finite either, and the kernels recompute it plainly).
inline double shiftOf(double v) { return __builtin_isfinite(v) ? v : 0; }

// From shifted sums S1 = sum(x - s), S2 = sum((x - s)^2) over n values. S1 * (S1 / n), not
// S1 * S1 / n: S1 * S1 overflows (to a variance of 0) where S2 and the variance do not.
inline Moments shiftedMoments(double n, double s, double s1, double s2) {
  double m2 = s2 - s1 * (s1 / n);
  return {n, s + s1 / n, m2 < 0 ? 0 : m2, s, s1};  // rounding can leave -tiny; NaN stays NaN
}

inline void merge(Moments& a, const Moments& b) {
  if (a.n == 0) {
    a = b;
    return;
  }
  const double n = a.n + b.n, delta = (b.shift - a.shift) + (b.dev / b.n - a.dev / a.n);
  a.m2 += b.m2 + delta * delta * (a.n * b.n / n);
  a.dev += (b.shift - a.shift) * b.n + b.dev;
  a.n = n;
  a.mean = a.shift + a.dev / n;
}

// Whether these moments are IEEE's values; if not (+-Inf or NaN among the values, or squares
// beyond double's range), the channel is recomputed by plainMoments.
inline bool finite(const Moments& m) { return __builtin_isfinite(m.mean) && __builtin_isfinite(m.m2); }

// ---- the two loops ------------------------------------------------------------------------

// Two values per element (e.g. x - s and its square) accumulated by a reduction.
struct Terms {
  VDouble u, v;
};

template <typename T>
inline Vec<T> loadLanes(const T* p, int64_t k) {
  return k == lanes<T>() ? load<Vec<T>>(p) : loadPartial<Vec<T>>(p, k);
}
template <typename T>
inline VDouble loadDoubleLanes(const T* p, int64_t k) {
  return k == kDoubleLanes ? loadDouble(p) : loadDoublePartial(p, k);
}

// Float lanes as two halves of kDoubleLanes, converted to double.
// (Templates: only instantiated where kFloatRuns holds, as the shuffles need four lanes.)
template <typename V>
inline void toDoubles(V v, VDouble& lo, VDouble& hi) {
#if defined(__AVX2__) && defined(__FMA__)
  lo = (VDouble)_mm256_cvtps_pd(_mm256_castps256_ps128((__m256)v));
  hi = (VDouble)_mm256_cvtps_pd(_mm256_extractf128_ps((__m256)v, 1));
#else
  static_assert(sizeof(V) == 4 * sizeof(float) && kDoubleLanes == 2, "float and double lanes");
  lo = __builtin_convertvector(__builtin_shufflevector(v, v, 0, 1), VDouble);
  hi = __builtin_convertvector(__builtin_shufflevector(v, v, 2, 3), VDouble);
#endif
}

// Whether every lane of a float mask is set.
template <typename M>
inline bool allLanes(M m) {
#if defined(__AVX2__) && defined(__FMA__)
  return _mm256_movemask_ps((__m256)m) == 0xff;
#elif defined(__SSE2__)
  return _mm_movemask_ps((__m128)m) == 0xf;
#else
  M a = m & __builtin_shufflevector(m, m, 2, 3, 0, 1);
  return (a[0] & a[1]) != 0;
#endif
}

// Whether reductions may sum float terms in float over short runs (kFloatRun values per lane:
// rows on the rows path, vectors on the planes path) before adding them to the double sums: a
// vector of floats is two vectors of doubles.
constexpr bool kFloatRuns = kFloatLanes == 2 * kDoubleLanes;
constexpr int64_t kFloatRun = 32;
// Whether the rows path sums 8 float vectors of a row at a time (16 accumulators): not in WASM,
// whose engines keep at most 16 vectors in registers and spill the rest inside the loop.
#if defined(__wasm__)
constexpr bool kWideFloatUnits = false;
#else
constexpr bool kWideFloatUnits = true;
#endif

// Two float values per element, as Terms.
struct FloatTerms {
  VFloat u, v;
};

// Running sums of a reduction: four chains of each, to hide the add latency.
struct Sums {
  VDouble u[4] = {}, v[4] = {};
  double sumU() const { return sumLanes((u[0] + u[1]) + (u[2] + u[3])); }
  double sumV() const { return sumLanes((v[0] + v[1]) + (v[2] + v[3])); }
};

// Adds term(i, k) over i in [0, n) to sums; term(i, k) gives the values of elements i .. i+k-1
// (k <= kDoubleLanes; lanes past k are dropped here). With termF (not nullptr_t; kFloatRuns
// only), runs of kFloatRun whole float vectors are summed in float first, each run's sums then
// added in double where ok(s1, s2) holds for every lane (as sumColumnsFloat), else the run is
// summed by term in double: float where it is accurate, and half the work of double.
// S streams (1, 2 or 4) of n elements each, the stream q's element i at index i + q * stride of
// term and termF, go in lockstep: each of the four chains of sums takes its vectors from one
// stream (S = 4) or from every other vector of one (S = 2). A run is then kFloatRun / S vectors
// of each stream, kFloatRun values per lane as with one stream.
template <int S = 1, typename Term, typename TermF = decltype(nullptr), typename Ok = decltype(nullptr)>
SIMDNORM_INLINE void accumulate(int64_t n, int64_t stride, Term term, Sums& sums, TermF termF = nullptr,
                                Ok ok = nullptr) {
  static_assert(S == 1 || S == 2 || S == 4, "four chains over the streams");
  constexpr int64_t L = kDoubleLanes, per = 4 / S;  // chains per stream
  // Sums in locals: in the caller's memory they would be stored every step, and every value the
  // term reads through a reference read again after those stores (a vector store may alias it).
  Sums s = sums;
  int64_t i = 0;
  auto inDouble = [&](int64_t end) SIMDNORM_LAMBDA_INLINE {
    for (; i + per * L <= end; i += per * L) {
      for (int c = 0; c < 4; c++) {
        Terms t = term(i + c % per * L + c / per * stride, L);
        s.u[c] += t.u;
        s.v[c] += t.v;
      }
    }
  };
  if constexpr (!std::is_same<TermF, decltype(nullptr)>::value) {
    constexpr int64_t FL = kFloatLanes, run = kFloatRun / S * FL;
    while (i + run <= n) {
      VFloat f1[4] = {}, f2[4] = {};
      for (int64_t j = i; j < i + run; j += per * FL) {
        for (int c = 0; c < 4; c++) {
          FloatTerms t = termF(j + c % per * FL + c / per * stride);
          f1[c] += t.u;
          f2[c] += t.v;
        }
      }
      const VFloat u = (f1[0] + f1[1]) + (f1[2] + f1[3]), v = (f2[0] + f2[1]) + (f2[2] + f2[3]);
      if (allLanes(ok(u, v, static_cast<float>(kFloatRun)))) {
        VDouble lo, hi;
        toDoubles(u, lo, hi);
        s.u[0] += lo;
        s.u[1] += hi;
        toDoubles(v, lo, hi);
        s.v[0] += lo;
        s.v[1] += hi;
        i += run;
      } else {
        inDouble(i + run);
      }
    }
  }
  inDouble(n);
  for (int q = 0; q < S; q++) {
    for (int64_t j = i, c = 0; j < n; j += L, c++) {
      const int64_t k = minOf(L, n - j);
      Terms t = term(j + q * stride, k);
      s.u[c] += k < L ? keepLanes(t.u, k) : t.u;
      s.v[c] += k < L ? keepLanes(t.v, k) : t.v;
    }
  }
  sums = s;
}

// Rows [ra, rb) of U vector units from column j (k lanes each, k < L only for a lone unit at
// the end of a tile), summed in registers and then added to acc1/acc2.
template <int U, typename Term>
inline void sumColumns(const Plan& plan, int64_t ra, int64_t rb, int64_t j, int64_t k,
                       VDouble* acc1, VDouble* acc2, const Term& term) {
  constexpr int64_t L = kDoubleLanes;
  VDouble s1[U] = {}, s2[U] = {};
  for (int64_t r = ra; r < rb; r++) {
    for (int u = 0; u < U; u++) {
      Terms t = term(r * plan.period + j + u * L, j + u * L, k);
      s1[u] += t.u;
      s2[u] += t.v;
    }
  }
  for (int u = 0; u < U; u++) {
    acc1[u] += k < L ? keepLanes(s1[u], k) : s1[u];
    acc2[u] += k < L ? keepLanes(s2[u], k) : s2[u];
  }
}

// As sumColumns<U> over whole float vectors (kFloatLanes lanes each), with termF giving the
// terms in float: summed in float over runs of kFloatRun rows (from ra: fixed by the geometry),
// each run then added to acc1/acc2 in double. A run whose float sums fail ok(s1, s2, rows) (a
// lane non-finite, or so small that float squares or products may have underflowed, or whose
// later use cancels more than float's rounding allows) is summed again by termD in double, as
// sumColumns does: the float sums are only used where they are accurate.
// S streams of rows, stream q's rows [ra, rb) + q * stride, go in lockstep: a run is then
// kFloatRun / S rows of each (kFloatRun values per lane in all).
template <int U, int S, typename TermF, typename Ok, typename TermD>
inline void sumColumnsFloat(const Plan& plan, int64_t ra, int64_t rb, int64_t stride, int64_t j, VDouble* acc1,
                            VDouble* acc2, const TermF& termF, const Ok& ok, const TermD& termD) {
  constexpr int64_t L = kDoubleLanes, FL = kFloatLanes, R = kFloatRun / S;
  const int64_t period = plan.period;
  for (int64_t rs = ra; rs < rb; rs += R) {
    const int64_t re = minOf(rb, rs + R);
    VFloat s1[U] = {}, s2[U] = {};
    int64_t at[S];  // element (r, j) of each stream (an index stepped by the period, not a product)
    for (int q = 0; q < S; q++) at[q] = (rs + q * stride) * period + j;
    for (int64_t r = rs; r < re; r++) {
      for (int q = 0; q < S; q++) {
        for (int u = 0; u < U; u++) {
          FloatTerms t = termF(at[q] + u * FL, j + u * FL);
          s1[u] += t.u;
          s2[u] += t.v;
        }
        at[q] += period;
      }
    }
    for (int u = 0; u < U; u++) {
      const VFloatMask good = ok(s1[u], s2[u], static_cast<float>((re - rs) * S));
      if (allLanes(good)) {
        VDouble lo, hi;
        toDoubles(s1[u], lo, hi);
        acc1[2 * u] += lo;
        acc1[2 * u + 1] += hi;
        toDoubles(s2[u], lo, hi);
        acc2[2 * u] += lo;
        acc2[2 * u + 1] += hi;
      } else {
        for (int q = 0; q < S; q++) {
          sumColumns<2>(plan, rs + q * stride, re + q * stride, j + u * FL, L, acc1 + 2 * u, acc2 + 2 * u, termD);
        }
      }
    }
  }
}

// Rows path: per-column sums of term over the rows of a task, written to sum1/sum2[column - c0]
// for the task's columns [c0, c1). term(offset, column, k) as in accumulate, where
// offset is the element's index in the tensor. Rows go in groups that stay in L1 while the
// columns are swept four vectors at a time, each summed over the group in registers.
// With termF (not nullptr_t), whole float vectors of a row go by sumColumnsFloat. With
// kRowStreams > 1, most of the task's rows go as that many parts in lockstep.
template <typename Term, typename TermF = decltype(nullptr), typename Ok = decltype(nullptr)>
void accumulateRows(const Plan& plan, int64_t task, double* sum1, double* sum2, Term term,
                    TermF termF = nullptr, Ok ok = nullptr) {
  constexpr int64_t L = kDoubleLanes;
  constexpr bool useFloat = !std::is_same<TermF, decltype(nullptr)>::value;
  VDouble a1[kTileColumns / L], a2[kTileColumns / L];
  const int64_t r0 = plan.firstRow(task), r1 = minOf(plan.rowCount, r0 + plan.rowsPerBlock);
  const int64_t c0 = task % plan.tiles * plan.tileColumns;
  const int64_t c1 = minOf(plan.period, c0 + plan.tileColumns);
  for (int64_t u = 0; u < ceilDiv(c1 - c0, L); u++) a1[u] = a2[u] = VDouble{};
  auto sumRows = [&](auto streams, int64_t ra, int64_t rb, int64_t stride, int64_t end) {
    constexpr int S = decltype(streams)::value;
    int64_t j = c0, u = 0;
    if constexpr (useFloat) {
      constexpr int64_t FL = kFloatLanes;
      auto units = [&](auto unitCount) SIMDNORM_LAMBDA_INLINE {
        constexpr int U = decltype(unitCount)::value;
        sumColumnsFloat<U, S>(plan, ra, rb, stride, j, a1 + u, a2 + u, termF, ok, term);
        j += U * FL, u += 2 * U;
      };
      if constexpr (kWideFloatUnits) {
        while (j + 8 * FL <= end) units(std::integral_constant<int, 8>{});
      }
      while (j + 4 * FL <= end) units(std::integral_constant<int, 4>{});
      while (j + FL <= end) units(std::integral_constant<int, 1>{});
    }
    for (int q = 0; q < S; q++) {
      int64_t jj = j, uu = u;
      const int64_t qa = ra + q * stride, qb = rb + q * stride;
      for (; jj + 4 * L <= end; jj += 4 * L, uu += 4) sumColumns<4>(plan, qa, qb, jj, L, a1 + uu, a2 + uu, term);
      for (; jj + L <= end; jj += L, uu++) sumColumns<1>(plan, qa, qb, jj, L, a1 + uu, a2 + uu, term);
      if (jj < end) sumColumns<1>(plan, qa, qb, jj, end - jj, a1 + uu, a2 + uu, term);
    }
  };
  const int64_t group = maxOf(4, 16384 / ((c1 - c0) * static_cast<int64_t>(sizeof(double))));
  // The tensor's last row may be short: it goes on its own.
  const int64_t full = plan.wholeRowsEnd(r1);
  int64_t from = r0;
  if constexpr (kRowStreams > 1) {
    // kRowStreams parts of `per` rows (whole float runs), a group's share of rows from each.
    constexpr int64_t run = kFloatRun / kRowStreams;
    const int64_t per = (full - r0) / kRowStreams / kFloatRun * kFloatRun;
    const int64_t rows = maxOf(run, group / kRowStreams / run * run);
    for (int64_t ra = 0; ra < per; ra += rows) {
      sumRows(std::integral_constant<int, kRowStreams>{}, r0 + ra, r0 + minOf(per, ra + rows), per, c1);
    }
    from = r0 + per * kRowStreams;
  }
  constexpr std::integral_constant<int, 1> one{};
  for (int64_t ra = from; ra < full; ra += group) sumRows(one, ra, minOf(full, ra + group), 0, c1);
  if (full < r1) sumRows(one, full, r1, 0, minOf(c1, plan.lastRowLength));
  // a1 and a2 hold the sums in column order.
  __builtin_memcpy(sum1, a1, static_cast<size_t>(c1 - c0) * sizeof(double));
  __builtin_memcpy(sum2, a2, static_cast<size_t>(c1 - c0) * sizeof(double));
}

// dst[i] = value(start + i, i, k) for the vectors of [i, end) with plain stores; returns end.
template <typename T, typename Value>
SIMDNORM_INLINE int64_t writePlain(T* dst, int64_t start, int64_t i, int64_t end, Value& value) {
  constexpr int64_t L = lanes<T>();
  for (; i + L <= end; i += L) store(dst + i, value(start + i, i, L));
  if (i < end) storePartial(dst + i, value(start + i, i, end - i), end - i);
  return end;
}

// The stores of one run out[start, start + n): plain ones at the ends and, with stream,
// streaming ones for the whole 64-byte lines between (a line written partly both ways is slow).
// The vectors lie on a fixed grid: from 0, from streamBegin and from streamEnd, each range ending
// with a partial vector. Callers write the run piece by piece (write(i, end, value) with i and
// end on the grid), so that their loops need no per-vector bookkeeping: a piece is a stretch of
// vectors with the same coefficients.
template <typename T>
struct RunWriter {
  static constexpr int64_t L = lanes<T>();
  T* dst;
  int64_t start, n, streamBegin = 0, streamEnd = 0;

  RunWriter(T* out, int64_t start_, int64_t n_, bool stream) : dst(out + start_), start(start_), n(n_) {
    constexpr int64_t kLine = 64 / sizeof(T);
    const uintptr_t address = reinterpret_cast<uintptr_t>(dst);
    if (kCanStream && stream && address % sizeof(T) == 0) {
      const int64_t begin = static_cast<int64_t>((64 - address % 64) % 64 / sizeof(T));
      if (begin + kLine <= n) {
        streamBegin = begin;
        streamEnd = begin + (n - begin) / kLine * kLine;
      }
    }
  }
  // The last grid point at or before x (0 <= x).
  int64_t gridFloor(int64_t x) const {
    if (x >= n) return n;
    if (x >= streamEnd) return streamEnd + (x - streamEnd) / L * L;
    if (x >= streamBegin) return streamBegin + (x - streamBegin) / L * L;
    return x / L * L;
  }
  // The end of the vector at grid point i < n.
  int64_t vectorEnd(int64_t i) const {
    const int64_t limit = i < streamBegin ? streamBegin : i < streamEnd ? streamEnd : n;
    return minOf(limit, i + L);
  }
  // out[start + j] = value(start + j, j, k) for the vectors of [i, end) (grid points), k lanes
  // each, in order; returns end.
  template <typename Value>
  SIMDNORM_INLINE int64_t write(int64_t i, int64_t end, Value& value) const {
    if (i < streamBegin) i = writePlain(dst, start, i, minOf(end, streamBegin), value);
    for (const int64_t e = minOf(end, streamEnd); i < e; i += L) streamStore(dst + i, value(start + i, i, L));
    if (i < end) i = writePlain(dst, start, i, end, value);
    return end;
  }
};

// Four per-channel coefficients of an element-wise formula (e.g. mean hi, mean lo, scale, shift).
template <typename T>
struct Coefficients {
  T v[4];
};

// out = op(offset, k, coefficient vectors) over [start, start + n), one channel's coefficients.
template <typename T, typename Op>
SIMDNORM_INLINE void applySpan(T* out, int64_t start, int64_t n, const Coefficients<T>& k4, bool stream,
                               const Op& op) {
  const Op o = op;  // a local copy stays in registers (a store through out cannot change it)
  Vec<T> p[4];
  for (int q = 0; q < 4; q++) p[q] = splat<Vec<T>>(k4.v[q]);
  auto value = [&](int64_t offset, int64_t, int64_t k) SIMDNORM_LAMBDA_INLINE { return o(offset, k, p); };
  RunWriter<T>(out, start, n, stream).write(0, n, value);
}

// out over S spans of n values in lockstep, span q at [start + q * stride, + n), with plain
// stores (a partial vector at each span's end); coefficientsOf(q) gives span q's four
// coefficient vectors.
template <int S, typename T, typename Op, typename Coef>
SIMDNORM_INLINE void applyLockstep(T* out, int64_t start, int64_t stride, int64_t n, const Coef& coefficientsOf,
                                   const Op& o) {
  constexpr int64_t L = lanes<T>();
  int64_t i = start;
  for (const int64_t end = start + n / L * L; i < end; i += L) {
    for (int q = 0; q < S; q++) store(out + i + q * stride, o(i + q * stride, L, coefficientsOf(q)));
  }
  const int64_t k = start + n - i;
  if (k == 0) return;
  for (int q = 0; q < S; q++) storePartial(out + i + q * stride, o(i + q * stride, k, coefficientsOf(q)), k);
}

// Planes path: the same over block b of channel c; with kWriteStreams, its spans in lockstep
// groups (forEachSpanGroup).
template <typename T, typename Op>
SIMDNORM_INLINE void applyBlock(T* out, const Plan& plan, int64_t c, int64_t b, const Coefficients<T>& k4,
                                bool stream, const Op& op) {
  if (kWriteStreams == 1 || (kCanStream && stream)) {
    plan.forEachSpan(c, b, [&](int64_t start, int64_t n) SIMDNORM_LAMBDA_INLINE {
      applySpan(out, start, n, k4, stream, op);
    });
    return;
  }
  const Op o = op;  // a local copy stays in registers (a store through out cannot change it)
  Vec<T> p[4];
  for (int q = 0; q < 4; q++) p[q] = splat<Vec<T>>(k4.v[q]);
  auto coefficientsOf = [&](int) SIMDNORM_LAMBDA_INLINE { return p; };
  plan.forEachSpanGroup<kWriteStreams>(c, b, [&](auto streams, int64_t start, int64_t stride, int64_t n)
                                                 SIMDNORM_LAMBDA_INLINE {
    applyLockstep<decltype(streams)::value>(out, start, stride, n, coefficientsOf, o);
  });
}

// Planes path in memory order, for a pass that gains nothing from the channel order: task t is
// planesPerBlock consecutive planes of the [outer][channels] sequence written as one run (or
// piece t % pieces of one plane), so the tensor streams through like a copy. A vector that
// crosses into the next plane takes the coefficients of both (planes hold >= lanes values).
// orderTasks() tasks.
template <typename T, typename Op>
SIMDNORM_INLINE void applyInOrder(T* out, const Plan& plan, int64_t task, const Coefficients<T>* coef,
                                  bool stream, const Op& op) {
  const int64_t planes = plan.g.outer * plan.g.channels, inner = plan.g.inner, channels = plan.g.channels;
  if (plan.pieces > 1) {
    const int64_t k0 = task % plan.pieces * plan.pieceLength, plane = task / plan.pieces;
    applySpan(out, plane * inner + k0, minOf(inner, k0 + plan.pieceLength) - k0, coef[plane % channels],
              stream, op);
    return;
  }
  const Op o = op;
  const int64_t first = task * plan.planesPerBlock, last = minOf(planes, first + plan.planesPerBlock);
  if (kWriteStreams > 1 && !(kCanStream && stream)) {
    // The planes in lockstep groups, as applyBlock.
    forEachGroup<kWriteStreams>(first, last, [&](auto streams, int64_t plane) SIMDNORM_LAMBDA_INLINE {
      constexpr int S = decltype(streams)::value;
      Vec<T> p[S][4];
      for (int q = 0; q < S; q++) {
        for (int k = 0; k < 4; k++) p[q][k] = splat<Vec<T>>(coef[(plane + q) % channels].v[k]);
      }
      applyLockstep<S>(out, plane * inner, inner, inner, [&](int q) SIMDNORM_LAMBDA_INLINE { return p[q]; }, o);
    });
    return;
  }
  const int64_t n = (last - first) * inner;
  const RunWriter<T> w(out, first * inner, n, stream);
  int64_t c = first % channels;
  Vec<T> now[4], next[4];
  auto splatChannel = [&](Vec<T>* p, int64_t channel) SIMDNORM_LAMBDA_INLINE {
    for (int q = 0; q < 4; q++) p[q] = splat<Vec<T>>(coef[channel].v[q]);
  };
  splatChannel(now, c);
  auto steady = [&](int64_t at, int64_t, int64_t k) SIMDNORM_LAMBDA_INLINE { return o(at, k, now); };
  for (int64_t i = 0, planeEnd = inner; i < n; planeEnd += inner) {
    // The vectors inside the plane, then the one that crosses its end (if any).
    i = w.write(i, w.gridFloor(planeEnd), steady);
    if (i >= n) break;
    splatChannel(next, c + 1 == channels ? 0 : c + 1);
    if (i < planeEnd) {
      const auto mine = lanesBelow<T>(planeEnd - i);
      auto crossing = [&](int64_t at, int64_t, int64_t k) SIMDNORM_LAMBDA_INLINE {
        Vec<T> p[4];
        for (int q = 0; q < 4; q++) p[q] = select(mine, now[q], next[q]);
        return o(at, k, p);
      };
      i = w.write(i, w.vectorEnd(i), crossing);
    }
    c = c + 1 == channels ? 0 : c + 1;
    for (int q = 0; q < 4; q++) now[q] = next[q];
  }
}

// Rows path: the same over a task, with the coefficients of column p at columns[0..3][p]
// (spreadToColumns). A task of whole rows is one contiguous run, so that its vectors (and the
// streaming-store lines) run across row ends: the coefficient arrays repeat their first vector
// after the last column, and a vector that starts in a row takes its coefficients from there.
template <typename T, typename Op>
SIMDNORM_INLINE void applyRows(T* out, const Plan& plan, int64_t task, T* const* columns, bool stream,
                               const Op& op) {
  const Op o = op;
  const int64_t r0 = plan.firstRow(task), r1 = minOf(plan.rowCount, r0 + plan.rowsPerBlock);
  const int64_t c0 = task % plan.tiles * plan.tileColumns;
  const int64_t c1 = minOf(plan.period, c0 + plan.tileColumns);
  T* const cols[4] = {columns[0], columns[1], columns[2], columns[3]};
  const int64_t period = plan.period;
  // The run [start, start + n) from column `column`; a row ends every period values.
  auto run = [&](int64_t start, int64_t n, int64_t column) SIMDNORM_LAMBDA_INLINE {
    const RunWriter<T> w(out, start, n, stream);
    int64_t base = column;  // run index j is at column base + j within the current row
    auto value = [&](int64_t offset, int64_t j, int64_t k) SIMDNORM_LAMBDA_INLINE {
      Vec<T> p[4];
      for (int q = 0; q < 4; q++) p[q] = loadLanes(cols[q] + (base + j), k);
      return o(offset, k, p);
    };
    for (int64_t i = 0, rowEnd = period - column; i < n; rowEnd += period, base -= period) {
      // The vectors that start in this row.
      const int64_t e = w.gridFloor(rowEnd);
      i = w.write(i, e < rowEnd && e < n ? w.vectorEnd(e) : e, value);
    }
  };
  if (plan.tiles == 1) {
    int64_t from = r0;
    if constexpr (kWriteStreams > 1) {
      // Rows of whole vectors, without streaming stores: most of the task's rows as kWriteStreams
      // parts in lockstep, each coefficient vector loaded once for all of them.
      constexpr int64_t L = lanes<T>();
      if (!(kCanStream && stream) && period % L == 0) {
        const int64_t full = plan.wholeRowsEnd(r1);
        const int64_t per = (full - r0) / kWriteStreams;
        for (int64_t at = r0 * period, end = (r0 + per) * period, apart = per * period; at < end; at += period) {
          for (int64_t j = 0; j < period; j += L) {
            Vec<T> p[4];
            for (int q = 0; q < 4; q++) p[q] = load<Vec<T>>(cols[q] + j);
            for (int s = 0; s < kWriteStreams; s++) {
              const int64_t offset = at + s * apart + j;
              store(out + offset, o(offset, L, p));
            }
          }
        }
        from = r0 + per * kWriteStreams;
      }
    }
    const int64_t start = from * plan.period;
    if (from < r1) run(start, minOf(plan.g.elements(), r1 * plan.period) - start, 0);
  } else {
    for (int64_t r = r0; r < r1; r++) {
      const int64_t end = minOf(c1, plan.rowLength(r));
      if (end > c0) run(r * plan.period + c0, end - c0, c0);
    }
  }
}

// fusedRows: out over the columns [c0, c1) of every row, with the coefficients of column c0 + i at
// cols[q][i].
template <typename T, typename Op>
SIMDNORM_INLINE void applyTile(T* out, const Plan& plan, int64_t c0, int64_t c1, T* const* cols, bool stream,
                               const Op& op) {
  const Op o = op;  // a local copy stays in registers (a store through out cannot change it)
  const T* const c[4] = {cols[0], cols[1], cols[2], cols[3]};
  for (int64_t r = 0; r < plan.rowCount; r++) {
    const int64_t end = minOf(c1, plan.rowLength(r));
    if (end <= c0) continue;
    auto value = [&](int64_t offset, int64_t i, int64_t k) SIMDNORM_LAMBDA_INLINE {
      Vec<T> p[4];
      for (int q = 0; q < 4; q++) p[q] = loadLanes(c[q] + i, k);
      return o(offset, k, p);
    };
    RunWriter<T>(out, r * plan.period + c0, end - c0, stream).write(0, end - c0, value);
  }
}

// Rows path: per-channel coefficients copied to every column of a row, and to the first
// lanes<T>() columns again after the last (columns[q] has period + lanes<T>() entries).
template <typename T>
void spreadToColumns(const Plan& plan, const Coefficients<T>* perChannel, T* const* columns) {
  plan.forEachColumnFrom(0, plan.period + lanes<T>(), [&](int64_t p, int64_t c) {
    for (int q = 0; q < 4; q++) columns[q][p] = perChannel[c].v[q];
  });
}

inline int64_t columnEntries(const Plan& plan, int vectorLanes) {
  return plan.rows ? plan.period + vectorLanes : 0;
}

// ---- per-channel work over chunks of channels --------------------------------------------

// f(j, k) for the double vectors of [0, n): lanes [j, j + k), k <= kDoubleLanes.
// (Whole vectors first: f inlined with k constant.)
template <typename F>
SIMDNORM_INLINE void forLanes(int64_t n, F f) {
  int64_t j = 0;
  for (; j + kDoubleLanes <= n; j += kDoubleLanes) f(j, kDoubleLanes);
  if (j < n) f(j, n - j);
}

// Chunk arrays: kChannelChunk entries, a whole number of vectors. A tile of fusedRows holds at
// most kTileColumns channels: one chunk.
static_assert(kChannelChunk % 8 == 0 && kChannelChunk >= kTileColumns, "chunks of whole vectors, tiles in one chunk");

// Rows path: the sums of channels [ca, ca + n) in row block rb from per-column sums (column p at
// sum1[p - base], sum2[p - base]): count[j] values, s1[j], s2[j]. Entries from n to the next
// whole vector are zero.
inline void channelSums(const Plan& plan, int64_t rb, int64_t ca, int64_t n, const double* sum1, const double* sum2,
                        int64_t base, double* count, double* s1, double* s2) {
  const int64_t r1 = minOf(plan.rowCount, (rb + 1) * plan.rowsPerBlock);
  const double rows = static_cast<double>(r1 - rb * plan.rowsPerBlock);
  const int64_t padded = ceilDiv(n, kDoubleLanes) * kDoubleLanes;
  if (plan.columnIsChannel()) {
    // Columns from shortFrom on are missing in the tensor's last row.
    const int64_t shortFrom = r1 == plan.rowCount ? plan.lastRowLength : plan.period;
    for (int64_t j = 0; j < n; j++) {
      count[j] = ca + j < shortFrom ? rows : rows - 1;
      s1[j] = sum1[ca + j - base];
      s2[j] = sum2[ca + j - base];
    }
  } else {
    for (int64_t j = 0; j < n; j++) {
      double c = 0, a = 0, b = 0;
      plan.forEachColumnOf(rb, ca + j, [&](int64_t p, int64_t rowsOfColumn) {
        c += static_cast<double>(rowsOfColumn);
        a += sum1[p - base];
        b += sum2[p - base];
      });
      count[j] = c;
      s1[j] = a;
      s2[j] = b;
    }
  }
  for (int64_t j = n; j < padded; j++) count[j] = s1[j] = s2[j] = 0;
}

// Rows path: per-channel values value[j] of channels [ca, ca + n) copied to their columns,
// columns[q][p - base] for every column p of those channels (in every run of a row).
template <typename T>
void spreadChannels(const Plan& plan, int64_t ca, int64_t n, const T* const* value, T* const* columns, int64_t base) {
  const int64_t width = plan.g.channels * plan.g.inner, inner = plan.g.inner;
  for (int q = 0; q < 4; q++) {
    for (int64_t run = 0; run < plan.runs; run++) {
      T* dst = columns[q] + run * width + ca * inner - base;
      const T* src = value[q];
      if (inner == 1) {
        for (int64_t j = 0; j < n; j++) dst[j] = src[j];
      } else {
        for (int64_t j = 0; j < n; j++) {
          for (int64_t i = 0; i < inner; i++) dst[j * inner + i] = src[j];
        }
      }
    }
  }
}

// Rows path, after spreadChannels over all channels: the first vector again after the last
// column (columns[q] has period + lanes entries; applyRows' vectors run across row ends).
template <typename T>
void wrapColumns(const Plan& plan, T* const* columns) {
  for (int q = 0; q < 4; q++) {
    for (int64_t p = 0; p < lanes<T>(); p++) columns[q][plan.period + p] = columns[q][p % plan.period];
  }
}

// Moments of a chunk of channels, one array per field.
// (The fields of Moments: mean = shift + dev / n.)
struct ChunkMoments {
  double n[kChannelChunk], mean[kChannelChunk], m2[kChannelChunk], shift[kChannelChunk], dev[kChannelChunk];
};

// ---- channels computed plainly ------------------------------------------------------------

// Calls f(index) for every element of channel c, in memory order (the reference's order).
template <typename F>
void forEachOfChannel(const Geometry& g, int64_t c, F f) {
  for (int64_t o = 0; o < g.outer; o++) {
    for (int64_t i = (o * g.channels + c) * g.inner, end = i + g.inner; i < end; i++) f(i);
  }
}

// Whether a per-channel coefficient of the vector formula is too far from 1 to stand for the
// reference's formula: for float, a coefficient kept as a float that would lose what it holds (finite
// and non-zero but outside float's normal range, with room), as with gamma ~ 1e37 or a data std
// above ~1e19; for double, one so large or small (gamma ~ 1e308) that the vector formula's
// products overflow or underflow where the reference's formula, in another order, does not (or the
// other way round).
template <typename T>
inline bool outsideCoefficientRange(double v) {
  const double a = __builtin_fabs(v);
  const double low = sizeof(T) == sizeof(float) ? 0x1p-120 : 0x1p-960;
  const double high = sizeof(T) == sizeof(float) ? 0x1p120 : 0x1p960;
  return __builtin_isfinite(a) && a != 0 && (a < low || a > high);
}

// Whether a channel's output is computed by the reference's per-element formula in double
// (forward.cpp's normalizeChannel, backward.cpp's gradChannel) instead of the vector formula:
//  - a per-channel value is not finite (the vector formula's forms, e.g. the hi/lo split of an
//    infinite mean or backward's expanded dx, meet Inf - Inf where the reference's formula does not);
//  - an additive coefficient (a mean, beta, backward's k * dbeta / M) is so large that T's
//    arithmetic overflows next to it where the reference's, in double, does not (x - mean with
//    x = FLT_MAX and mean = -3e37): 2^100 for float (x - mean cannot overflow below 2^103),
//    2^960 for double;
//  - a multiplicative coefficient is outside outsideCoefficientRange.
// Other channels keep the vector path.
template <typename T>
inline bool plainChannel(std::initializer_list<double> values, std::initializer_list<double> offsets,
                         std::initializer_list<double> scales) {
  const double offsetLimit = sizeof(T) == sizeof(float) ? 0x1p100 : 0x1p960;
  for (double v : values) {
    if (!__builtin_isfinite(v)) return true;
  }
  for (double v : offsets) {
    if (!(__builtin_fabs(v) <= offsetLimit)) return true;
  }
  for (double v : scales) {
    if (!__builtin_isfinite(v) || outsideCoefficientRange<T>(v)) return true;
  }
  return false;
}

// plainChannel lane by lane (masks): not finite, an offset beyond the limit, a scale outside
// outsideCoefficientRange.
inline VDoubleMask notFiniteLanes(VDouble v) { return ~((v - v) == VDouble{}); }
template <typename T>
inline VDoubleMask offsetTooLargeLanes(VDouble v) {
  const double limit = sizeof(T) == sizeof(float) ? 0x1p100 : 0x1p960;
  return ~(magnitude(v) <= limit);  // NaN too
}
template <typename T>
inline VDoubleMask scaleOutsideLanes(VDouble v) {
  const double low = sizeof(T) == sizeof(float) ? 0x1p-120 : 0x1p-960;
  const double high = sizeof(T) == sizeof(float) ? 0x1p120 : 0x1p960;
  const VDouble a = select(v < VDouble{}, -v, v);
  return notFiniteLanes(v) | ((a != VDouble{}) & ((a < low) | (a > high)));
}

// k (<= kDoubleLanes) flags from the lanes of a mask, to flag[0, k); returns whether any is set.
inline bool storeFlags(bool* flag, VDoubleMask m, int64_t k) {
#if defined(__AVX2__) && defined(__FMA__)
  // One movemask, not a lane extraction per flag (per-channel work is most of the time where
  // channels hold a few values).
  const int bits = _mm256_movemask_pd((__m256d)m);
  if (k == kDoubleLanes && bits == 0) {
    std::memset(flag, 0, kDoubleLanes);
    return false;
  }
  bool any = false;
  for (int64_t i = 0; i < k; i++) any |= (flag[i] = (bits >> i & 1) != 0);
  return any;
#else
  bool any = false;
  for (int64_t i = 0; i < k; i++) any |= (flag[i] = m[i] != 0);
  return any;
#endif
}

// ---- scratch memory -----------------------------------------------------------------------

// Assigns typed arrays in the calling thread's scratch memory: layout(carver) runs twice, once
// to size and once to assign, so a kernel states its arrays once.
struct Carver {
  char* base;
  size_t used;
  template <typename U>
  void take(U*& p, int64_t n) {
    p = base ? reinterpret_cast<U*>(base + used) : nullptr;
    used += (static_cast<size_t>(n) * sizeof(U) + 63) & ~size_t{63};
  }
};
// False when the memory cannot be had (the kernel must then return at once: see scratch()).
template <typename Layout>
[[nodiscard]] bool carveScratch(Layout layout) {
  Carver sizing{nullptr, 0};
  layout(sizing);
  Carver carver{static_cast<char*>(scratch(sizing.used)), 0};
  if (carver.base == nullptr) return false;
  layout(carver);
  return true;
}

// Calls f(std::true_type) or f(std::false_type): a runtime flag as a template parameter.
template <typename F>
inline void withFlag(bool flag, F f) {
  if (flag) f(std::true_type{});
  else f(std::false_type{});
}

// ---- shared between the kernel files ------------------------------------------------------

// Per-channel moments of x (stats.cpp); g.elements() > 0. partials: momentPartials(plan) doubles
// of scratch for the per-block results.
template <typename T>
void channelMomentsOf(const T* x, const Plan& plan, Moments* out, double* partials);

inline int64_t momentPartials(const Plan& plan) {
  if (plan.rows) return 2 * plan.rowBlocks * plan.period;
  return plan.g.channels >= kFusedMinChannels
             ? 0
             : int64_t{sizeof(Moments) / sizeof(double)} * plan.g.channels * plan.blocksPerChannel;
}

// Rows path: the per-column shifted sums of rows task `task` (row block task / tiles, columns
// [c0, c1) of tile task % tiles), column p at sum1[p - c0], sum2[p - c0] (stats.cpp).
template <typename T>
void rowSums(const T* x, const Plan& plan, int64_t task, double* sum1, double* sum2);

// Rows path: moments of channels [ca, ca + n), n <= kChannelChunk, from the sums of rowSums (row
// block rb's column p at sum1[rb * stride + p - base]), merged in row-block order (stats.cpp).
template <typename T>
void chunkMoments(const T* x, const Plan& plan, int64_t ca, int64_t n, const double* sum1, const double* sum2,
                  int64_t stride, int64_t base, ChunkMoments& m);

// Rows path where plan.fewRows(): moments of channels [ca, ca + n), n <= kChannelChunk, straight
// from x (stats.cpp).
template <typename T>
void fewRowsMoments(const T* x, const Plan& plan, int64_t ca, int64_t n, ChunkMoments& m);

// Moments of block b of channel c on the planes path (stats.cpp).
template <typename T>
Moments blockMoments(const T* x, const Plan& plan, int64_t c, int64_t b);

// m, or, where m is not finite, channel c's moments computed as the reference does (stats.cpp).
template <typename T>
Moments finiteOrPlain(const T* x, const Geometry& g, int64_t c, const Moments& m);

// The running update of batchnorm.h with a batch mean of either type (running.cpp).
template <typename T, typename Mean>
bool updateRunning(T* runningMean, T* runningVar, const Mean* batchMean, const double* batchVar,
                   int64_t channels, double factor, double varScale, bool skipNonFinite);

}  // namespace SIMDNORM_ISA
}  // namespace simdnorm
