/**
 * Where a layer keeps its arrays (README "Layers on WASM: zero-copy by default"). A layer made
 * while the backend is `wasm` keeps its parameters, running statistics, saved statistics and
 * outputs (y, dx, dz) in blocks of the module memory, so the kernels read and write them in
 * place and one layer's output goes to the next layer without a copy; elsewhere in ordinary JS
 * arrays, as before.
 *
 * Lifetime. Growing a non-shared module memory (the single-threaded variants) detaches every
 * view of it: the layer never keeps a view across a call, it keeps the block (Block.array makes
 * a new view when the memory has grown) and records where an input that is a view of module
 * memory lies (pin/resolve), so a call that grows the memory before the kernels run never hands
 * them a detached array. A block is freed only when neither the layer nor any array the layer
 * handed out for it is reachable (a FinalizationRegistry over a keeper object that the layer's
 * record and every handed-out view hold): an array kept after the layer was dropped or disposed
 * stays valid. (A `subarray()` of it, or another view made from its buffer, does not keep the
 * block alive.)
 */
import type { FloatArray } from '../api.js';
import type { WasmBackend } from '../backends/wasm/backend.js';
import { loadedWasmBackend, type WasmArray, type WasmMemory } from '../backends/wasm/memory.js';
import { elementBytes, typedArrayBuffer, typedArrayByteOffset, typedArrayLength } from '../intrinsics.js';
import { getBackend } from '../registry.js';
import { allocateFloat, type DType } from '../validate.js';

/** The property each view handed out holds its block's keeper under (not enumerable). */
const KEEP = Symbol('simdnorm.block');

/** Frees a block once its keeper is unreachable. */
const registry =
  typeof FinalizationRegistry === 'function'
    ? new FinalizationRegistry<WasmArray<FloatArray>>((handle) => handle.free())
    : undefined;

/** A block of module memory a layer owns. */
class Block {
  private view: FloatArray;
  private readonly keeper: object = {};

  constructor(
    private readonly memory: WasmMemory,
    private readonly handle: WasmArray<FloatArray>,
    private readonly f64: boolean,
  ) {
    this.view = this.make(memory.buffer);
    // Without FinalizationRegistry (very old engines) a block lives as long as the memory.
    registry?.register(this.keeper, handle);
  }

  get ptr(): number {
    return this.handle.ptr;
  }

  get length(): number {
    return this.handle.length;
  }

  /** A view of the block in the memory's current buffer (a new one after the memory grew). */
  get array(): FloatArray {
    const buffer = this.memory.buffer;
    return typedArrayBuffer(this.view) === buffer ? this.view : (this.view = this.make(buffer));
  }

  private make(buffer: ArrayBuffer): FloatArray {
    const view = this.f64 ? new Float64Array(buffer, this.handle.ptr, this.handle.length) : new Float32Array(buffer, this.handle.ptr, this.handle.length);
    Object.defineProperty(view, KEEP, { value: this.keeper });
    return view;
  }
}

/** Where an input lies when it is a view of module memory. */
class ModuleRef {
  constructor(
    /** the array given (it holds its block's keeper, when it is a layer's output) */
    readonly array: FloatArray,
    readonly ptr: number,
    readonly length: number,
    readonly f64: boolean,
  ) {}
}

/** An input as a layer keeps it: a ModuleRef for a view of module memory, else the value itself. */
export type Pinned = FloatArray | ModuleRef;

/** A parameter-sized or output array of a layer: a block of module memory, or an ordinary array. */
export type Slot = Block | FloatArray;

/** One layer's arrays. */
export class Home {
  /** The module memory the layer's arrays live in; null: ordinary JS arrays. */
  private memory: WasmMemory | null;
  private readonly outputs = new Map<string, Block>();
  /** Whether pin() ever made a ModuleRef: until then every Pinned is an array (resolve asks nothing). */
  private refs = false;

  constructor(private readonly dtype: DType) {
    let backend;
    try {
      backend = getBackend(false);
    } catch {
      backend = undefined;
    }
    this.memory = backend?.name === 'wasm' ? (backend as WasmBackend).memory : null;
  }

  /** Whether the layer's arrays are in module memory. */
  get inModuleMemory(): boolean {
    return this.memory !== null;
  }

  /** A parameter-sized array filled with `fill` (RangeError naming `why` when too large). */
  param(length: number, fill: number, why: string): Slot {
    if (this.memory === null) {
      const a = allocateFloat(this.dtype, length, "the layer's parameters", why);
      if (fill !== 0) a.fill(fill);
      return a;
    }
    const block = this.block(length);
    if (fill !== 0) block.array.fill(fill);
    return block;
  }

  /**
   * One output of a call, pinned: the caller's `given` (out.y …); else the layer's own block
   * `name` when it has one of `length` elements that is none of `reads` (a layer fed its own
   * output must not write over the x its backward reads); else, on ordinary arrays, `previous`
   * when it has `length` elements. Undefined: the op allocates, and {@link keep} moves the result
   * into a new block of the layer. (So a block is only ever allocated after a call succeeded: a
   * call that throws writes no byte of module memory.) Take every output first, then
   * {@link arg} each.
   */
  out(name: string, length: number, given: unknown, reads: readonly (Pinned | null | undefined)[], previous?: Pinned): Pinned | undefined {
    if (given !== undefined) return this.pin(given as FloatArray);
    if (this.memory !== null) {
      const own = this.outputs.get(name);
      if (own === undefined || own.length !== length) return undefined;
      const ref = this.pin(own.array);
      return reads.some((p) => p !== null && p !== undefined && overlaps(ref, p)) ? undefined : ref;
    }
    if (previous === undefined) return undefined;
    const p = this.resolve(previous);
    return typedArrayLength(p) === length ? p : undefined;
  }

  /**
   * After the call: the output as the layer keeps it — `pinned` ({@link out}'s) when there was
   * one, else the op's `result`, moved into a new block `name` in module memory (the layer's from
   * now on; the block it replaces is freed once nothing holds a view of it).
   */
  keep(name: string, pinned: Pinned | undefined, result: FloatArray): Pinned {
    if (pinned !== undefined || this.memory === null) return pinned ?? result;
    const block = this.block(typedArrayLength(result));
    block.array.set(result);
    this.outputs.set(name, block);
    return this.pin(block.array);
  }

  /**
   * A family layer's backward: `run(dx)` calls the op with dx (the layer's block, the caller's
   * array, or undefined: the op allocates) and returns its dx. Returns dx as the layer keeps it.
   */
  backward(pinned: Pinned | undefined, run: (dx: FloatArray | undefined) => FloatArray): FloatArray {
    return this.resolve(this.keep('dx', pinned, run(this.arg(pinned))));
  }

  /** A pinned output or input as the array to pass now (undefined stays undefined). */
  arg<T extends FloatArray>(p: Pinned | undefined): T | undefined {
    return p === undefined ? undefined : (this.resolve(p) as T);
  }

  /** Records where `array` (any value: only a view of module memory is recorded) lies when it is a view of this module's memory (see {@link resolve}). */
  pin(array: FloatArray): Pinned {
    const memory = this.memory ?? loadedMemory();
    if (memory === null || !memory.isZeroCopy(array)) return array;
    this.refs = true;
    return new ModuleRef(array, typedArrayByteOffset(array), typedArrayLength(array), elementBytes(array) === 8);
  }

  /** The pinned array, in the memory's current buffer (a new view when the memory grew since). */
  resolve(p: Pinned): FloatArray {
    if (!this.refs || !(p instanceof ModuleRef)) return p as FloatArray;
    const memory = this.memory ?? loadedMemory();
    if (memory === null) return p.array;
    // A view of a shared memory stays valid when it grows; a non-shared one is detached (length 0).
    if (typedArrayLength(p.array) === p.length) return p.array;
    const buffer = memory.buffer;
    return p.f64 ? new Float64Array(buffer, p.ptr, p.length) : new Float32Array(buffer, p.ptr, p.length);
  }

  /**
   * Leaves module memory: parameters (as `params` gives them, in order) copied into ordinary
   * arrays, returned in the same order; outputs forgotten. Each block is freed once nothing
   * holds a view of it.
   */
  leave(params: readonly (Slot | null)[]): (FloatArray | null)[] {
    const copies = params.map((slot) => {
      if (slot === null) return null;
      const a = arrayOf(slot);
      const copy = allocateFloat(this.dtype, typedArrayLength(a), 'a copy of the parameters', 'numFeatures');
      copy.set(a);
      return copy;
    });
    this.outputs.clear();
    this.memory = null;
    return copies;
  }

  private block(length: number): Block {
    const memory = this.memory!;
    const handle = this.dtype === 'float32' ? memory.alloc(Float32Array, length) : memory.alloc(Float64Array, length);
    return new Block(memory, handle, this.dtype === 'float64');
  }
}

/** The array of a slot: the block's current view, or the ordinary array. */
export function arrayOf<T extends FloatArray>(slot: Slot): T;
export function arrayOf<T extends FloatArray>(slot: Slot | null): T | null;
export function arrayOf<T extends FloatArray>(slot: Slot | null): T | null {
  if (slot === null) return null;
  return (slot instanceof Block ? slot.array : slot) as T;
}

/** Whether the layer's block `own` (pinned) and the pinned input share bytes. */
function overlaps(own: Pinned, p: Pinned): boolean {
  if (!(own instanceof ModuleRef) || !(p instanceof ModuleRef)) return false; // ordinary arrays (a live block's views are pinned)
  const end = own.ptr + own.length * (own.f64 ? 8 : 4);
  return p.ptr < end && own.ptr < p.ptr + p.length * (p.f64 ? 8 : 4);
}

/**
 * The loaded wasm backend's memory (a plain-array layer may still get module views as inputs),
 * or null while no array of it can be handed out: a caller's array is a view of a block of the
 * module memory only once wasmMemory.alloc (or a wasm layer) has made one (WasmAbi.userBlocks;
 * the marshaller's own views are never handed out). Until then pin() asks nothing per array: the
 * module-buffer check reads a shared memory's byteLength, a call into the runtime per input.
 */
function loadedMemory(): WasmMemory | null {
  const wasm = loadedWasmBackend();
  return wasm !== undefined && wasm.abi.userBlocks ? wasm.memory : null;
}
