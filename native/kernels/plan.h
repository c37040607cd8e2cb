// How the per-ISA kernels cut a tensor into blocks: Plan (makePlan, rowsPlan) and its
// iteration over spans, rows and columns (forEachGroup). Everything is in namespace
// simdnorm::SIMDNORM_ISA (see simd.h); the tuning constants are in tuning.h, the two loops every
// kernel is made of (a reduction into double sums, reduce.h, and an element-wise write, store.h)
// build on it.
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

#include <cstdint>
#include <type_traits>

#include "batchnorm.h"
#include "simd.h"
#include "tuning.h"

namespace simdnorm {
namespace SIMDNORM_ISA {

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
  // task per tile of whole channels, faster there than the planes path; with longer planes the
  // planes path is the faster one).
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

}  // namespace SIMDNORM_ISA
}  // namespace simdnorm
