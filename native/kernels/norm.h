// The normalization core: one descriptor (sn_norm, generated from native/abi/table.mjs into
// abi_table.h) and one C ABI that the N-API addon (native/node) and the wasm module (wasm/abi.cpp)
// both call:
//   sn_prepare  checks a call (scalars on the wire, tensor pointers, the bytes behind each) and
//               fills the descriptor; exactly the checks memory safety needs, no user-grade
//               messages (the façade, lib/, has validated the call already);
//   sn_execute  runs it: one kernel entry per phase (statistics, train, infer, backward, running
//               update) over the descriptor, on the CPU's best ISA (chosen once).
// Both return >= 0 (train/update: 1 when the running stats were written) or
// -(code << 8 | argument) as abi_table.h's sn_error says, and write nothing on error.
//
// Every normalization is a descriptor (README "Architecture"): x is
// x[samples][outer][stats][inner]; statistic (n, s) reduces over outer and inner; γ/β of element
// (n, o, s, j) sit at (s mod affineGroups) * affineSize + (j / affineRun) mod affineSize.
//   BatchNorm NC...  samples 1, outer N,      stats C, inner spatial; γ/β by s (groups C, size 1)
//   BatchNorm N...C  samples 1, outer N*spat, stats C, inner 1
//   LayerNorm [R, D] samples 1, outer 1,      stats R, inner D;       γ/β by j (groups 1, size D, run 1)
//   RMSNorm          LayerNorm's geometry, flag rms (statistics about zero)
//   GroupNorm NC...  samples N, outer 1,      stats G, inner (C/G)*spatial; groups G, size C/G, run spatial
//   GroupNorm N...C  samples N, outer spatial, stats G, inner C/G;    groups G, size C/G, run 1
//   InstanceNorm NC. samples N, outer 1,      stats C, inner spatial; groups C, size 1
//   InstanceNorm N.C samples N, outer spatial, stats C, inner 1;      groups C, size 1
//   ghost BatchNorm  samples N/v, outer v (or v*spatial), stats C, as BatchNorm per chunk
// A descriptor the kernels cannot run yet returns SN_ERROR_UNSUPPORTED from sn_execute.
#pragma once

#include <cstdint>

#include "abi_table.h"

extern "C" {

// scalars: SN_SCALAR_COUNT values; tensors, bytes: SN_SLOT_COUNT entries each, bytes[i] the
// bytes readable and writable at tensors[i] (0 for null). On success fills *out.
int32_t sn_prepare(const double* scalars, void* const* tensors, const uint64_t* bytes, sn_norm* out);

// Runs a descriptor sn_prepare accepted (on any thread; concurrent calls are safe).
int32_t sn_execute(const sn_norm* norm);

}  // extern "C"

namespace simdnorm {

// A tensor's length in elements by its slot's size class.
int64_t slotLength(const sn_norm& n, int slot);

inline int32_t snError(int code, int argument) { return -((code << 8) | argument); }

}  // namespace simdnorm
