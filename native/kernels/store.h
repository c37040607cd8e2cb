// The element-wise write engine: RunWriter (plain stores at a run's ends, streaming stores for
// the whole cache lines between), the writes of both paths over per-channel coefficients
// (applyBlock, applyInOrder, applyRows, applyTile), the rows path's per-column coefficient arrays
// (spreadToColumns, spreadChannels, wrapColumns, columnEntries), and withFlag, which makes a
// runtime flag (relu, training) a template parameter of the element-wise formula.
#pragma once

#include <cstdint>
#include <type_traits>

#include "lanes.h"
#include "plan.h"
#include "simd.h"
#include "tuning.h"

namespace simdnorm {
namespace SIMDNORM_ISA {

// dst[i] = value(start + i, i, k) for the vectors of [i, end) with plain stores; returns end.
template <typename T, typename Value>
SIMDNORM_INLINE int64_t writePlain(T* dst, int64_t start, int64_t i, int64_t end, Value& value) {
  constexpr int64_t L = lanes<T>();
  for (; i + L <= end; i += L) store(dst + i, value(start + i, i, L));
  if (i < end) storePartial(dst + i, value(start + i, i, end - i), end - i);
  return end;
}

// The whole 64-byte lines of the run p[0, n), elements [begin, end); {0, 0} where there are none
// (less than a line inside the run, or p not aligned to its elements).
struct Lines {
  int64_t begin, end;
};
template <typename T>
SIMDNORM_INLINE Lines wholeLinesOf(const T* p, int64_t n) {
  constexpr int64_t kLine = 64 / static_cast<int64_t>(sizeof(T));
  const uintptr_t address = reinterpret_cast<uintptr_t>(p);
  const int64_t begin = static_cast<int64_t>((64 - address % 64) % 64 / sizeof(T));
  if (address % sizeof(T) != 0 || begin + kLine > n) return {0, 0};
  return {begin, begin + (n - begin) / kLine * kLine};
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
    if (kCanStream && stream) {
      const Lines s = wholeLinesOf(dst, n);
      streamBegin = s.begin;
      streamEnd = s.end;
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

// Streaming (non-temporal) stores for outputs of at least kStreamBytes, as the BatchNorm kernels
// (parallelRun fences them), at any alignment: forStreamRun streams the whole 64-byte lines of a
// run and writes its ends with plain stores, so no line is written both ways and every streamed
// vector is whole. (Node's large ArrayBuffers start 16 bytes past a page: requiring an aligned
// start, as these kernels once did, left nearly every user array to plain stores, and LayerNorm
// [2048,4096]'s forward took 1.6-1.9x the time it takes with streaming stores.) AVX2 only (the
// 128-bit float store of four double lanes).
#if defined(__AVX2__) && defined(__FMA__)
constexpr bool kStreamLanes = true;
#else
constexpr bool kStreamLanes = false;
#endif

// body(j, k, S) for the vectors of the run p[0, n), in order, L elements each (k < L: the last
// vector before a streamed stretch or the run's end); S is std::true_type on the whole 64-byte
// lines between the run's ends when stream holds (the vector is to be streamed), else
// std::false_type. Without streaming stores (SSE2, NEON, WASM), one plain loop.
template <int64_t L, typename T, typename Body>
SIMDNORM_INLINE void forStreamRun(T* p, int64_t n, bool stream, Body body) {
  int64_t j = 0;
  auto plain = [&](int64_t end) SIMDNORM_LAMBDA_INLINE {
    for (; j + L <= end; j += L) body(j, L, std::false_type{});
    if (j < end) body(j, end - j, std::false_type{});
    j = end;
  };
  if constexpr (kStreamLanes) {
    if (const Lines s = stream ? wholeLinesOf(p, n) : Lines{0, 0}; s.end > s.begin) {
      plain(s.begin);
      for (; j < s.end; j += L) body(j, L, std::true_type{});
    }
  }
  plain(n);
}
// storePartial, or a whole vector (k == L) with a plain or (Stream) a streaming store.
template <bool Stream, typename T, typename V>
SIMDNORM_INLINE void putVector(T* p, V v, int64_t k) {
  if (k < static_cast<int64_t>(sizeof(V) / sizeof(T))) storePartial(p, v, k);
  else if constexpr (Stream && kStreamLanes) streamStore(p, v);
  else store(p, v);
}
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
  int64_t r = 0;
#if !defined(__wasm__)
  if (!(kCanStream && stream)) {
    // Natively, without streaming stores: the rows whole over [c0, c1) four vectors at a time
    // (one vector per iteration, the loop's bookkeeping was near half its instructions). The
    // same vectors, the same values.
    constexpr int64_t L = lanes<T>();
    const int64_t n = c1 - c0, whole = n / L * L, period = plan.period;
    const int64_t rows = plan.lastRowLength >= c1 ? plan.rowCount : plan.rowCount - 1;
    // Four rows per load of a vector's coefficients: one row at a time, the four coefficient
    // loads per vector held the loop to the load ports ([64,256] training's output). Not where
    // rows of the block lie a multiple of 4 KiB apart (within a vector): a store to one row and
    // the loads from the next then wait on each other (4K aliasing: NC [256,1024] backward
    // took 1.5x).
    constexpr int64_t kRows = 4;
    const bool rowsAlias = [&] {
      for (int64_t s = 1; s < kRows; s++) {
        const int64_t apart = s * period * static_cast<int64_t>(sizeof(T)) % 4096;
        if (apart < kVectorBytes || apart > 4096 - kVectorBytes) return true;
      }
      return false;
    }();
    // Rows [row, row + R) at the vector of columns c0 + i (k lanes), its coefficients loaded once.
    auto rowsAt = [&](auto rowCount, int64_t row, int64_t i, int64_t k) SIMDNORM_LAMBDA_INLINE {
      Vec<T> p[4];
      for (int q = 0; q < 4; q++) p[q] = loadLanes(c[q] + i, k);
      for (int64_t s = 0; s < decltype(rowCount)::value; s++) {
        const int64_t at = (row + s) * period + c0 + i;
        const Vec<T> v = o(at, k, p);
        if (k == L) store(out + at, v);
        else storePartial(out + at, v, k);
      }
    };
    constexpr std::integral_constant<int64_t, kRows> block{};
    constexpr std::integral_constant<int64_t, 1> one{};
    for (; !rowsAlias && r + kRows <= rows; r += kRows) {
      int64_t i = 0;
      for (; i < whole; i += L) rowsAt(block, r, i, L);
      if (i < n) rowsAt(block, r, i, n - i);
    }
    for (; r < rows; r++) {
      int64_t i = 0;
      for (; i + 4 * L <= whole; i += 4 * L) {
        for (int u = 0; u < 4; u++) rowsAt(one, r, i + u * L, L);
      }
      for (; i < whole; i += L) rowsAt(one, r, i, L);
      if (i < n) rowsAt(one, r, i, n - i);
    }
  }
#endif
  for (; r < plan.rowCount; r++) {
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

// A runtime flag of an element-wise formula (relu, training) as the formula's template argument
// sees it: std::true_type or std::false_type (a copy of every output loop per value), or
// RuntimeFlag (one copy that reads the flag). `if (flag)` and reluIf read all three.
struct RuntimeFlag {
  bool value;
  constexpr explicit operator bool() const { return value; }
};
// Whether the flags are copies (native, and the scalar WASM build, small anyway) or RuntimeFlag
// (SIMD128 WASM, where the module's size counts:
// issue 19; each copy of BatchNorm's output loops costs kilobytes). SIMDNORM_WASM_STREAMS gives
// a native build WASM's choice, as tuning.h's streams (the checks of the portable kernels).
#if defined(__wasm_simd128__) || defined(SIMDNORM_WASM_STREAMS)
constexpr bool kFlagCopies = false;
#else
constexpr bool kFlagCopies = true;
#endif

// Calls f(std::true_type) or f(std::false_type): a runtime flag as a template parameter; without
// kFlagCopies f(RuntimeFlag).
template <typename F>
inline void withFlag(bool flag, F f) {
  if (!kFlagCopies) f(RuntimeFlag{flag});
  else if (flag) f(std::true_type{});
  else f(std::false_type{});
}

// A flag as copies (f(std::true_type) or f(std::false_type)), everywhere. For an extra input or
// output of the formula (BatchNorm's residual z): its RuntimeFlag, a branch in every vector, cost
// WASM's inference 1.4x its instructions (callgrind under V8), where relu's pmax costs nothing.
template <typename F>
inline void withCopies(bool flag, F f) {
  if (flag) f(std::true_type{});
  else f(std::false_type{});
}

// relu as withFlag gives it and b as copies: four copies natively, two in WASM (inference's
// output loop, the whole of its call: forward.cpp's normalizeAll).
template <typename F>
inline void withFlagAndCopies(bool a, bool b, F f) {
  withFlag(a, [&](auto first) { withCopies(b, [&](auto second) { f(first, second); }); });
}

// A flag as copies natively; without kFlagCopies always f(std::false_type), for a flag that WASM
// has dealt with before the loops (BatchNorm backward's dz, written by its relu pre-pass).
template <typename F>
inline void withNativeCopies(bool flag, F f) {
  if constexpr (kFlagCopies) {
    withCopies(flag, f);
  } else {
    (void)flag;
    f(std::false_type{});
  }
}

// relu as withFlag gives it and b as withNativeCopies does: four copies natively, one in WASM,
// where b must be false (BatchNorm training's residual: WASM's trainForward adds it in a pass of
// its own, forward.cpp).
template <typename F>
inline void withFlagAndNativeCopies(bool a, bool b, F f) {
  withFlag(a, [&](auto first) { withNativeCopies(b, [&](auto second) { f(first, second); }); });
}

// The two ways above of giving an output loop relu and the residual, as types (a kernel's
// template parameter). planes<T>: the same for forward.cpp's normalizeAll on the planes path
// (NCHW), except that WASM's float loop without a residual gets relu as copies too: relu's pmax
// took 7% of an inference's time and 8% of a training forward's on NCHW [8,256,14,14] (WASM's
// engines do not unswitch loops). Copies of every output loop would not fit issue 19's size budget.
template <typename T>
constexpr bool kPlanesReluCopies = !kFlagCopies && std::is_same<T, float>::value;
// f(relu as copies, no b): that loop of planes<T>.
template <typename F>
inline void withReluCopies(bool a, F f) {
  withCopies(a, [&](auto first) { f(first, std::false_type{}); });
}
struct FlagAndCopies {
  template <typename F>
  static void apply(bool a, bool b, F f) { withFlagAndCopies(a, b, f); }
  template <typename T, typename F>
  static void planes(bool a, bool b, F f) {
    if constexpr (kPlanesReluCopies<T>) {
      if (!b) return withReluCopies(a, f);
    }
    apply(a, b, f);
  }
};
struct FlagAndNativeCopies {
  template <typename F>
  static void apply(bool a, bool b, F f) { withFlagAndNativeCopies(a, b, f); }
  template <typename T, typename F>
  static void planes(bool a, bool b, F f) {
    if constexpr (kPlanesReluCopies<T>) {
      withReluCopies(a, f);  // b is false in WASM (withNativeCopies)
    } else {
      apply(a, b, f);
    }
  }
};

// BatchNorm backward's flags, f(relu, training), each a type as withFlag gives it: four copies
// natively; without kFlagCopies one, f(std::false_type, RuntimeFlag): the caller has applied relu
// already (relu must be false there).
template <typename F>
inline void withFlags(bool a, bool b, F f) {
  if (!kFlagCopies) {
    f(std::false_type{}, RuntimeFlag{b});
  } else if (a) {
    if (b) f(std::true_type{}, std::true_type{});
    else f(std::true_type{}, std::false_type{});
  } else {
    if (b) f(std::false_type{}, std::true_type{});
    else f(std::false_type{}, std::false_type{});
  }
}

// relu(y) where the flag is set (simd.h's relu, NaN kept). A RuntimeFlag takes max(y, floor),
// floor 0 (relu, the same bits) or -inf (y itself, NaN and -0 included): one instruction (WASM's
// pmax) instead of a second copy of the loop.
template <typename V>
SIMDNORM_INLINE V reluIf(std::true_type, V y) {
  return relu(y);
}
template <typename V>
SIMDNORM_INLINE V reluIf(std::false_type, V y) {
  return y;
}
template <typename V>
SIMDNORM_INLINE V reluIf(RuntimeFlag on, V y) {
  using E = __typeof__(y[0] + 0);
  const V floor = splat<V>(on.value ? E(0) : -static_cast<E>(__builtin_inf()));
#if defined(__wasm_simd128__)
  // pmax(y, floor) is y < floor ? floor : y, one instruction (clang makes the select below a
  // comparison and a bitselect when floor is not a constant)
  if constexpr (sizeof(V) == 16 && sizeof(E) == 4) return (V)__builtin_wasm_pmax_f32x4((VFloat)y, (VFloat)floor);
  if constexpr (sizeof(V) == 16 && sizeof(E) == 8) return (V)__builtin_wasm_pmax_f64x2((VDouble)y, (VDouble)floor);
#endif
  return select(y < floor, floor, y);
}

}  // namespace SIMDNORM_ISA
}  // namespace simdnorm
