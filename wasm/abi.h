// The WASM C ABI (defined in wasm/abi.cpp, exported from the .wasm modules as
// native/abi/table.mjs's wasmExports say; also linked natively by the sanitizer replay and the
// fuzzer under test/). Pointers are module addresses inside live sn_alloc blocks.
#pragma once

#include <cstdint>

extern "C" {
uintptr_t sn_alloc(uint32_t bytes);
int32_t sn_free(uintptr_t p);
int32_t sn_in_block(uintptr_t p, uint32_t bytes, uint32_t align);
void sn_set_scratch_limit(uint32_t bytes);  // testing only

// One normalization call: `scalars` holds SN_SCALAR_COUNT doubles (8-aligned) and `tensors`
// SN_SLOT_COUNT uintptr_t pointers (uint32 in wasm32; aligned to their size), each table inside
// one live block. A non-zero pointer must lie in a live block (else tooShort for its slot); its
// bytes are those to the end of that block. Then sn_prepare + sn_execute (native/kernels/norm.h):
// returns >= 0, or -(code << 8 | argument) and writes nothing (argument 0 for a table outside
// every block: badScalar for the scalars, missing for the pointers).
int32_t sn_run(uintptr_t scalars, uintptr_t tensors);

const char* sn_simd_level();
int32_t sn_abi_version();
}
