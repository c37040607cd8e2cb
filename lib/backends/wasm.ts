/**
 * The `wasm` backend: the kernels of native/kernels built with emscripten into a standalone
 * module (wasm/bin/simdnorm-simd.wasm with SIMD128, wasm/bin/simdnorm-scalar.wasm without;
 * see wasm/build.mjs) and called through the C ABI of wasm/abi.cpp. No emscripten JS glue and
 * no Node built-in here: lib/backends/wasm-node.ts reads the bytes with fs, and the browser
 * provider below fetches them.
 *
 * Memory. Arrays the caller keeps in ordinary JS memory are copied into one reusable area of
 * the module memory (the scratch area: grown geometrically on demand, then reused, so a
 * training loop allocates nothing after the first step) and the outputs copied back. Arrays
 * allocated with `wasmMemory.alloc` live in the module memory already and are passed by
 * pointer without any copy. Growing the module memory (a bigger scratch area, a new `alloc`)
 * detaches every view of the old `ArrayBuffer`: read `WasmArray.array` again after any call
 * rather than keeping the typed array it returned.
 */
import type {
  Backend,
  BackendDetails,
  BackendProvider,
  BackwardArgs,
  FloatArray,
  Geometry,
  InferArgs,
  MomentsArgs,
  TrainArgs,
  UpdateRunningArgs,
} from '../backend.js';
import {
  elementBytes,
  Float32,
  Float64,
  floatKind,
  typedArrayBuffer,
  typedArrayByteLength,
  typedArrayByteOffset,
  typedArrayLength,
  typedArraySet,
} from '../intrinsics.js';

export type WasmVariant = 'simd128' | 'scalar';

/** The artifact of each variant, in wasm/bin/ of the package. */
export const WASM_FILES: Readonly<Record<WasmVariant, string>> = Object.freeze({
  simd128: 'simdnorm-simd.wasm',
  scalar: 'simdnorm-scalar.wasm',
});

// (module (func (result v128) i32.const 0 i8x16.splat i8x16.popcnt)): popcnt came late into
// the SIMD proposal, so engines that only had a pre-standard SIMD reject it too.
const SIMD_PROBE = new Uint8Array([
  0, 97, 115, 109, 1, 0, 0, 0, 1, 5, 1, 96, 0, 1, 123, 3, 2, 1, 0, 10, 10, 1, 8, 0, 65, 0, 253, 15,
  253, 98, 11,
]);

/** Whether this engine runs WebAssembly SIMD128 (validates a tiny module using it). */
export function simdSupported(): boolean {
  try {
    return WebAssembly.validate(SIMD_PROBE);
  } catch {
    return false;
  }
}

/** The variant this engine should load: SIMD128 where it validates, else scalar. */
export function pickVariant(): WasmVariant {
  return simdSupported() ? 'simd128' : 'scalar';
}

// ---------------------------------------------------------------------------------------------
// The C ABI (wasm/abi.cpp)

type Ptr = number;
type Kernel<A extends unknown[]> = (...args: A) => number;

interface AbiExports {
  readonly memory: WebAssembly.Memory;
  _initialize?(): void;
  sn_abi_version(): number;
  sn_simd_level(): Ptr;
  sn_alloc(bytes: number): Ptr;
  sn_free(p: Ptr): number;
  sn_in_block(p: Ptr, bytes: number, align: number): number;
  /** testing only: kernel scratch requests above `bytes` fail (0: no limit) */
  sn_set_scratch_limit?(bytes: number): void;
  // prettier-ignore
  sn_train_f32: Kernel<[Ptr, number, number, number, Ptr, Ptr, number, number, Ptr, Ptr, Ptr, Ptr, Ptr, number, number, number]>;
  sn_train_f64: AbiExports['sn_train_f32'];
  sn_infer_f32: Kernel<[Ptr, number, number, number, Ptr, Ptr, Ptr, Ptr, number, number, Ptr]>;
  sn_infer_f64: AbiExports['sn_infer_f32'];
  sn_backward_f32: Kernel<[Ptr, Ptr, number, number, number, Ptr, Ptr, Ptr, Ptr, number, Ptr, Ptr, Ptr]>;
  sn_backward_f64: AbiExports['sn_backward_f32'];
  sn_moments_f32: Kernel<[Ptr, number, number, number, Ptr, Ptr]>;
  sn_moments_f64: AbiExports['sn_moments_f32'];
  sn_update_running_f32: Kernel<[Ptr, Ptr, Ptr, Ptr, number, number, number, number]>;
  sn_update_running_f64: AbiExports['sn_update_running_f32'];
}

const ABI_VERSION = 1;

// Parameter names of each export, to name the argument an error code points at (1-based).
const PARAMETERS: Record<string, readonly string[]> = {
  train: ['x', 'outer', 'channels', 'inner', 'gamma', 'beta', 'eps', 'relu', 'y', 'mean', 'invStd',
    'runningMean', 'runningVar', 'factor', 'varScale', 'skipNonFinite'],
  infer: ['x', 'outer', 'channels', 'inner', 'runningMean', 'runningVar', 'gamma', 'beta', 'eps', 'relu', 'y'],
  backward: ['dy', 'x', 'outer', 'channels', 'inner', 'mean', 'invStd', 'gamma', 'y', 'training', 'dx',
    'dgamma', 'dbeta'],
  moments: ['x', 'outer', 'channels', 'inner', 'mean', 'variance'],
  updateRunning: ['runningMean', 'runningVar', 'batchMean', 'batchVar', 'channels', 'factor', 'varScale',
    'skipNonFinite'],
};

const ERRORS: Record<number, string> = {
  1: 'a required array is missing (null pointer)',
  2: 'a dimension is negative',
  3: 'the size overflows the 32-bit address space',
  4: 'the array does not lie inside a block of module memory',
  5: 'the array is not aligned to its element size',
  6: 'the value is out of range (eps finite and > 0, factor in [0, 1], varScale >= 0)',
  7: 'module memory is exhausted (nothing was written)',
};

/** Turns a negative C ABI return code into the RangeError it stands for. */
function abiError(kernel: string, rc: number): RangeError {
  const code = -rc >> 8;
  const argument = -rc & 0xff;
  const name = argument > 0 ? PARAMETERS[kernel]?.[argument - 1] ?? `argument ${argument}` : 'the call';
  return new RangeError(
    `simdnorm wasm ${kernel}: ${name} was refused: ${ERRORS[code] ?? `error code ${code}`}`,
  );
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

// ---------------------------------------------------------------------------------------------
// Zero-copy arrays

type FloatArrayConstructor = Float32ArrayConstructor | Float64ArrayConstructor;

/**
 * An array living in the wasm backend's module memory: the kernels read and write it in place.
 * Free it with `free()` when done (module memory is not garbage-collected).
 */
export interface WasmArray<T extends FloatArray> {
  /** byte offset of the first element in module memory */
  readonly ptr: number;
  readonly length: number;
  /**
   * A view of the block. Growing the module memory detaches every earlier view (its length
   * becomes 0), so read this property again after any simdnorm call or alloc instead of
   * keeping the typed array; it returns a fresh view when the memory has grown.
   */
  readonly array: T;
  /** whether free() was called */
  readonly freed: boolean;
  /** Returns the block to the module's allocator; the array must not be used afterwards. */
  free(): void;
}

/** The module memory of a loaded wasm backend. */
export interface WasmMemory {
  /**
   * Allocates `length` elements (zeroed) in module memory. Pass `block.array` to any simdnorm
   * call running on the wasm backend: it is read and written without a copy. May grow the
   * memory, which detaches older views (see WasmArray.array).
   */
  alloc(type: Float32ArrayConstructor, length: number): WasmArray<Float32Array>;
  alloc(type: Float64ArrayConstructor, length: number): WasmArray<Float64Array>;
  /** Whether the backend passes this array by pointer (it lies in a live alloc block). */
  isZeroCopy(array: FloatArray): boolean;
  /** The module memory's current buffer; replaced (old one detached) whenever memory grows. */
  readonly buffer: ArrayBuffer;
  /** The module memory's size in bytes; it only grows. */
  readonly bytes: number;
  /** Frees the area used to copy JS arrays in and out (it is re-created on the next call). */
  releaseScratch(): void;
}

/**
 * The largest block the module's allocator hands out: its sbrk takes a signed 32-bit increment,
 * so one block (a wasmMemory.alloc array, or the scratch area that holds every copied array of
 * one call) is at most 2 GiB - 64 KiB, though the memory itself grows to 4 GiB.
 */
const MAX_BLOCK = 2 ** 31 - 2 ** 16;
const SCRATCH_ALIGN = 16;

/** The backend over one instance of the module. */
export class WasmBackend implements Backend {
  readonly name = 'wasm' as const;
  readonly variant: WasmVariant;
  readonly memory: WasmMemory;
  readonly simd: string;
  private readonly abi: AbiExports;
  private scratch: Ptr = 0;
  private scratchBytes = 0;
  // Per-call marshalling state, reused across calls.
  private readonly slotArrays: (FloatArray | null)[] = [];
  private readonly slotPtrs: number[] = [];
  private readonly slotOffsets: number[] = []; // byte offset in scratch, or -1 when passed by pointer
  private readonly slotFlags: number[] = []; // 1: copy in before the call, 2: copy out after it
  private slotCount = 0;
  private scratchUsed = 0;
  // Views of the whole module memory, replaced when it grows.
  private heap32 = new Float32Array(0);
  private heap64 = new Float64Array(0);
  private callBuffer: ArrayBufferLike = this.heap32.buffer; // the memory's buffer when the call began

  constructor(instance: WebAssembly.Instance, variant: WasmVariant) {
    this.abi = instance.exports as unknown as AbiExports;
    this.variant = variant;
    if (typeof this.abi.sn_abi_version !== 'function' || this.abi.sn_abi_version() !== ABI_VERSION) {
      throw new Error(`simdnorm wasm: ${WASM_FILES[variant]} does not have C ABI version ${ABI_VERSION}; rebuild with npm run build:wasm`);
    }
    this.abi._initialize?.();
    this.simd = this.readCString(this.abi.sn_simd_level());
    this.memory = this.createMemoryApi();
  }

  details(): BackendDetails {
    return {
      simd: this.simd,
      threads: 1,
      memoryBytes: this.abi.memory.buffer.byteLength,
      variant: WASM_FILES[this.variant],
    };
  }

  train(a: TrainArgs): boolean {
    const g = int32Geometry(a.geometry);
    const r = a.running;
    this.begin();
    const x = this.input(a.x, 'x');
    const gamma = this.input(a.gamma, 'gamma');
    const beta = this.input(a.beta, 'beta');
    const y = this.outputOver(a.y, x, 'y');
    const mean = this.output(a.mean, 'mean');
    const invStd = this.output(a.invStd, 'invStd');
    const rMean = this.inout(r ? r.runningMean : null, 'runningMean');
    const rVar = this.inout(r ? r.runningVar : null, 'runningVar');
    this.place();
    const fn = elementBytes(a.x) === 8 ? this.abi.sn_train_f64 : this.abi.sn_train_f32;
    const rc = fn(
      this.ptr(x), g.outer, g.channels, g.inner, this.ptr(gamma), this.ptr(beta), a.eps, a.relu ? 1 : 0,
      this.ptr(y), this.ptr(mean), this.ptr(invStd), this.ptr(rMean), this.ptr(rVar),
      r ? r.factor : 0, r ? r.varScale : 1, r?.skipNonFinite ? 1 : 0,
    );
    this.finish('train', rc);
    return rc === 1;
  }

  infer(a: InferArgs): void {
    const g = int32Geometry(a.geometry);
    this.begin();
    const x = this.input(a.x, 'x');
    const rMean = this.input(a.runningMean, 'runningMean');
    const rVar = this.input(a.runningVar, 'runningVar');
    const gamma = this.input(a.gamma, 'gamma');
    const beta = this.input(a.beta, 'beta');
    const y = this.outputOver(a.y, x, 'y');
    this.place();
    const fn = elementBytes(a.x) === 8 ? this.abi.sn_infer_f64 : this.abi.sn_infer_f32;
    const rc = fn(
      this.ptr(x), g.outer, g.channels, g.inner, this.ptr(rMean), this.ptr(rVar), this.ptr(gamma),
      this.ptr(beta), a.eps, a.relu ? 1 : 0, this.ptr(y),
    );
    this.finish('infer', rc);
  }

  backward(a: BackwardArgs): void {
    const g = int32Geometry(a.geometry);
    this.begin();
    const dy = this.input(a.dy, 'dy');
    const x = this.input(a.x, 'x');
    const mean = this.input(a.mean, 'mean');
    const invStd = this.input(a.invStd, 'invStd');
    const gamma = this.input(a.gamma, 'gamma');
    const y = this.input(a.y, 'y');
    const dx = this.outputOver(a.dx, dy, 'dx');
    const dgamma = this.output(a.dgamma, 'dgamma');
    const dbeta = this.output(a.dbeta, 'dbeta');
    this.place();
    const fn = elementBytes(a.x) === 8 ? this.abi.sn_backward_f64 : this.abi.sn_backward_f32;
    const rc = fn(
      this.ptr(dy), this.ptr(x), g.outer, g.channels, g.inner, this.ptr(mean), this.ptr(invStd),
      this.ptr(gamma), this.ptr(y), a.training ? 1 : 0, this.ptr(dx), this.ptr(dgamma), this.ptr(dbeta),
    );
    this.finish('backward', rc);
  }

  moments(a: MomentsArgs): void {
    const g = int32Geometry(a.geometry);
    this.begin();
    const x = this.input(a.x, 'x');
    const mean = this.output(a.mean, 'mean');
    const variance = this.output(a.variance, 'variance');
    this.place();
    const fn = elementBytes(a.x) === 8 ? this.abi.sn_moments_f64 : this.abi.sn_moments_f32;
    const rc = fn(this.ptr(x), g.outer, g.channels, g.inner, this.ptr(mean), this.ptr(variance));
    this.finish('moments', rc);
  }

  updateRunningStats(a: UpdateRunningArgs): boolean {
    this.begin();
    const rMean = this.inout(a.runningMean, 'runningMean');
    const rVar = this.inout(a.runningVar, 'runningVar');
    const bMean = this.input(a.batchMean, 'batchMean');
    const bVar = this.input(a.batchVar, 'batchVar');
    this.place();
    const f64 = elementBytes(a.runningMean) === 8;
    const fn = f64 ? this.abi.sn_update_running_f64 : this.abi.sn_update_running_f32;
    const rc = fn(
      this.ptr(rMean), this.ptr(rVar), this.ptr(bMean), this.ptr(bVar), typedArrayLength(a.runningMean),
      a.factor, a.varScale, a.skipNonFinite ? 1 : 0,
    );
    this.finish('updateRunning', rc);
    return rc === 1;
  }

  // -------------------------------------------------------------------------------------------
  // Marshalling: begin(), then input/output/inout per argument (in any order), place() to copy
  // the inputs in, the kernel call with ptr(slot), finish() to copy the outputs back.

  private begin(): void {
    this.slotCount = 0;
    this.scratchUsed = 0;
    this.callBuffer = this.abi.memory.buffer;
  }

  private input(array: FloatArray | null, name: string): number {
    return this.slot(array, 1, name);
  }

  private output(array: FloatArray, name: string): number {
    return this.slot(array, 2, name);
  }

  /**
   * An output the kernel may write over one input (y over x, dx over dy): when both are copied,
   * it shares the input's copy, so the scratch area holds one tensor less.
   */
  private outputOver(array: FloatArray, input: number, name: string): number {
    const usedBefore = this.scratchUsed;
    const i = this.slot(array, 2, name);
    const offset = this.slotOffsets[input];
    // Only a freshly laid-out copy (not passed by pointer, not shared with another argument)
    // over an input copy of the same size that no other argument reads.
    if (this.scratchUsed === usedBefore || offset < 0) return i;
    if (typedArrayByteLength(this.slotArrays[input]!) !== typedArrayByteLength(array)) return i;
    for (let j = 0; j < i; j++) if (j !== input && this.slotOffsets[j] === offset) return i;
    this.scratchUsed = usedBefore; // give the fresh space back
    this.slotOffsets[i] = offset;
    return i;
  }

  private inout(array: FloatArray | null, name: string): number {
    return this.slot(array, 3, name);
  }

  /**
   * Every read of a caller's array here is an intrinsic (lib/intrinsics.ts): no caller code runs
   * during a call, and what the façade checked is what is copied.
   */
  private slot(array: FloatArray | null, flags: number, name: string): number {
    const i = this.slotCount++;
    this.slotArrays[i] = array;
    this.slotFlags[i] = flags;
    if (array === null) {
      this.slotOffsets[i] = -1;
      this.slotPtrs[i] = 0;
      return i;
    }
    if (typedArrayBuffer(array) === this.callBuffer) {
      if (this.inBlock(array)) {
        this.slotOffsets[i] = -1;
        this.slotPtrs[i] = typedArrayByteOffset(array);
        return i;
      }
      // A view of module memory outside every live alloc block (freed, or never from alloc):
      // copying it is unsafe (growing the scratch area detaches it mid-call, and it may lie over
      // the scratch area or the allocator's own bytes).
      this.release();
      throw new RangeError(
        `simdnorm wasm: ${name} is a view of the wasm module memory outside every live wasmMemory.alloc block (freed, or not from alloc); pass a block's .array or an ordinary array`,
      );
    }
    // The very same array as an earlier argument (y = x in place, dx = dy) shares its copy.
    // (Identity only: two objects viewing the same memory get two copies, which gives the same
    // result, since every input is copied in before the call and outputs out after it.)
    for (let j = 0; j < i; j++) {
      if (this.slotArrays[j] === array && this.slotOffsets[j] >= 0) {
        this.slotOffsets[i] = this.slotOffsets[j];
        this.slotFlags[j] |= flags & 1; // copy in once, through the first slot
        this.slotFlags[i] = flags & 2;
        return i;
      }
    }
    this.slotOffsets[i] = this.scratchUsed;
    this.scratchUsed += Math.ceil(typedArrayByteLength(array) / SCRATCH_ALIGN) * SCRATCH_ALIGN;
    return i;
  }

  /** Makes the scratch area big enough, then copies every input slot into it. */
  private place(): void {
    try {
      this.ensureScratch(this.scratchUsed);
    } catch (e) {
      this.release();
      throw e;
    }
    // After ensureScratch: the memory may have grown, so the heap views are taken only now.
    this.refreshHeap();
    for (let i = 0; i < this.slotCount; i++) {
      const offset = this.slotOffsets[i];
      const array = this.slotArrays[i];
      if (offset < 0 || array === null) continue;
      const p = this.scratch + offset;
      this.slotPtrs[i] = p;
      if (this.slotFlags[i] & 1) {
        if (elementBytes(array) === 8) typedArraySet(this.heap64, array, p / 8);
        else typedArraySet(this.heap32, array, p / 4);
      }
    }
  }

  private ptr(slot: number): number {
    return this.slotPtrs[slot];
  }

  /** Throws on an error code (nothing is copied out then); else copies every output back. */
  private finish(kernel: string, rc: number): void {
    if (rc < 0) {
      this.release();
      throw abiError(kernel, rc);
    }
    this.refreshHeap();
    for (let i = 0; i < this.slotCount; i++) {
      const offset = this.slotOffsets[i];
      const array = this.slotArrays[i];
      if (offset < 0 || array === null || !(this.slotFlags[i] & 2)) continue;
      // Copied back with the engine's own set into the checked array (never the caller's `set`).
      const f64 = elementBytes(array) === 8;
      const heap = f64 ? this.heap64 : this.heap32;
      const byteStart = this.scratch + offset;
      const first = byteStart / (f64 ? 8 : 4);
      const n = typedArrayLength(array);
      // A loop beats creating a view for the short per-channel arrays.
      if (n < 64) for (let k = 0; k < n; k++) array[k] = heap[first + k];
      else typedArraySet(array, f64 ? new Float64(this.callBuffer, byteStart, n) : new Float32(this.callBuffer, byteStart, n), 0);
    }
    this.release();
  }

  /** Drops the references to the caller's arrays (keeps none alive between calls). */
  private release(): void {
    for (let i = 0; i < this.slotCount; i++) this.slotArrays[i] = null;
  }

  /** Re-creates the whole-memory views when the memory has grown (the old buffer is detached). */
  private refreshHeap(): void {
    const buffer = this.abi.memory.buffer;
    if (typedArrayBuffer(this.heap32) !== buffer) {
      this.heap32 = new Float32(buffer);
      this.heap64 = new Float64(buffer);
    }
    this.callBuffer = buffer;
  }

  private ensureScratch(bytes: number): void {
    // Never 0, so that empty arrays still get a valid, non-null pointer.
    const need = Math.max(bytes, 64);
    if (need <= this.scratchBytes) return;
    if (need > MAX_BLOCK) throw tooLarge(need, this.abi.memory.buffer.byteLength);
    // Grow by half again each time, in 64 KiB steps (a wasm page), so that a loop over growing
    // sizes reallocates O(log n) times.
    const size = Math.min(
      Math.ceil(Math.max(need, this.scratchBytes * 1.5) / 65536) * 65536,
      MAX_BLOCK,
    );
    this.releaseScratch();
    let bytesGot = size;
    let p = this.abi.sn_alloc(size) >>> 0;
    if (p === 0 && size > need) p = this.abi.sn_alloc((bytesGot = need)) >>> 0;
    if (p === 0) throw tooLarge(need, this.abi.memory.buffer.byteLength);
    this.scratch = p;
    this.scratchBytes = bytesGot;
  }

  releaseScratch(): void {
    if (this.scratch !== 0) this.abi.sn_free(this.scratch);
    this.scratch = 0;
    this.scratchBytes = 0;
  }

  isZeroCopy(array: FloatArray): boolean {
    return floatKind(array) !== undefined && typedArrayBuffer(array) === this.abi.memory.buffer && this.inBlock(array);
  }

  private inBlock(array: FloatArray): boolean {
    return this.abi.sn_in_block(typedArrayByteOffset(array), typedArrayByteLength(array), elementBytes(array)) === 1;
  }

  private readCString(p: Ptr): string {
    const bytes = new Uint8Array(this.abi.memory.buffer, p >>> 0);
    let end = 0;
    while (end < 64 && bytes[end] !== 0) end++;
    return String.fromCharCode(...bytes.subarray(0, end));
  }

  private createMemoryApi(): WasmMemory {
    const abi = this.abi;
    const backend = this;
    function alloc(type: FloatArrayConstructor, length: number): WasmArray<FloatArray> {
      if (type !== Float32Array && type !== Float64Array) {
        throw new TypeError('wasmMemory.alloc type must be Float32Array or Float64Array');
      }
      if (!Number.isSafeInteger(length) || length < 0) {
        throw new RangeError(`wasmMemory.alloc length must be a non-negative integer, received ${String(length)}`);
      }
      const bytes = Math.max(length * type.BYTES_PER_ELEMENT, 16);
      if (bytes > MAX_BLOCK) throw tooLarge(bytes, abi.memory.buffer.byteLength);
      const ptr = abi.sn_alloc(bytes) >>> 0;
      if (ptr === 0) throw tooLarge(bytes, abi.memory.buffer.byteLength);
      let view: FloatArray = new type(abi.memory.buffer, ptr, length);
      view.fill(0);
      let freed = false;
      return {
        ptr,
        length,
        get array() {
          if (freed) throw new Error('wasmMemory: this array was freed');
          if (typedArrayBuffer(view) !== abi.memory.buffer) view = new type(abi.memory.buffer, ptr, length);
          return view;
        },
        get freed() {
          return freed;
        },
        free() {
          if (freed) return;
          freed = true;
          abi.sn_free(ptr);
        },
      };
    }
    return {
      alloc: alloc as WasmMemory['alloc'],
      isZeroCopy: (array) => backend.isZeroCopy(array),
      get buffer() {
        return abi.memory.buffer as ArrayBuffer;
      },
      get bytes() {
        return abi.memory.buffer.byteLength;
      },
      releaseScratch: () => backend.releaseScratch(),
    };
  }
}

/** The C ABI takes int32 dims: larger ones (no wasm32 tensor has them) must not wrap around. */
function int32Geometry(g: Geometry): Geometry {
  if (g.outer > 0x7fffffff || g.channels > 0x7fffffff || g.inner > 0x7fffffff) {
    throw new RangeError(
      `simdnorm wasm: geometry [${g.outer}, ${g.channels}, ${g.inner}] is too large for wasm32 (each dim < 2^31)`,
    );
  }
  return g;
}

function tooLarge(bytes: number, memoryBytes: number): RangeError {
  return new RangeError(
    `simdnorm wasm: cannot allocate ${bytes} bytes in module memory (now ${memoryBytes} bytes): one block, ` +
      'a wasmMemory.alloc array or the area holding every copied array of a call, is at most 2 GiB - 64 KiB ' +
      '(2147418112 bytes), and the memory at most 4 GiB; use the native or js backend for tensors this large',
  );
}

// ---------------------------------------------------------------------------------------------
// Loading

let loaded: WasmBackend | undefined;

/**
 * The wasm backend the providers loaded (one per realm, shared by the Node and browser
 * providers), or undefined before it is loaded.
 */
export function loadedWasmBackend(): WasmBackend | undefined {
  return loaded;
}

/** Records the backend the providers hand out; the first one loaded wins. */
export function adoptWasmBackend(backend: WasmBackend): WasmBackend {
  loaded ??= backend;
  return loaded;
}

/** Instantiates a compiled module of the given variant into a new backend. */
export function instantiateWasmBackend(module: WebAssembly.Module, variant: WasmVariant): WasmBackend {
  return new WasmBackend(new WebAssembly.Instance(module, wasmImports()), variant);
}

/**
 * The module memory of the loaded wasm backend, for zero-copy arrays:
 *
 *   await ready();                        // or useBackend('wasm') in Node
 *   const x = wasmMemory.alloc(Float32Array, n);
 *   x.array.set(data);
 *   batchNormInfer(x.array, shape, ...);  // no copy in or out
 *   x.free();
 *
 * Throws when the wasm backend has not been loaded yet.
 */
export const wasmMemory: WasmMemory = {
  alloc: ((type: Float32ArrayConstructor, length: number) =>
    requireLoaded().memory.alloc(type, length)) as WasmMemory['alloc'],
  isZeroCopy: (array) => loaded?.isZeroCopy(array) ?? false,
  get buffer() {
    return requireLoaded().memory.buffer;
  },
  get bytes() {
    return requireLoaded().memory.bytes;
  },
  releaseScratch: () => loaded?.releaseScratch(),
};

function requireLoaded(): WasmBackend {
  if (!loaded) {
    throw new Error(
      "simdnorm: the wasm backend is not loaded yet: await ready() (browsers) or call useBackend('wasm') first",
    );
  }
  return loaded;
}

// Browser loading: fetch + instantiateStreaming, the .wasm found next to the package by URL.

type LocationResolver = (file: string, variant: WasmVariant) => string | URL;
let location: LocationResolver | null = null;

/**
 * Where the browser provider fetches the .wasm files from: a directory URL (relative URLs are
 * resolved against the page) holding simdnorm-simd.wasm and simdnorm-scalar.wasm, or a function
 * from file name and variant to URL; null restores the default (wasm/bin/ of the package,
 * found with `new URL(..., import.meta.url)`, which bundlers such as Vite rewrite). Call it
 * before `ready()`.
 */
export function setWasmLocation(where: string | URL | LocationResolver | null): void {
  if (where === null || typeof where === 'function') {
    location = where;
    return;
  }
  const base = String(where).endsWith('/') ? String(where) : `${String(where)}/`;
  location = (file) => new URL(file, new URL(base, pageUrl()));
}

function pageUrl(): string {
  const here = (globalThis as { location?: { href?: string } }).location?.href;
  return here ?? import.meta.url;
}

/** The default URL of each variant; string literals so that bundlers see and emit both files. */
function defaultUrl(variant: WasmVariant): URL {
  return variant === 'simd128'
    ? new URL('../../wasm/bin/simdnorm-simd.wasm', import.meta.url)
    : new URL('../../wasm/bin/simdnorm-scalar.wasm', import.meta.url);
}

/** The URL the browser provider loads the given variant from. */
export function wasmUrl(variant: WasmVariant): URL {
  if (!location) return defaultUrl(variant);
  return new URL(String(location(WASM_FILES[variant], variant)), pageUrl());
}

/** Fetches, compiles and instantiates a variant; a new backend each time. */
export async function fetchWasmBackend(variant: WasmVariant = pickVariant()): Promise<WasmBackend> {
  const url = wasmUrl(variant);
  const response = await fetch(url);
  if (!response.ok) {
    throw new Error(`simdnorm wasm: fetching ${url.href} failed: HTTP ${response.status} ${response.statusText}`);
  }
  let instance: WebAssembly.Instance;
  try {
    // Streaming compilation needs the server to send Content-Type: application/wasm.
    ({ instance } = await WebAssembly.instantiateStreaming(response.clone(), wasmImports()));
  } catch (e) {
    if (e instanceof WebAssembly.CompileError || e instanceof WebAssembly.LinkError) throw e;
    ({ instance } = await WebAssembly.instantiate(await response.arrayBuffer(), wasmImports()));
  }
  return new WasmBackend(instance, variant);
}

let browserLoading: Promise<WasmBackend> | undefined;

/** The browser provider: asynchronous only (browsers refuse large synchronous compiles). */
export const wasmBrowserProvider: BackendProvider = {
  name: 'wasm',
  priority: 20,
  load(): Promise<Backend> {
    if (loaded) return Promise.resolve(loaded);
    browserLoading ??= fetchWasmBackend().then(adoptWasmBackend, (e: unknown) => {
      browserLoading = undefined; // a later call may try again (e.g. after setWasmLocation)
      throw e;
    });
    return browserLoading;
  },
};
