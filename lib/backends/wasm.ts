/**
 * The `wasm` backend: the kernels of native/kernels built with emscripten into a standalone
 * module (wasm/bin/simdnorm-simd.wasm with SIMD128, wasm/bin/simdnorm-scalar.wasm without;
 * see wasm/build.mjs) and called through the one C ABI call of wasm/abi.cpp, sn_run, with a
 * descriptor (lib/core/descriptor.ts). No emscripten JS glue and no Node built-in here:
 * lib/backends/wasm-node.ts reads the bytes with fs, and the browser provider fetches them.
 *
 * By concern, under lib/backends/wasm/:
 *   abi.ts      the raw exports, the imports, sn_run with the descriptor written to its block
 *   marshal.ts  caller arrays copied into the reusable scratch area and outputs back; arrays
 *               inside live wasmMemory.alloc blocks passed by pointer (zero-copy)
 *   memory.ts   the public wasmMemory API (WasmArray, WasmMemory) and the loaded backend
 *   backend.ts  WasmBackend: the Backend over one instance
 *   loader.ts   variant choice (SIMD probe, threads), instantiation, the browser provider
 *   threads.ts  the threaded variant: its imports, its workers, setThreads
 *
 * Memory. Growing the module memory (a bigger scratch area, a new `alloc`) detaches every view
 * of the old `ArrayBuffer`: read `WasmArray.array` again after any call rather than keeping the
 * typed array it returned.
 */
export { WASM_FILES, wasmImports, type WasmVariant } from './wasm/abi.js';
export { WasmBackend } from './wasm/backend.js';
export {
  fetchWasmBackend,
  instantiateWasmBackend,
  pickVariant,
  setWasmLocation,
  simdSupported,
  threadsOffReason,
  wasmBrowserProvider,
  wasmUrl,
} from './wasm/loader.js';
export { MIN_PARALLEL_ELEMENTS, ThreadedWasmBackend, WORKER_SOURCE, type ThreadHost, type ThreadStart } from './wasm/threads.js';
export {
  adoptWasmBackend,
  loadedWasmBackend,
  wasmMemory,
  type WasmArray,
  type WasmMemory,
} from './wasm/memory.js';
