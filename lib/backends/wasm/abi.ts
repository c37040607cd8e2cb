/**
 * The wasm module's C ABI (wasm/abi.cpp): its raw exports, the imports it needs, and the one
 * call, sn_run, with the descriptor's scalars and tensor-pointer table written into a block
 * reserved for them. The export list is native/abi/table.mjs's wasmExports (lib/core/abi.ts's
 * WASM_EXPORTS); the module's ABI version must be ABI_VERSION.
 */
import { ABI_VERSION, SCALAR_COUNT, SLOT_COUNT } from '../../core/abi.js';
import { typedArrayBuffer } from '../../intrinsics.js';

/** simd128-threads: SIMD128 with -pthread over shared memory (lib/backends/wasm/threads.ts). */
export type WasmVariant = 'simd128' | 'scalar' | 'simd128-threads';

/** The artifact of each variant, in wasm/bin/ of the package. */
export const WASM_FILES: Readonly<Record<WasmVariant, string>> = Object.freeze({
  simd128: 'simdnorm-simd.wasm',
  scalar: 'simdnorm-scalar.wasm',
  'simd128-threads': 'simdnorm-threads.wasm',
});

/** A byte address in module memory. */
export type Ptr = number;

export interface AbiExports {
  readonly memory: WebAssembly.Memory;
  _initialize?(): void;
  sn_abi_version(): number;
  sn_simd_level(): Ptr;
  sn_alloc(bytes: number): Ptr;
  sn_free(p: Ptr): number;
  sn_in_block(p: Ptr, bytes: number, align: number): number;
  /** testing only: kernel scratch requests above `bytes` fail (0: no limit) */
  sn_set_scratch_limit?(bytes: number): void;
  /** scalars: SCALAR_COUNT float64s; tensors: SLOT_COUNT uint32 pointers; >= 0 or -(code << 8 | argument) */
  sn_run(scalars: Ptr, tensors: Ptr): number;
}

/**
 * The imports the standalone module may ask for: emscripten's growth notification (a no-op:
 * views are re-created by comparing buffers) and WASI's proc_exit, reached only by abort().
 * wasm/build.mjs refuses to commit an artifact that imports anything else.
 */
export function wasmImports(): WebAssembly.Imports {
  return {
    env: { emscripten_notify_memory_growth: () => {} },
    wasi_snapshot_preview1: {
      proc_exit: (code: number) => {
        throw new WebAssembly.RuntimeError(`simdnorm wasm: the module aborted (exit code ${code})`);
      },
    },
  };
}

const SCALAR_BYTES = SCALAR_COUNT * 8;
const CALL_BYTES = SCALAR_BYTES + SLOT_COUNT * 4;

/** One instance's exports, checked, with the block the sn_run calls' descriptor is written to. */
export class WasmAbi {
  readonly exports: AbiExports;
  /** "simd128" or "scalar" */
  readonly simdLevel: string;
  private readonly callBlock: Ptr;
  private heap64 = new Float64Array(0);
  private heapU32 = new Uint32Array(0);
  private heapBuffer: ArrayBufferLike | null = null; // the buffer heap64/heapU32 view

  /**
   * growth: for the threaded variant's shared memory, a counter every instance bumps when it
   * grows the memory (growing a shared memory detaches nothing: the old buffer keeps its length).
   */
  constructor(instance: WebAssembly.Instance, file: string, growth?: Int32Array) {
    const exports = instance.exports as unknown as AbiExports;
    if (typeof exports.sn_abi_version !== 'function' || exports.sn_abi_version() !== ABI_VERSION || typeof exports.sn_run !== 'function') {
      throw new Error(`simdnorm wasm: ${file} does not have C ABI version ${ABI_VERSION}; rebuild with npm run build:wasm`);
    }
    this.exports = exports;
    if (growth) {
      this.growth = growth;
      this.moduleBuffers = new WeakSet();
    }
    exports._initialize?.();
    this.simdLevel = this.readCString(exports.sn_simd_level());
    // Never freed: the instance lives as long as its backend.
    this.callBlock = exports.sn_alloc(CALL_BYTES) >>> 0;
    if (this.callBlock === 0) throw new Error('simdnorm wasm: cannot allocate the call block');
  }

  /**
   * The module memory's current buffer. Cached: WebAssembly.Memory's getter costs more than a
   * small call's kernel; growing the (non-shared) memory detaches the old buffer, whose byteLength
   * is then 0, which is when the getter is asked again.
   */
  get buffer(): ArrayBuffer {
    const cached = this.memoryBuffer;
    if (cached !== null && cached.byteLength !== 0 && this.growth[0] === this.grown) return cached;
    this.grown = this.growth[0];
    const buffer = this.exports.memory.buffer;
    this.moduleBuffers?.add(buffer);
    return (this.memoryBuffer = buffer);
  }
  private memoryBuffer: ArrayBuffer | null = null;
  private growth: Int32Array<ArrayBufferLike> = new Int32Array(1);
  private grown = 0;
  /** Shared memory only: every buffer object handed out for it (each growth makes a new one). */
  private moduleBuffers: WeakSet<ArrayBufferLike> | undefined;

  /** Whether a caller may hold a view of the module memory: set once wasmMemory.alloc has made a
   * block or wasmMemory.buffer was read (memory.ts). Until then no array a caller passes can be
   * one (the marshaller's own views are never handed out), and the marshaller does not read the
   * buffer of each array. */
  userBlocks = false;

  /** Whether the memory is shared (the threaded variant). */
  get shared(): boolean {
    return this.moduleBuffers !== undefined;
  }

  /** Whether `buffer` is (one of the objects for) the module memory. */
  isModuleBuffer(buffer: ArrayBufferLike): boolean {
    return buffer === this.buffer || (this.moduleBuffers !== undefined && this.moduleBuffers.has(buffer));
  }

  alloc(bytes: number): Ptr {
    return this.exports.sn_alloc(bytes) >>> 0;
  }

  free(p: Ptr): void {
    this.exports.sn_free(p);
  }

  /** Whether [p, p + bytes) lies inside one live block, aligned to align (1, 4 or 8). */
  inBlock(p: Ptr, bytes: number, align: number): boolean {
    return this.exports.sn_in_block(p, bytes, align) === 1;
  }

  /**
   * sn_run with `scalars` (a descriptor's, SCALAR_COUNT float64s) and `pointers` (SLOT_COUNT
   * module addresses, 0 for null); returns its result.
   */
  run(scalars: Float64Array, pointers: Uint32Array): number {
    const buffer = this.buffer;
    if (this.heapBuffer !== buffer) {
      this.heap64 = new Float64Array(buffer);
      this.heapU32 = new Uint32Array(buffer);
      this.heapBuffer = buffer;
    }
    // Our own short arrays (not a caller's): element by element beats a set() call here.
    const s0 = this.callBlock / 8;
    for (let i = 0; i < scalars.length; i++) this.heap64[s0 + i] = scalars[i];
    const p0 = (this.callBlock + SCALAR_BYTES) / 4;
    for (let i = 0; i < pointers.length; i++) this.heapU32[p0 + i] = pointers[i];
    return this.exports.sn_run(this.callBlock, this.callBlock + SCALAR_BYTES);
  }

  private readCString(p: Ptr): string {
    const bytes = new Uint8Array(this.exports.memory.buffer, p >>> 0);
    let end = 0;
    while (end < 64 && bytes[end] !== 0) end++;
    return String.fromCharCode(...bytes.subarray(0, end));
  }
}
