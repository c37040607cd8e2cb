/**
 * Argument validation shared by every backend (README "Errors").
 *
 * Wrong types throw TypeError; wrong lengths, shapes and option values throw RangeError.
 * Every message names the argument, what was expected and what was received. The façade
 * validates a whole call before it writes anything, so a call that throws has written nothing.
 */
import type { FloatArray, Geometry } from './backend.js';
import {
  atomicsLoad,
  atomicsXor,
  bufferByteLength,
  Float32,
  Float64,
  floatKind,
  isArray,
  isResizable,
  isShared,
  isView,
  typedArrayBuffer,
  typedArrayByteOffset,
  typedArrayLength,
  typedArrayTag,
  Uint8,
} from './intrinsics.js';

export type Layout = 'channels-first' | 'channels-last';
export type Activation = 'none' | 'relu';
export type DType = 'float32' | 'float64';

// Every read of a caller's typed array goes through the engine's own getters, captured when
// lib/intrinsics.ts loads: an own or subclass `length`, `buffer`, `byteOffset`, `byteLength`
// or `BYTES_PER_ELEMENT` is never read (so it is simply ignored, and runs no code), and a
// Proxy is not a typed array at all.

/** What a value is, for error messages: "Int32Array(3)", "array(4)", "null", "string 'x'". */
export function describe(value: unknown): string {
  if (value === null) return 'null';
  if (value === undefined) return 'undefined';
  const tag = typedArrayTag(value);
  if (tag !== undefined) return `${tag}(${typedArrayLength(value as ArrayBufferView)})`;
  if (isView(value)) return 'DataView';
  if (isArray(value)) return 'array';
  if (typeof value === 'string') return `string '${value.length > 40 ? value.slice(0, 40) + '…' : value}'`;
  if (typeof value === 'number' || typeof value === 'boolean' || typeof value === 'bigint') {
    return `${typeof value} ${String(value)}`;
  }
  if (typeof value === 'function') return 'function';
  return 'object';
}

/** The element type of a genuine Float32Array/Float64Array, else undefined. */
export function dtypeOf(value: unknown): DType | undefined {
  return floatKind(value);
}

/** Whether a typed array's buffer is detached (Node 20 has no ArrayBuffer.prototype.detached). */
function isDetached(a: ArrayBufferView): boolean {
  const buffer = typedArrayBuffer(a);
  if (bufferByteLength(buffer) !== 0) return false;
  // An empty buffer has byteLength 0 too: only a detached one refuses a new view.
  try {
    new Uint8(buffer, 0, 0);
    return false;
  } catch {
    return true;
  }
}

/**
 * A float tensor argument: a Float32Array or Float64Array of `dtype` (when given),
 * not detached, of `length` elements (when given). Runs no caller code: the length is the
 * intrinsic one, which is 0 for a detached array and for one whose resizable buffer shrank
 * below it, so a checked length means the memory is there now.
 */
export function checkFloatArray(
  value: unknown,
  name: string,
  dtype?: DType,
  length?: number,
): FloatArray {
  const kind = floatKind(value);
  if (kind === undefined) {
    throw new TypeError(`${name} must be a Float32Array or Float64Array, received ${describe(value)}`);
  }
  const array = value as FloatArray;
  if (dtype !== undefined && kind !== dtype) {
    const want = dtype === 'float32' ? 'Float32Array' : 'Float64Array';
    throw new TypeError(`${name} must be a ${want} like x, received ${describe(value)}`);
  }
  const actual = typedArrayLength(array);
  if (length === undefined) {
    // an array that fixes the length of the others (updateRunningStats' runningMean)
    if (actual === 0 && isDetached(array)) throw detachedError(name, value);
  } else if (actual !== length) {
    if (length > 0 && isDetached(array)) throw detachedError(name, value);
    throw new RangeError(`${name} must have length ${length}, received length ${actual}`);
  }
  return array;
}

function detachedError(name: string, value: unknown): TypeError {
  return new TypeError(`${name} must not be detached, received a detached ${describe(value).replace(/\(.*/, '')}`);
}

/** An optional float array: undefined and null mean absent. */
export function checkOptionalFloatArray(
  value: unknown,
  name: string,
  dtype: DType,
  length: number,
): FloatArray | null {
  return value === undefined || value === null ? null : checkFloatArray(value, name, dtype, length);
}

/**
 * For the async variants: an array over a resizable (non-shared) ArrayBuffer could shrink while
 * the call runs, so it is refused before the call starts (growable SharedArrayBuffers never shrink).
 */
export function checkNotResizable(array: FloatArray | null, name: string): void {
  if (array !== null && isResizable(typedArrayBuffer(array))) {
    throw new TypeError(
      `${name} must not be a view of a resizable ArrayBuffer in an async call (it could shrink while the call runs); use the sync function or a fixed-length buffer`,
    );
  }
}

/**
 * A new float array of `length` elements for `what` (an output the caller did not give, a
 * layer's parameters); when the engine cannot make one that long, a RangeError naming `why`
 * (the argument the length came from) instead of the engine's nameless "Invalid typed array length".
 */
export function allocateFloat(dtype: DType, length: number, what: string, why: string): FloatArray {
  try {
    return dtype === 'float32' ? new Float32(length) : new Float64(length);
  } catch (e) {
    throw new RangeError(
      `${why}: cannot allocate ${what} (${dtype === 'float32' ? 'Float32Array' : 'Float64Array'}(${length})): ${(e as Error).message}`,
    );
  }
}

/** The checked shape and what it means under a layout. */
export interface Shape {
  readonly dims: readonly number[];
  readonly elements: number;
  readonly geometry: Geometry;
  /** values per channel (M) */
  readonly perChannel: number;
}

/**
 * Reads a shape once: `length` once, then each index once (a getter or Proxy trap runs once per
 * dim; the array's iterator is never used), into a plain array of checked dims: rank >= minRank,
 * non-negative integer dims whose product (and the product of the non-zero ones) is a safe integer.
 */
export function readShape(value: unknown, name = 'shape', minRank = 2): number[] {
  if (!isArray(value)) {
    throw new TypeError(`${name} must be an array of dimensions, received ${describe(value)}`);
  }
  const source = value as unknown as { readonly length: unknown; readonly [i: number]: unknown };
  const rank = source.length;
  if (typeof rank !== 'number' || !(rank >= 0 && rank <= 0xffffffff) || !Number.isInteger(rank)) {
    throw new TypeError(`${name} must be an array of dimensions, received an array whose length is ${describe(rank)}`);
  }
  if (rank < minRank) {
    throw new RangeError(
      minRank === 2
        ? `${name} must have rank >= 2 ([N, C, ...]), received rank ${rank}`
        : `${name} must have rank >= ${minRank}, received rank ${rank}`,
    );
  }
  const dims: number[] = [];
  // Zero anywhere makes the product 0; check the product of the non-zero dims for overflow too,
  // so [0, 2**40, 2**40] is still refused as a shape no array can have.
  let nonZero = 1;
  for (let i = 0; i < rank; i++) {
    const d = source[i]; // holes read as undefined
    if (typeof d !== 'number') {
      throw new TypeError(`${name}[${i}] must be a number, received ${describe(d)}`);
    }
    if (!Number.isSafeInteger(d) || d < 0) {
      throw new RangeError(`${name}[${i}] must be a non-negative integer, received ${d}`);
    }
    dims.push(d);
    if (d > 0) nonZero *= d;
  }
  if (nonZero > Number.MAX_SAFE_INTEGER) {
    throw new RangeError(`${name} must have a product of at most 2^53-1 elements, received [${dims.join(', ')}]`);
  }
  return dims;
}

/** What a checked shape (from readShape) means under a layout. */
export function shapeOf(dims: readonly number[], layout: Layout): Shape {
  let elements = 1;
  for (let i = 0; i < dims.length; i++) elements *= dims[i];
  const channelAxis = layout === 'channels-first' ? 1 : dims.length - 1;
  const channels = dims[channelAxis];
  const outer = layout === 'channels-first' ? dims[0] : product(dims, 0, dims.length - 1);
  const inner = layout === 'channels-first' ? product(dims, 2, dims.length) : 1;
  return { dims, elements, geometry: { outer, channels, inner }, perChannel: outer * inner };
}

function product(dims: readonly number[], from: number, to: number): number {
  let p = 1;
  for (let i = from; i < to; i++) p *= dims[i];
  return p;
}

/** x against its (already read) shape: x's length must equal the shape's product. */
export function checkTensor(x: unknown, xName: string, shape: Shape): { x: FloatArray; dtype: DType } {
  const array = checkFloatArray(x, xName);
  const length = typedArrayLength(array);
  if (length !== shape.elements) {
    if (shape.elements > 0 && isDetached(array)) throw detachedError(xName, x);
    throw new RangeError(
      `${xName} must have length ${shape.elements} (the product of shape [${shape.dims.join(', ')}]), received length ${length}`,
    );
  }
  return { x: array, dtype: floatKind(array)! };
}

// ---------------------------------------------------------------------------------------------
// Options

export interface ParsedOptions {
  eps: number;
  momentum: number | null;
  unbiasedRunningVar: boolean;
  layout: Layout;
  activation: Activation;
  skipNonFiniteUpdate: boolean;
  training: boolean;
  /** InstanceNorm: normalise with the input's statistics (default true) or the running ones */
  useInputStats: boolean;
  /** whether the caller gave eps (RMSNorm's default depends on the dtype) */
  epsGiven: boolean;
  /** Batch Renormalization's clipping (BatchNorm training), null: plain BatchNorm */
  renorm: RenormClip | null;
  /** ghost BatchNorm: samples per virtual batch (BatchNorm training and backward), null: the whole batch */
  virtualBatchSize: number | null;
}

/** Batch Renormalization's limits: r in [1/rmax, rmax], d in [−dmax, dmax]. */
export interface RenormClip {
  readonly rmax: number;
  readonly dmax: number;
}

export const DEFAULT_OPTIONS: Readonly<ParsedOptions> = Object.freeze(defaultOptions());

type OptionName = Exclude<keyof ParsedOptions, 'epsGiven'>;

/** A new object holding DEFAULT_OPTIONS' values (a literal: cheaper than a spread per call). */
function defaultOptions(): ParsedOptions {
  return {
    eps: 1e-5,
    momentum: 0.9,
    unbiasedRunningVar: true,
    layout: 'channels-first',
    activation: 'none',
    skipNonFiniteUpdate: false,
    training: true,
    useInputStats: true,
    epsGiven: false,
    renorm: null,
    virtualBatchSize: null,
  };
}

/**
 * Every option of the family (BatchNorm's functions, layerNorm, rmsNorm, groupNorm, instanceNorm
 * and their backward functions). Each function accepts all of them, so one options object can be shared
 * by a layer's forward, inference and backward calls; a function applies the ones it uses and
 * ignores the others, after checking their values as everywhere (README "Options").
 */
export const FAMILY_OPTIONS: readonly OptionName[] = Object.freeze([
  'eps',
  'momentum',
  'unbiasedRunningVar',
  'layout',
  'activation',
  'skipNonFiniteUpdate',
  'training',
  'useInputStats',
  'renorm',
  'virtualBatchSize',
]);
const FAMILY_OPTION_SET: ReadonlySet<string> = new Set(FAMILY_OPTIONS);

/** Edit distance (insertions, deletions, substitutions, adjacent swaps), case-insensitive. */
function editDistance(a: string, b: string): number {
  a = a.toLowerCase();
  b = b.toLowerCase();
  const d: number[][] = Array.from({ length: a.length + 1 }, (_, i) => [i, ...new Array<number>(b.length).fill(0)]);
  for (let j = 1; j <= b.length; j++) d[0][j] = j;
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      d[i][j] = Math.min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) d[i][j] = Math.min(d[i][j], d[i - 2][j - 2] + 1);
    }
  }
  return d[a.length][b.length];
}

/**
 * The candidate closest to `name` when it is plausibly a misspelling of it (a prefix either way,
 * e.g. epsilon → eps, or within about a third of its length in edits), else undefined.
 */
export function closestName(name: string, candidates: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestScore = Infinity;
  const lower = name.toLowerCase();
  for (const c of candidates) {
    const cl = c.toLowerCase();
    const prefix = cl.length >= 3 && (lower.startsWith(cl) || cl.startsWith(lower)) && lower.length >= 3;
    const distance = editDistance(name, c);
    const plausible = prefix || distance <= Math.max(1, Math.floor(Math.max(name.length, c.length) / 3));
    const score = prefix ? Math.min(distance, 0.5) : distance;
    if (plausible && score < bestScore) {
      best = c;
      bestScore = score;
    }
  }
  return best;
}

/**
 * Reads `options` for a function that uses `allowed` keys. Every option of the family
 * (FAMILY_OPTIONS) is accepted and its value checked, whether or not this function uses it
 * (`shared`; the layer's constructor passes false and takes only its own); a key no function
 * knows is a RangeError naming the closest valid name (a misspelt `epsilon` would otherwise be
 * silently ignored). Undefined values take the default. Each key's value is read exactly once.
 */
export function parseOptions(
  options: unknown,
  allowed: readonly OptionName[],
  fn: string,
  shared = true,
  otherNames: readonly string[] = [],
): Readonly<ParsedOptions> {
  if (options === undefined || options === null) return DEFAULT_OPTIONS;
  if (typeof options !== 'object' || isArray(options) || isView(options)) {
    throw new TypeError(`options must be an object, received ${describe(options)}`);
  }
  const record = options as Record<string, unknown>;
  const keys = Object.keys(record);
  if (keys.length === 0) return DEFAULT_OPTIONS; // `{}`: as fast as no options
  const parsed = defaultOptions();
  const known: readonly string[] = shared ? FAMILY_OPTIONS : allowed;
  // Each own enumerable key is read once (a getter or Proxy trap runs once); the values kept are
  // primitives, checked here.
  for (let k = 0; k < keys.length; k++) {
    const key = keys[k];
    if (shared ? !FAMILY_OPTION_SET.has(key) : !known.includes(key)) {
      const names = [...known, ...otherNames];
      const guess = closestName(key, names);
      const where = shared ? `${fn} or any simdnorm operation` : fn;
      throw new RangeError(
        `options.${key} is not an option of ${where}${guess ? `; did you mean ${guess}?` : ''} (options: ${names.join(', ')})`,
      );
    }
    const value = record[key];
    if (value === undefined) continue;
    switch (key as OptionName) {
      case 'eps':
        if (typeof value !== 'number') throw new TypeError(`options.eps must be a number, received ${describe(value)}`);
        if (!(value > 0) || !Number.isFinite(value)) {
          throw new RangeError(`options.eps must be a finite number > 0, received ${value}`);
        }
        parsed.eps = value;
        parsed.epsGiven = true;
        break;
      case 'momentum':
        if (value !== null && typeof value !== 'number') {
          throw new TypeError(`options.momentum must be a number or null, received ${describe(value)}`);
        }
        if (value !== null && !(value >= 0 && value <= 1)) {
          throw new RangeError(`options.momentum must be in [0, 1] or null, received ${value}`);
        }
        parsed.momentum = value;
        break;
      case 'layout':
        if (typeof value !== 'string') throw new TypeError(`options.layout must be a string, received ${describe(value)}`);
        if (value !== 'channels-first' && value !== 'channels-last') {
          throw new RangeError(`options.layout must be 'channels-first' or 'channels-last', received '${value}'`);
        }
        parsed.layout = value;
        break;
      case 'activation':
        if (typeof value !== 'string') {
          throw new TypeError(`options.activation must be a string, received ${describe(value)}`);
        }
        if (value !== 'none' && value !== 'relu') {
          throw new RangeError(`options.activation must be 'none' or 'relu', received '${value}'`);
        }
        parsed.activation = value;
        break;
      case 'unbiasedRunningVar':
      case 'skipNonFiniteUpdate':
      case 'training':
      case 'useInputStats':
        if (typeof value !== 'boolean') {
          throw new TypeError(`options.${key} must be a boolean, received ${describe(value)}`);
        }
        parsed[key as 'training'] = value;
        break;
      case 'renorm':
        parsed.renorm = value === null ? null : checkRenorm(value, 'options.renorm');
        break;
      case 'virtualBatchSize':
        if (value !== null && typeof value !== 'number') {
          throw new TypeError(`options.virtualBatchSize must be a number or null, received ${describe(value)}`);
        }
        if (value !== null && (!Number.isSafeInteger(value) || value < 1)) {
          throw new RangeError(`options.virtualBatchSize must be an integer >= 1 (samples per virtual batch) or null, received ${value}`);
        }
        parsed.virtualBatchSize = value;
        break;
    }
  }
  // Options of the family this function does not use were checked above and are ignored: the
  // result holds their defaults, so no function can depend on one it does not document.
  for (let k = 0; k < keys.length; k++) {
    const name = keys[k] as OptionName;
    if (!allowed.includes(name)) (parsed as Record<OptionName, unknown>)[name] = DEFAULT_OPTIONS[name];
  }
  if (!allowed.includes('eps')) parsed.epsGiven = false;
  return parsed;
}

/**
 * Batch Renormalization's `{ rmax, dmax }`, each read once: rmax >= 1 and dmax >= 0 (Infinity:
 * no clipping), named `name.rmax` / `name.dmax` in errors.
 */
export function checkRenorm(value: unknown, name: string): RenormClip {
  if (value === null || typeof value !== 'object' || isArray(value) || isView(value)) {
    throw new TypeError(`${name} must be an object { rmax, dmax } or null, received ${describe(value)}`);
  }
  const record = value as Record<string, unknown>;
  const rmax = record.rmax;
  const dmax = record.dmax;
  if (typeof rmax !== 'number') throw new TypeError(`${name}.rmax must be a number, received ${describe(rmax)}`);
  if (typeof dmax !== 'number') throw new TypeError(`${name}.dmax must be a number, received ${describe(dmax)}`);
  if (!(rmax >= 1)) throw new RangeError(`${name}.rmax must be >= 1 (r is clipped to [1/rmax, rmax]), received ${rmax}`);
  if (!(dmax >= 0)) throw new RangeError(`${name}.dmax must be >= 0 (d is clipped to [-dmax, dmax]), received ${dmax}`);
  return { rmax, dmax };
}

/** numBatchesTracked: a non-negative safe integer (default 0). */
export function checkCount(value: unknown, name: string, min = 0): number {
  if (value === undefined) return 0;
  if (typeof value !== 'number') throw new TypeError(`${name} must be a number, received ${describe(value)}`);
  if (!Number.isSafeInteger(value) || value < min) {
    throw new RangeError(`${name} must be an integer >= ${min}, received ${value}`);
  }
  return value;
}

export function checkObject(value: unknown, name: string): Record<string, unknown> {
  if (value === null || typeof value !== 'object' || isArray(value) || isView(value)) {
    throw new TypeError(`${name} must be an object, received ${describe(value)}`);
  }
  return value as Record<string, unknown>;
}

// ---------------------------------------------------------------------------------------------
// Aliasing, by memory

// Scratch for one overlap check (no caller code runs during a check, so no call can nest here):
// each array's buffer, and its byte range and whether the buffer is shared, read only when a pair
// needs them (NaN / 0: not read yet).
const regionBuffers: (ArrayBufferLike | null)[] = [];
const regionStarts: number[] = [];
const regionEnds: number[] = [];
const regionShared: number[] = []; // 0 not read, 1 not shared, 2 shared

/**
 * Outputs must not share memory with any other argument, except for the one exact alias each
 * function allows (`out.y` over exactly `x`'s bytes, `out.dx` over exactly `dy`'s): `arrays[i]`
 * for i < `outputs` are the outputs (null: absent), the rest the inputs, `names` their names;
 * `allowedOutput`/`allowedInput` index the permitted pair (-1: none).
 *
 * A non-shared block of memory has one ArrayBuffer object, so the buffer's identity and the byte
 * ranges decide. A SharedArrayBuffer's memory can have several objects (structuredClone, a round
 * trip through a worker, a shared WebAssembly.Memory's buffer before and after grow()), each
 * starting at the start of the memory: an output and another argument on two different
 * SharedArrayBuffers whose byte ranges would intersect are probed for being the same memory
 * (sameMemory). Runs no caller code.
 *
 * Cost: one intrinsic read per array (its buffer) and one per output (whether its buffer is
 * shared) in the common case of arrays over distinct non-shared buffers; byte ranges are read
 * only for the pairs that share a buffer object or are both shared.
 */
export function checkNoOverlap(
  names: readonly string[],
  arrays: readonly (FloatArray | null)[],
  outputs: number,
  allowedOutput = -1,
  allowedInput = -1,
  otherOutput = -1,
  otherInput = -1,
): void {
  const n = arrays.length;
  for (let i = 0; i < n; i++) {
    const a = arrays[i];
    regionBuffers[i] = a === null ? null : typedArrayBuffer(a);
    regionStarts[i] = NaN;
    regionShared[i] = 0;
  }
  try {
    for (let i = 0; i < outputs; i++) {
      const bufferA = regionBuffers[i];
      if (bufferA === null) continue;
      for (let j = i + 1; j < n; j++) {
        const bufferB = regionBuffers[j];
        if (bufferB === null) continue;
        // Two distinct buffer objects are one memory only when both are SharedArrayBuffers.
        if (bufferA !== bufferB && (!sharedAt(i) || !sharedAt(j))) continue;
        if (!rangeAt(arrays, i) || !rangeAt(arrays, j)) continue; // an empty array overlaps nothing
        const startA = regionStarts[i];
        const endA = regionEnds[i];
        const startB = regionStarts[j];
        const endB = regionEnds[j];
        if (!(startA < endB && startB < endA)) continue; // disjoint byte ranges, whatever the memory
        let how = '';
        if (bufferA !== bufferB) {
          if (!sameMemory(bufferA, bufferB, startA > startB ? startA : startB)) continue;
          how = ` (${names[j]} is a view of another SharedArrayBuffer object over the same memory)`;
        }
        const allowed = (i === allowedOutput && j === allowedInput) || (i === otherOutput && j === otherInput);
        if (allowed && startA === startB && endA === endB) continue;
        const hint = allowed ? ' (it may be the very same array, not a partial overlap)' : '';
        throw new RangeError(`${names[i]} must not overlap ${names[j]}${hint}${how}`);
      }
    }
  } finally {
    for (let i = 0; i < n; i++) regionBuffers[i] = null; // keep no caller's buffer alive
  }
}

/** Whether the buffer of array i (non-null) is shared, read once per check. */
function sharedAt(i: number): boolean {
  if (regionShared[i] === 0) regionShared[i] = isShared(regionBuffers[i]!) ? 2 : 1;
  return regionShared[i] === 2;
}

/** Reads the byte range of array i (non-null) once per check; false when it is empty. */
function rangeAt(arrays: readonly (FloatArray | null)[], i: number): boolean {
  if (regionStarts[i] !== regionStarts[i]) {
    const a = arrays[i]!;
    const start = typedArrayByteOffset(a);
    regionStarts[i] = start;
    regionEnds[i] = start + typedArrayLength(a) * (typedArrayTag(a) === 'Float64Array' ? 8 : 4);
  }
  return regionEnds[i] > regionStarts[i];
}

/**
 * Whether two distinct buffers are views of the same memory, probed at byte `at` (which lies in
 * the output's range of `output` and in the other argument's range of `other`). Only two
 * SharedArrayBuffers can be: flip the lowest bit of that byte through `output` with Atomics.xor,
 * read it through `other`, and flip it back (xor again, so a concurrent change of the other bits
 * survives); the byte ends as it was. The same memory sees the flip, other memory does not.
 * Residual case: another thread writing that very byte of `other` between the two reads, from
 * exactly the value `output`'s byte had to that value with its lowest bit flipped, would look
 * like the same memory (a false RangeError), and one writing it back would hide the same memory
 * (a missed overlap); a second probe on the highest bit makes either need two such races.
 */
function sameMemory(output: ArrayBufferLike, other: ArrayBufferLike, at: number): boolean {
  if (atomicsXor === undefined || atomicsLoad === undefined || !isShared(output) || !isShared(other)) return false;
  const a = new Uint8(output);
  const b = new Uint8(other);
  for (const bit of [1, 0x80]) {
    const before = atomicsLoad(b, at);
    const old = atomicsXor(a, at, bit);
    const seen = atomicsLoad(b, at);
    atomicsXor(a, at, bit);
    if (!(before === old && seen === (old ^ bit))) return false;
  }
  return true;
}
