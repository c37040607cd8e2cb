// The kernels' tuning constants, in one place: block and tile sizes, when outputs bypass the
// caches, the size of a chunk of channels, and how many streams of memory a loop goes through in
// lockstep. Every cut of the tensor depends on these and the geometry only (see plan.h).
#pragma once

#include <cstdint>

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
// stream's demand misses, a few lines ahead at most, are all it has in flight); reading four
// keeps more misses in flight, and the planes path's statistics pass takes clearly less time,
// natively and in WASM.
//  - kPlaneStreams: the planes path's reductions, everywhere.
//  - kRowStreams: the rows path's reductions in WASM. Natively they prefetch instead
//    (kPrefetchBytes), and row streams there cost time; WASM has no prefetch instruction.
//  - kWriteStreams: the output passes in WASM (faster there in lockstep). Natively, large
//    outputs bypass the caches (streamStore) and small ones are faster written in one stream
//    (in lockstep they are slower, in cache).
// SIMDNORM_WASM_STREAMS gives a native build WASM's settings (the checks of the portable kernels).
constexpr int kPlaneStreams = 4;
#if defined(__wasm__) || defined(SIMDNORM_WASM_STREAMS)
constexpr int kRowStreams = 4, kWriteStreams = 4;
#else
constexpr int kRowStreams = 1, kWriteStreams = 1;
#endif

// Whether reductions may sum float terms in float over short runs (kFloatRun values per lane:
// rows on the rows path, vectors on the planes path) before adding them to the double sums: a
// vector of floats is two vectors of doubles.
constexpr bool kFloatRuns = kFloatLanes == 2 * kDoubleLanes;
constexpr int64_t kFloatRun = 32;
// Whether the planes path's backward sums g and g (x - mean) of float data in float runs too, as
// the rows path does (GradSumsOk checks each run): in WASM, where the double terms (two loads
// widened, twice the vectors) made NCHW's backward 2x native's; natively the planes path is at
// the memory bound in double, and its bits stay as they were.
#if defined(__wasm__) || defined(SIMDNORM_WASM_STREAMS)
constexpr bool kPlaneGradFloatRuns = kFloatRuns;
#else
constexpr bool kPlaneGradFloatRuns = false;
#endif
// Whether the rows path sums 8 float vectors of a row at a time (16 accumulators): not in WASM,
// whose engines keep at most 16 vectors in registers and spill the rest inside the loop.
#if defined(__wasm__)
constexpr bool kWideFloatUnits = false;
#else
constexpr bool kWideFloatUnits = true;
#endif

// Chunk arrays: kChannelChunk entries, a whole number of vectors. A tile of fusedRows holds at
// most kTileColumns channels: one chunk.
static_assert(kChannelChunk % 8 == 0 && kChannelChunk >= kTileColumns, "chunks of whole vectors, tiles in one chunk");

}  // namespace SIMDNORM_ISA
}  // namespace simdnorm
