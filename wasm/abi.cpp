// The WASM entry: the block registry and one call, sn_run, over the normalization core
// (native/kernels/norm.h: sn_prepare checks a descriptor, sn_execute runs it). emnapi needs
// emscripten >= 3.1.9, Debian has 3.1.6, so this is a plain C ABI. lib/backends/wasm/ is its only
// intended caller, but every export validates what it is given: calling the raw exports with
// garbage returns an error code and never reads or writes outside the blocks sn_alloc handed out.
//
// Conventions:
//   - pointers are byte offsets into the module memory (uintptr_t: 32 bits in wasm32; the
//     sanitizer replay and the fuzzer link this file natively, with 64-bit pointers);
//   - a tensor must lie inside one live block from sn_alloc (the registry below): its bytes for
//     sn_prepare are those from the pointer to the end of its block;
//   - sn_run returns >= 0 on success (train/update: 1 when the running stats were written) and
//     -(code << 8 | argument) on failure, code an sn_error of abi_table.h, argument 1 + the
//     offending scalar's or slot's index (0: the call as a whole), and then has written nothing.
#include <cstdint>
#include <cstdlib>
#include <map>

#include "abi.h"
#include "batchnorm.h"
#include "norm.h"
#include "parallel.h"

#define SN_EXPORT extern "C" __attribute__((used, visibility("default")))

namespace {

// Live blocks: start -> size in bytes. A few entries (the TS scratch area, its call block, the
// user's zero-copy arrays), looked up a handful of times per call.
std::map<uintptr_t, uint32_t>& blocks() {
  static std::map<uintptr_t, uint32_t> live;
  return live;
}

// The block sn_alloc made last, tried before the map: the marshaller's scratch area holds every
// copied tensor of a call, and it is (re)made after the blocks made once. (size 0: none;
// forgotten when freed.)
uintptr_t lastStart = 0;
uint32_t lastSize = 0;
// The bytes from p to the end of the live block p lies in (0 at its very end), or -1 when p lies
// in no live block, from the map.
__attribute__((noinline)) int64_t lookUp(uintptr_t p) {
  auto& live = blocks();
  auto it = live.upper_bound(p);
  if (it == live.begin()) return -1;
  --it;
  const uintptr_t offset = p - it->first;
  if (offset > it->second) return -1;
  return static_cast<int64_t>(it->second - offset);
}
// The same, the last block sn_alloc made first (a p at its very end may start the next block).
int64_t bytesToEnd(uintptr_t p) {
  if (p >= lastStart && p - lastStart < lastSize) return static_cast<int64_t>(lastSize - (p - lastStart));
  return lookUp(p);
}

// Whether [p, p + bytes) lies inside one live block and p is a multiple of align.
bool inBlock(uintptr_t p, uint64_t bytes, uint32_t align) {
  if (p == 0 || p % align != 0) return false;
  const int64_t available = bytesToEnd(p);
  return available >= 0 && bytes <= static_cast<uint64_t>(available);
}

int32_t fail(int code, int argument) { return -((code << 8) | argument); }

}  // namespace

// ---- memory ---------------------------------------------------------------------------------

// A block of at least `bytes` bytes (16-byte aligned, for SIMD loads), registered as a valid
// home for tensors, descriptors and pointer tables; 0 when bytes is 0 or too large, or memory
// cannot grow.
SN_EXPORT uintptr_t sn_alloc(uint32_t bytes) {
  if (bytes == 0 || bytes > UINT32_MAX - 64) return 0;
  void* p = std::aligned_alloc(16, (bytes + 15u) & ~15u);
  if (p == nullptr) return 0;
  blocks()[reinterpret_cast<uintptr_t>(p)] = bytes;
  lastStart = reinterpret_cast<uintptr_t>(p);
  lastSize = bytes;
  return reinterpret_cast<uintptr_t>(p);
}

// Frees a block from sn_alloc. Returns 0, or -1 when p is not a live block (double free, a
// pointer into a block, garbage), in which case nothing happens.
SN_EXPORT int32_t sn_free(uintptr_t p) {
  auto& live = blocks();
  auto it = live.find(p);
  if (it == live.end()) return -1;
  if (p == lastStart) lastSize = 0;
  live.erase(it);
  std::free(reinterpret_cast<void*>(p));
  return 0;
}

// 1 when [p, p + bytes) lies inside one live block and is aligned to align (1, 4 or 8), else 0.
SN_EXPORT int32_t sn_in_block(uintptr_t p, uint32_t bytes, uint32_t align) {
  if (align != 1 && align != 4 && align != 8) return 0;
  return inBlock(p, bytes, align) ? 1 : 0;
}

// Testing only: kernel scratch requests above `bytes` fail as a failed allocation would (0: no
// limit), so that tests reach the noMemory path, which module memory cannot otherwise be made
// to take (the native addon's setScratchLimit).
SN_EXPORT void sn_set_scratch_limit(uint32_t bytes) { simdnorm::setScratchLimit(bytes); }

// ---- the call -------------------------------------------------------------------------------

SN_EXPORT int32_t sn_run(uintptr_t scalars, uintptr_t tensors) {
  // The descriptor and the pointer table, each inside one live block, aligned; read once into
  // locals, so that outputs lying over them (the caller's business) change nothing mid-call.
  if (!inBlock(scalars, SN_SCALAR_COUNT * sizeof(double), alignof(double))) {
    return fail(SN_ERROR_BAD_SCALAR, 0);
  }
  if (!inBlock(tensors, SN_SLOT_COUNT * sizeof(uintptr_t), alignof(uintptr_t))) {
    return fail(SN_ERROR_MISSING, 0);
  }
  double s[SN_SCALAR_COUNT];
  const double* wireScalars = reinterpret_cast<const double*>(scalars);
  for (int i = 0; i < SN_SCALAR_COUNT; i++) s[i] = wireScalars[i];
  void* pointers[SN_SLOT_COUNT];
  uint64_t bytes[SN_SLOT_COUNT];
  const uintptr_t* table = reinterpret_cast<const uintptr_t*>(tensors);
  for (int slot = 0; slot < SN_SLOT_COUNT; slot++) {
    const uintptr_t p = table[slot];
    pointers[slot] = reinterpret_cast<void*>(p);
    bytes[slot] = 0;
    if (p == 0) continue;
    // A pointer in no live block is never handed on, even for an empty tensor.
    const int64_t available = bytesToEnd(p);
    if (available < 0) return fail(SN_ERROR_TOO_SHORT, slot + 1);
    bytes[slot] = static_cast<uint64_t>(available);
  }
  sn_norm n;
  const int32_t prepared = sn_prepare(s, pointers, bytes, &n);
  if (prepared < 0) return prepared;
  return sn_execute(&n);
}

// ---- information ----------------------------------------------------------------------------

// The kernels' SIMD level as a NUL-terminated string in module memory ("simd128" or "scalar").
SN_EXPORT const char* sn_simd_level() { return simdnorm::simdLevel(); }

// The ABI version of native/abi/table.mjs that lib/backends/wasm/ checks at load.
SN_EXPORT int32_t sn_abi_version() { return SN_ABI_VERSION; }

#if defined(__EMSCRIPTEN__) && defined(__EMSCRIPTEN_PTHREADS__)
// ---- threads (the simdnorm-threads variant only) ---------------------------------------------
// lib/backends/wasm/threads.ts starts each worker thus: sn_thread_stack on the main thread (its
// memory, top address returned), then in the worker, over the same shared memory, the runtime's
// stackRestore(top) and sn_thread_run(top). The pool itself is native/kernels/parallel.cpp.

extern "C" void __wasm_init_tls(void* block);  // the linker's: copies the TLS image into block

namespace {
constexpr uint32_t kThreadStackBytes = 256 * 1024;
}

// A worker's memory, allocated here on the calling (main) thread, so that nothing is allocated
// while the worker starts: its thread-local storage at the bottom, its stack above (stacks grow
// down). Never freed (a worker lives as long as the module). Returns the top, 0 when out of memory.
SN_EXPORT uintptr_t sn_thread_stack() {
  const size_t tls = (__builtin_wasm_tls_size() + 15u) & ~size_t{15};
  void* p = std::aligned_alloc(__builtin_wasm_tls_align() > 16 ? __builtin_wasm_tls_align() : 16, tls + kThreadStackBytes);
  return p == nullptr ? 0 : reinterpret_cast<uintptr_t>(p) + tls + kThreadStackBytes;
}

// A worker's life, on the stack sn_thread_stack returned (`top`): its thread-local storage, then
// the pool's loop (never returns).
SN_EXPORT void sn_thread_run(uintptr_t top) {
  const size_t tls = (__builtin_wasm_tls_size() + 15u) & ~size_t{15};
  __wasm_init_tls(reinterpret_cast<void*>(top - kThreadStackBytes - tls));
  simdnorm::wasmWorkerLoop();
}

// How many workers the JS side has started (a call uses at most that many plus its own thread),
// and whether the calling thread may block in memory.atomic.wait (not a browser's main thread).
SN_EXPORT void sn_thread_pool(int32_t helpers, int32_t mainCanWait) {
  simdnorm::wasmThreadsStarted(helpers, mainCanWait != 0);
}

// setThreads / getThreads (batchnorm.h): n >= 1 threads per call, 0 the default (every worker).
SN_EXPORT void sn_set_threads(int32_t n) { simdnorm::setThreads(n); }
SN_EXPORT int32_t sn_get_threads() {
  const int n = simdnorm::getThreads(), most = simdnorm::maxThreads();
  return n < most ? n : most;
}

// Testing: how many times a worker has joined a job.
SN_EXPORT uint32_t sn_thread_joins() { return simdnorm::wasmHelperJoins(); }
#endif
