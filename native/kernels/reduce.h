// The reductions into double sums: Moments (Chan's merge, shiftedMoments), the accumulation
// loops of both paths (accumulate, accumulateRows: per-column sums, float runs where they are
// accurate), per-channel sums of a chunk of channels (channelSums, ChunkMoments), and the
// declarations of the statistics functions that stats.cpp defines for the other kernel files.
#pragma once

#include <cstdint>
#include <type_traits>

#include "batchnorm.h"
#include "plan.h"
#include "simd.h"
#include "tuning.h"

namespace simdnorm {
namespace SIMDNORM_ISA {

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

// ---- the reduction loops ------------------------------------------------------------------

// Whether float sums over a run, S1 = sum(x - s) and S2 = sum((x - s)^2), may be used: finite,
// and no square of a value that matters lost to underflow. (A functor, not a function: passed as
// a pointer it would be an indirect call per run.)
struct FloatSquaresOk {
  VFloatMask operator()(VFloat, VFloat s2, float) const {
    return (VFloatMask)(s2 >= 0x1p-100f) & (VFloatMask)(s2 <= 0x1.fffffep127f);
  }
};

// Whether float gradient sums over a run, S1 = sum(g) and S2 = sum(g * d) (d a difference from a
// mean), may be used: finite, and S2 not small enough that products may have underflowed (0 with
// S1 == 0: all of g is 0, exact).
struct GradSumsOk {
  VFloatMask operator()(VFloat s1, VFloat s2, float) const {
    constexpr float big = 0x1.fffffep127f, tiny = 0x1p-100f;
    return (VFloatMask)(s1 <= big) & (VFloatMask)(s1 >= -big) & (VFloatMask)(s2 <= big) & (VFloatMask)(s2 >= -big) &
           ((VFloatMask)(s2 >= tiny) | (VFloatMask)(s2 <= -tiny) | ((VFloatMask)(s1 == 0) & (VFloatMask)(s2 == 0)));
  }
};

// Whether the shifted sums of n values, S1 = sum(x - s) and S2 = sum((x - s)^2), partly summed
// in float, leave too little of the variance S2 - S1^2/n: float's rounding of S2 grows in it by
// S2 / (S2 - S1^2/n), which stays <= 16 while the shift is within ~4 std of the values' mean. It
// is more where the shift (the block's first value) is an outlier; the sums are then taken again
// in double. Checked once per block and column, not per run: a short run's own mean and
// variance say little.
inline bool cancels(double n, double s1, double s2) {
  return __builtin_isfinite(s2) && s1 * (s1 / n) > s2 * (15.0 / 16.0);
}

// Two values per element (e.g. x - s and its square) accumulated by a reduction.
struct Terms {
  VDouble u, v;
};

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

// Natively, the loops over the units of sumColumnsFloat unrolled: the sums then stay in registers
// (a loop over an array of them keeps the array in memory). WASM's modules stay as built.
#if defined(__wasm__)
#define SIMDNORM_UNROLL_UNITS
#else
#define SIMDNORM_UNROLL_UNITS _Pragma("GCC unroll 8")
#endif
// Natively, sumColumnsFloat with what it calls inlined: eight units are two calls of four
// (below), one call then, whose set-up is most of a call's instructions over a few rows.
#if defined(__wasm__)
#define SIMDNORM_UNITS_FLATTEN
#else
#define SIMDNORM_UNITS_FLATTEN __attribute__((flatten))
#endif

// The capture list of a float term of sumColumnsFloat: natively the named values by copy (in the
// term's copy they stay in registers), the rest by reference; in WASM all by reference, as built.
#if defined(__wasm__)
#define SIMDNORM_TERM_CAPTURE(...) &
#else
#define SIMDNORM_TERM_CAPTURE(...) &, __VA_ARGS__
#endif

// As sumColumns<U> over whole float vectors (kFloatLanes lanes each), with termF giving the
// terms in float: summed in float over runs of kFloatRun rows (from ra: fixed by the geometry),
// each run then added to acc1/acc2 in double. A run whose float sums fail ok(s1, s2, rows) (a
// lane non-finite, or so small that float squares or products may have underflowed, or whose
// later use cancels more than float's rounding allows) is summed again by termD in double, as
// sumColumns does: the float sums are only used where they are accurate.
// S streams of rows, stream q's rows [ra, rb) + q * stride, go in lockstep: a run is then
// kFloatRun / S rows of each (kFloatRun values per lane in all).
template <int U, int S, typename TermF, typename Ok, typename TermD>
SIMDNORM_UNITS_FLATTEN inline void sumColumnsFloat(const Plan& plan, int64_t ra, int64_t rb, int64_t stride, int64_t j, VDouble* acc1,
                            VDouble* acc2, const TermF& termF, const Ok& ok, const TermD& termD) {
  constexpr int64_t L = kDoubleLanes, FL = kFloatLanes, R = kFloatRun / S;
#if !defined(__wasm__)
  if constexpr (S == 1 && U > 4 && U % 4 == 0) {
    // Natively (kWideFloatUnits), over a tensor in the caches (readsAhead false), four units at a
    // time: the float sums of eight units and their terms need more than the 16 vector
    // registers, and the compiler then spills a sum and recomputes every unit's column index in
    // each row. (From memory, whole rows of eight units read faster: NHWC [32,56,56,64]'s
    // training forward took 1.1x with four.) Each column's sums are the same: its runs, the
    // order of its rows in a run and of its runs in acc1/acc2 do not depend on the units beside
    // it (ok decides per unit).
    if (!readsAhead(plan.g.elements() * static_cast<int64_t>(sizeof(float)))) {
      for (int v = 0; v < U; v += 4) {
        sumColumnsFloat<4, 1>(plan, ra, rb, stride, j + v * FL, acc1 + 2 * v, acc2 + 2 * v, termF, ok, termD);
      }
      return;
    }
  }
#endif
  const int64_t period = plan.period;
#if !defined(__wasm__)
  // A copy of the term: what it captures by value then stays in registers. Read through the
  // caller's closure it is loaded again in every row (to the compiler a prefetch may write memory).
  const TermF f = termF;
#endif
  for (int64_t rs = ra; rs < rb; rs += R) {
    const int64_t re = minOf(rb, rs + R);
#if defined(__wasm__)
    VFloat s1[U] = {}, s2[U] = {};
#else
    // Zeroed one by one: `= {}` zeroes the arrays in memory first (rep stos, twice per run).
    VFloat s1[U], s2[U];
    SIMDNORM_UNROLL_UNITS
    for (int u = 0; u < U; u++) s1[u] = s2[u] = VFloat{};
#endif
    int64_t at[S];  // element (r, j) of each stream (an index stepped by the period, not a product)
    for (int q = 0; q < S; q++) at[q] = (rs + q * stride) * period + j;
    for (int64_t r = rs; r < re; r++) {
      for (int q = 0; q < S; q++) {
        SIMDNORM_UNROLL_UNITS
        for (int u = 0; u < U; u++) {
#if defined(__wasm__)
          FloatTerms t = termF(at[q] + u * FL, j + u * FL);
#else
          FloatTerms t = f(at[q] + u * FL, j + u * FL);
#endif
          s1[u] += t.u;
          s2[u] += t.v;
        }
        at[q] += period;
      }
    }
    SIMDNORM_UNROLL_UNITS
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
  // Groups of rows whose columns' double sums stay in L1; with float runs at least a run's rows
  // (a run starts a group: shorter groups would cut every run short, and a run's check and
  // widening to double per unit then cost as much as its rows, NC [64,256]'s 8-row groups).
  const int64_t inL1 = maxOf(4, 16384 / ((c1 - c0) * static_cast<int64_t>(sizeof(double))));
  const int64_t group = useFloat ? maxOf(kFloatRun, inL1) : inL1;
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

// ---- per-channel sums over chunks of channels ---------------------------------------------

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

// Moments of a chunk of channels, one array per field.
// (The fields of Moments: mean = shift + dev / n.)
struct ChunkMoments {
  double n[kChannelChunk], mean[kChannelChunk], m2[kChannelChunk], shift[kChannelChunk], dev[kChannelChunk];
};

// ---- defined in stats.cpp, shared with the other kernel files -----------------------------

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

}  // namespace SIMDNORM_ISA
}  // namespace simdnorm
