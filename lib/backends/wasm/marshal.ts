/**
 * Marshalling one descriptor (lib/core/descriptor.ts) into module memory for sn_run.
 *
 * Arrays the caller keeps in ordinary JS memory are copied into one reusable area of the module
 * memory (the scratch area: grown geometrically on demand, then reused, so a training loop
 * allocates nothing after the first step) and the outputs copied back. Arrays that are views
 * inside a live `wasmMemory.alloc` block are passed by pointer without any copy; a view of module
 * memory outside every live block (freed, or never from alloc) is refused: copying it is unsafe
 * (growing the scratch area detaches it mid-call, and it may lie over the scratch area or the
 * allocator's own bytes).
 *
 * Which slots are copied in and which back comes from the phase's roles under its flags (lib/core/abi.ts's rolesOf):
 * in/in? are copied in, out back, inout/pair? both. Every read of a caller's array is an intrinsic
 * (lib/intrinsics.ts): no caller code runs during a call, and what the façade checked is what is
 * copied. On an error result nothing is copied back (the kernels wrote nothing either).
 */
import { ALIASES, Flag, Phase, SLOT_COUNT, SLOT_NAMES, Scalar, rolesOf } from '../../core/abi.js';
import { abiError, type FloatArray, type Norm } from '../../core/descriptor.js';
import {
  elementBytes,
  Float32,
  Float64,
  typedArrayBuffer,
  typedArrayByteOffset,
  typedArrayLength,
  typedArraySet,
} from '../../intrinsics.js';
import type { Ptr, WasmAbi } from './abi.js';
import { inLiveBlock, MAX_BLOCK, tooLarge } from './memory.js';

const COPY_IN = 1;
const COPY_OUT = 2;
/** By role (0 unused, 1 in, 2 in?, 3 out, 4 inout, 5 pair?): what is copied. An unused slot that
 * is given anyway is only copied in (sn_run refuses it). */
const COPY_BY_ROLE = [COPY_IN, COPY_IN, COPY_IN, COPY_OUT, COPY_IN | COPY_OUT, COPY_IN | COPY_OUT];
const ROLE_OUT = 3;
/**
 * The output that may take over its input's copy: y over x (the forward phases) and dx over dy
 * (backward) where the kernels give the same bits either way, by aliasOf. Not dx over dy for the
 * general kernel (γ/β varying inside a statistic, or rms: LayerNorm, RMSNorm, GroupNorm; SyncBatchNorm's halves), whose
 * float32 backward rounds dx differently when dx is dy (its float-runs path needs g readable after
 * dx is written): a copied dx sharing dy's copy gave other bits than a zero-copy or native dx. For
 * BatchNorm's kernels the shared copy keeps the call's memory a tensor smaller (NC [256,1024]
 * backward: 1.1x the time with dx apart, a cache-sized working set).
 */
function aliasOf(n: Norm, phase: number): readonly [number, number] | undefined {
  if (phase !== Phase.backward) return ALIASES[phase];
  const general =
    n.scalars[Scalar.affineSize] !== 1 || (n.scalars[Scalar.flags] & (Flag.rms | Flag.givenSums | Flag.sumsOnly)) !== 0;
  return general ? undefined : ALIASES[phase];
}
const SCRATCH_ALIGN = 16;
/**
 * Copies of tensors this big are staggered by STAGGER bytes: tensors whose sizes are multiples of
 * 4 KiB would otherwise sit a multiple of 4 KiB apart, and a kernel streaming x, dy and dx at the
 * same index then has every access of the three in one cache set (NC [256,1024] backward: 0 bytes
 * apart 5-15% slower than 1-3 KiB apart, measured in one process).
 */
const STAGGER_FROM = 4096;
const STAGGER = 1088;

/** Per role table (rolesOf's, one per phase and flag set), every slot in the order the marshaller
 * lays them out: inputs first (so that an output knows every reader of the copy it may share),
 * then outputs. Made on first use. */
const ORDERS = new Map<readonly number[], Int32Array>();
function orderOf(roles: readonly number[]): Int32Array {
  let order = ORDERS.get(roles);
  if (order === undefined) {
    const all = Array.from({ length: SLOT_COUNT }, (_, slot) => slot);
    order = Int32Array.from([...all.filter((s) => roles[s] !== ROLE_OUT), ...all.filter((s) => roles[s] === ROLE_OUT)]);
    ORDERS.set(roles, order);
  }
  return order;
}
const NO_ROLES: readonly number[] = new Array<number>(SLOT_COUNT).fill(0);
const IDENTITY_ORDER = Int32Array.from({ length: SLOT_COUNT }, (_, slot) => slot);
/** Arrays shorter than this are copied by a loop (the per-statistic ones): cheaper than a set() call, and for outputs than a new view. */
const LOOP_COPY = 64;

// Element loops for short copies, one per element type so that each stays monomorphic.
function copy32(to: Float32Array, at: number, from: Float32Array, start: number, count: number): void {
  for (let i = 0; i < count; i++) to[at + i] = from[start + i];
}
function copy64(to: Float64Array, at: number, from: Float64Array, start: number, count: number): void {
  for (let i = 0; i < count; i++) to[at + i] = from[start + i];
}

export class Marshal {
  private scratch: Ptr = 0;
  /** bytes of the scratch area (tests read it) */
  scratchBytes = 0;
  // Per-call state, reused across calls.
  private readonly arrays: (FloatArray | null)[] = Array.from({ length: SLOT_COUNT }, () => null); // packed: no hole checks
  private readonly offsets = new Int32Array(SLOT_COUNT).fill(-1); // in scratch, -1: by pointer or null
  private readonly flags = new Int32Array(SLOT_COUNT);
  // Each given array's element count and whether it is a Float64Array, read once in place (no
  // caller code runs during a call, so they hold until its copies back).
  private readonly counts = new Float64Array(SLOT_COUNT);
  private readonly wide = new Uint8Array(SLOT_COUNT);
  private readonly placed = new Int32Array(SLOT_COUNT); // the slots given in this call, in the order placed
  private placedCount = 0;
  private readonly pointers = new Uint32Array(SLOT_COUNT);
  // copyBack's views, per slot (viewOf)
  private readonly views: (FloatArray | null)[] = new Array<FloatArray | null>(SLOT_COUNT).fill(null);
  private readonly viewBuffers: (ArrayBufferLike | null)[] = new Array<ArrayBufferLike | null>(SLOT_COUNT).fill(null);
  private readonly viewStarts = new Float64Array(SLOT_COUNT);
  private readonly viewCounts = new Float64Array(SLOT_COUNT);
  private readonly viewWide = new Uint8Array(SLOT_COUNT);
  // Views of the whole module memory, replaced when it grows.
  private heap32 = new Float32Array(0);
  private heap64 = new Float64Array(0);
  private heapBuffer: ArrayBufferLike = this.heap32.buffer; // the buffer heap32/heap64 view
  private callBuffer: ArrayBufferLike = this.heap32.buffer; // the memory's buffer when the call began

  constructor(private readonly abi: WasmAbi) {}

  /** Runs a descriptor: copies in, sn_run, copies back; returns the result or throws abiError. */
  run(n: Norm): number {
    const phase = n.scalars[Scalar.phase];
    const given = rolesOf(phase, n.scalars[Scalar.flags]);
    const roles: readonly number[] = given ?? NO_ROLES;
    const order = given === undefined ? IDENTITY_ORDER : orderOf(given);
    const alias = aliasOf(n, phase);
    const tensors = n.tensors;
    this.callBuffer = this.abi.buffer;
    if (this.placedCount !== 0) this.release(); // (a call that threw half-way)
    let used = 0;
    try {
      for (let k = 0; k < SLOT_COUNT; k++) {
        const slot = order[k];
        const array = tensors[slot];
        // An absent slot (null in every table) keeps pointer 0 and offset -1 (release).
        if (array !== null && array !== undefined) used = this.place(slot, array, COPY_BY_ROLE[roles[slot]] ?? COPY_IN, used, alias);
      }
      this.ensureScratch(used);
    } catch (e) {
      this.release();
      throw e;
    }
    // After ensureScratch: the memory may have grown, so the heap views are taken only now.
    this.refreshHeap();
    for (let k = 0; k < this.placedCount; k++) {
      const slot = this.placed[k];
      const offset = this.offsets[slot];
      const array = this.arrays[slot];
      if (offset < 0 || array === null) continue;
      const p = this.scratch + offset;
      this.pointers[slot] = p;
      if (this.flags[slot] & COPY_IN) {
        const count = this.counts[slot];
        if (this.wide[slot] === 1) {
          if (count < LOOP_COPY) copy64(this.heap64, p / 8, array as Float64Array, 0, count);
          else typedArraySet(this.heap64, array, p / 8);
        } else {
          if (count < LOOP_COPY) copy32(this.heap32, p / 4, array as Float32Array, 0, count);
          else typedArraySet(this.heap32, array, p / 4);
        }
      }
    }
    const result = this.abi.run(n.scalars, this.pointers);
    if (result < 0) {
      this.release();
      throw abiError(result, n);
    }
    this.copyBack();
    this.release();
    return result;
  }

  /** Lays out one slot; returns the scratch bytes used after it. */
  private place(slot: number, array: FloatArray, copy: number, used: number, alias: readonly [number, number] | undefined): number {
    this.placed[this.placedCount++] = slot;
    this.arrays[slot] = array;
    this.flags[slot] = copy; // (its pointer is 0 and its offset -1 until set below: release)
    // (Until a caller can hold a view of the module memory, no array is one: abi.userBlocks.)
    if (this.abi.userBlocks) {
      const buffer = typedArrayBuffer(array);
      if (buffer === this.callBuffer || (this.abi.shared && this.abi.isModuleBuffer(buffer))) {
        if (inLiveBlock(this.abi, array)) {
          this.pointers[slot] = typedArrayByteOffset(array);
          return used;
        }
        throw new RangeError(
          `simdnorm wasm: ${SLOT_NAMES[slot]} is a view of the wasm module memory outside every live wasmMemory.alloc block (freed, or not from alloc); pass a block's .array or an ordinary array`,
        );
      }
    }
    const count = typedArrayLength(array);
    const wide = elementBytes(array) === 8 ? 1 : 0;
    this.counts[slot] = count;
    this.wide[slot] = wide;
    // The very same array as an earlier slot (y = x in place, dx = dy, runningMean = x) shares
    // its copy, unless an output already took that copy over (dx over dy's copy, then dz = dy: dz
    // gets a copy of its own). (Identity only: two objects viewing the same memory get two copies,
    // which gives the same result, since every input is copied in before the call and outputs out
    // after it.)
    const before = this.placedCount - 1;
    const placed = this.placed, arrays = this.arrays, counts = this.counts;
    for (let k = 0; k < before; k++) {
      const j = placed[k];
      // (the count first: a number compare rules out most slots before the object compare)
      if (counts[j] === count && arrays[j] === array && this.offsets[j] >= 0 && !this.takenOver(j, array)) {
        this.offsets[slot] = this.offsets[j];
        this.flags[j] |= copy & COPY_IN; // copy in once, through the first slot
        this.flags[slot] = copy & COPY_OUT;
        return used;
      }
    }
    // An output over its alias input (y over x, dx over dy), both copied: it shares the input's
    // copy when no other slot reads that copy, so the scratch area holds one tensor less.
    if (alias !== undefined && alias[0] === slot && this.sharesAlias(slot, alias[1])) {
      this.offsets[slot] = this.offsets[alias[1]];
      return used;
    }
    this.offsets[slot] = used;
    const bytes = Math.ceil((count * (wide === 1 ? 8 : 4)) / SCRATCH_ALIGN) * SCRATCH_ALIGN;
    return used + bytes + (bytes >= STAGGER_FROM ? STAGGER : 0);
  }

  /** Whether another array's slot shares slot j's copy (an alias output took it over). */
  private takenOver(j: number, array: FloatArray): boolean {
    for (let k = 0; k < this.placedCount; k++) {
      const other = this.placed[k];
      if (other !== j && this.offsets[other] === this.offsets[j] && this.arrays[other] !== array) return true;
    }
    return false;
  }

  /** Whether output `slot` can take over the copy of `input` (placed, copied, same size, read by no other slot). */
  private sharesAlias(slot: number, input: number): boolean {
    const offset = this.offsets[input];
    if (this.arrays[input] === null || offset < 0 || this.counts[input] !== this.counts[slot] ||
        this.wide[input] !== this.wide[slot]) return false;
    let isPlaced = false;
    for (let k = 0; k < this.placedCount; k++) {
      const j = this.placed[k];
      if (j === input) isPlaced = true;
      else if (j !== slot && this.offsets[j] === offset) return false;
    }
    return isPlaced;
  }

  /** Copies every output slot's copy back into the caller's array (never the caller's `set`). */
  private copyBack(): void {
    this.refreshHeap(); // the kernels' workspace may have grown the memory
    for (let k = 0; k < this.placedCount; k++) {
      const slot = this.placed[k];
      const offset = this.offsets[slot];
      const array = this.arrays[slot];
      if (offset < 0 || array === null || !(this.flags[slot] & COPY_OUT)) continue;
      const byteStart = this.scratch + offset;
      const count = this.counts[slot];
      const f64 = this.wide[slot] === 1;
      // A loop beats a set() call for short arrays.
      if (count < LOOP_COPY) {
        if (f64) copy64(array as Float64Array, 0, this.heap64, byteStart / 8, count);
        else copy32(array as Float32Array, 0, this.heap32, byteStart / 4, count);
      } else {
        typedArraySet(array, this.viewOf(slot, f64, byteStart, count), 0);
      }
    }
  }

  /** A view of `count` elements of module memory at byteStart, kept per slot: a training loop
   * copies the same places back call after call, and a new view per output costs more than a
   * small kernel. Our own views over module memory, never handed to a caller. */
  private viewOf(slot: number, f64: boolean, byteStart: number, count: number): FloatArray {
    const view = this.views[slot];
    if (view !== null && this.viewBuffers[slot] === this.heapBuffer && this.viewStarts[slot] === byteStart &&
        this.viewCounts[slot] === count && this.viewWide[slot] === (f64 ? 1 : 0)) return view;
    const made = f64 ? new Float64(this.heapBuffer, byteStart, count) : new Float32(this.heapBuffer, byteStart, count);
    this.views[slot] = made;
    this.viewBuffers[slot] = this.heapBuffer;
    this.viewStarts[slot] = byteStart;
    this.viewCounts[slot] = count;
    this.viewWide[slot] = f64 ? 1 : 0;
    return made;
  }

  /** Drops the references to the caller's arrays (keeps none alive between calls); every slot's
   * pointer is 0 and offset -1 again, as run expects of the slots a call does not give. */
  private release(): void {
    for (let k = 0; k < this.placedCount; k++) {
      const slot = this.placed[k];
      this.arrays[slot] = null;
      this.pointers[slot] = 0;
      this.offsets[slot] = -1;
    }
    this.placedCount = 0;
  }

  /** Re-creates the whole-memory views when the memory has grown (the old buffer is detached). */
  private refreshHeap(): void {
    const buffer = this.abi.buffer;
    if (this.heapBuffer !== buffer) {
      this.heap32 = new Float32(buffer);
      this.heap64 = new Float64(buffer);
      this.heapBuffer = buffer;
    }
    this.callBuffer = buffer;
  }

  private ensureScratch(bytes: number): void {
    // Never 0, so that empty arrays still get a valid, non-null pointer.
    const need = Math.max(bytes, 64);
    if (need <= this.scratchBytes) return;
    if (need > MAX_BLOCK) throw tooLarge(need, this.abi.buffer.byteLength);
    // Grow by half again each time, in 64 KiB steps (a wasm page), so that a loop over growing
    // sizes reallocates O(log n) times.
    const size = Math.min(Math.ceil(Math.max(need, this.scratchBytes * 1.5) / 65536) * 65536, MAX_BLOCK);
    this.releaseScratch();
    let got = size;
    let p = this.abi.alloc(size);
    if (p === 0 && size > need) p = this.abi.alloc((got = need));
    if (p === 0) throw tooLarge(need, this.abi.buffer.byteLength);
    this.scratch = p;
    this.scratchBytes = got;
  }

  releaseScratch(): void {
    if (this.scratch !== 0) this.abi.free(this.scratch);
    this.scratch = 0;
    this.scratchBytes = 0;
  }
}
