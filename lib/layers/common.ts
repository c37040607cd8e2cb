/**
 * What the layers share (BatchNorm in lib/layer.ts; LayerNorm, RMSNorm, GroupNorm, InstanceNorm
 * here): dtype typing, constructor options, inputs, and state()/loadState() under PyTorch's names.
 */
import type { FloatArray } from '../api.js';
import { Float64, isArray, typedArrayLength, typedArraySet, typedArrayTag } from '../intrinsics.js';
import {
  allocateFloat,
  checkCount,
  checkFloatArray,
  checkObject,
  describe,
  parseOptions,
  readShape,
  type DType,
  type ParsedOptions,
} from '../validate.js';
import { Home } from './home.js';

/** The element type name of an array type: 'float32' for Float32Array, 'float64' for Float64Array. */
export type DTypeOf<T extends FloatArray> = [T] extends [Float64Array]
  ? [T] extends [Float32Array]
    ? DType
    : 'float64'
  : [T] extends [Float32Array]
    ? 'float32'
    : DType;

/** The array type of an element type name. */
export type ArrayOfDType<D extends DType> = [D] extends ['float64'] ? Float64Array : [D] extends ['float32'] ? Float32Array : FloatArray;

/** Options O of a layer over arrays T: `dtype` must name T's element type. */
export type OptionsFor<O, T extends FloatArray> = Omit<O, 'dtype'> & { dtype?: DTypeOf<T> };

/** Options O with a dtype D the compiler knows (the constructor infers the layer's type from it). */
export type OptionsWithDType<O, D extends DType> = Omit<O, 'dtype'> & { dtype: D };

/** A family option a layer passes on to its functional op. */
export type FamilyOptionName = Exclude<keyof ParsedOptions, 'epsGiven'>;

/**
 * Reads a layer constructor's options once: `dtype` (default 'float32'), the layer's own boolean
 * `flags` (with their defaults), and the `family` options it passes to its op; any other key is a
 * RangeError naming the closest valid name ("did you mean").
 */
export function layerOptions<F extends string>(
  options: unknown,
  layer: string,
  flags: Readonly<Record<F, boolean>>,
  family: readonly FamilyOptionName[],
): { dtype: DType; flags: Record<F, boolean>; parsed: Readonly<ParsedOptions> } {
  const { dtype = 'float32', ...rest } = checkObject(options === undefined ? {} : options, 'options');
  const names = Object.keys(flags) as F[];
  const read = {} as Record<F, boolean>;
  for (const name of names) {
    const given = rest[name];
    delete rest[name];
    const value = given === undefined ? flags[name] : given;
    if (typeof value !== 'boolean') throw new TypeError(`options.${name} must be a boolean, received ${describe(value)}`);
    read[name] = value;
  }
  if (dtype !== 'float32' && dtype !== 'float64') {
    throw new RangeError(`options.dtype must be 'float32' or 'float64', received ${describe(dtype)}`);
  }
  const parsed = parseOptions(rest, family, layer, false, [...names, 'dtype']);
  return { dtype, flags: read, parsed };
}

/** A parameter-sized array of the layer's dtype filled with `fill` (RangeError naming `why`). */
export function filled<T extends FloatArray>(dtype: DType, length: number, fill: number, why: string): T {
  const a = allocateFloat(dtype, length, "the layer's parameters", why) as T;
  if (fill !== 0) a.fill(fill);
  return a;
}

/** A layer's input: a Float32Array or Float64Array of the layer's dtype. */
export function checkInput<T extends FloatArray>(value: unknown, name: string, dtype: DType, layer: string): T {
  const want = dtype === 'float32' ? 'Float32Array' : 'Float64Array';
  if (typedArrayTag(value) !== want) {
    throw new TypeError(`${name} must be a ${want} (the ${layer}'s dtype is ${dtype}), received ${describe(value)}`);
  }
  return checkFloatArray(value, name, dtype) as T;
}

/** `out[key]` read once (out may be absent). */
export function outArray<T>(out: unknown, key: string): T | undefined {
  return out === undefined || out === null ? undefined : ((out as Record<string, unknown>)[key] as T | undefined);
}

/** A saved array to write again when it has the length a call needs (else the call allocates). */
export function reuse<T extends FloatArray>(previous: FloatArray | undefined, length: number): T | undefined {
  return previous !== undefined && typedArrayLength(previous) === length ? (previous as T) : undefined;
}

export function backwardFirst(layer: string): Error {
  return new Error(`${layer}.backward needs a forward() first`);
}

/** One state-dict entry: its PyTorch name, the layer's property name, the layer's array (null: absent). */
export type StateEntry = readonly [key: string, property: string, target: FloatArray | null];

/** The present entries as copies (of the layer's dtype), in order. */
export function copyState(entries: readonly StateEntry[]): Record<string, FloatArray> {
  const state: Record<string, FloatArray> = {};
  for (const [key, , target] of entries) {
    if (target === null) continue;
    const copy = allocateFloat(typedArrayTag(target) === 'Float32Array' ? 'float32' : 'float64', typedArrayLength(target), 'a state copy', key);
    typedArraySet(copy, target, 0);
    state[key] = copy;
  }
  return state;
}

/**
 * Loads `state` into the layer's arrays, all or nothing: every present entry must be given with
 * `n` numbers (see {@link readNumbers}); `num_batches_tracked` is read when `tracked`, optional,
 * a non-negative safe integer as a number or bigint. Every entry is read once (each element once)
 * into a copy and checked, and only then is anything written. Returns the new count (`count`
 * when none was given).
 * @throws TypeError for a wrong type, RangeError for a wrong length or count, naming the entry.
 */
export function loadEntries(state: unknown, entries: readonly StateEntry[], n: number, tracked: boolean, count: number): number {
  const s = checkObject(state, 'state');
  // 1. Read every entry once (caller code may run here), in order.
  const values: unknown[] = [];
  for (const [key, , target] of entries) values.push(target === null ? undefined : s[key]);
  const countValue = tracked ? s.num_batches_tracked : undefined;
  // 2. Copy and check each (elements read once each).
  const copies: (Float64Array | null)[] = [];
  for (let k = 0; k < entries.length; k++) {
    const [key, , target] = entries[k];
    copies.push(target === null ? null : readNumbers(values[k], `state.${key}`, n));
  }
  if (countValue !== undefined) {
    count = checkCount(typeof countValue === 'bigint' ? Number(countValue) : countValue, 'state.num_batches_tracked');
    if (typeof countValue === 'bigint' && BigInt(count) !== countValue) {
      throw new RangeError(`state.num_batches_tracked must be an integer >= 0 and at most 2^53-1, received ${countValue}`);
    }
  }
  // 3. The layer's own arrays are reachable by the caller (bn.gamma ...): one that a getter above
  // detached or shrank is refused before anything is written.
  for (const [, property, target] of entries) {
    if (target !== null && typedArrayLength(target) !== n) {
      throw new TypeError(`the layer's ${property} no longer has ${n} elements (detached or resized while the state was read); nothing was loaded`);
    }
  }
  // 4. Write: nothing below can throw.
  for (let k = 0; k < entries.length; k++) {
    const target = entries[k][2];
    if (target !== null) typedArraySet(target, copies[k]!, 0);
  }
  return count;
}

/**
 * A state entry's `n` numbers, read once each into a new Float64Array: a typed array (not a
 * BigInt one; read through intrinsics) or an array / array-like of numbers (its `length` read
 * once, each element once).
 */
export function readNumbers(value: unknown, name: string, n: number): Float64Array {
  const expected = () => new TypeError(`${name} must be an array of ${n} numbers, received ${describe(value)}`);
  if (value === undefined || value === null || typeof value !== 'object') throw expected();
  const tag = typedArrayTag(value);
  if (tag !== undefined) {
    if (tag === 'BigInt64Array' || tag === 'BigUint64Array') {
      throw new TypeError(`${name} must hold numbers, received a ${tag}`);
    }
    const view = value as unknown as ArrayLike<number> & ArrayBufferView;
    const length = typedArrayLength(view);
    if (length !== n) throw new RangeError(`${name} must have length ${n}, received length ${length}`);
    const copy = new Float64(n);
    for (let i = 0; i < n; i++) copy[i] = view[i];
    return copy;
  }
  const source = value as { readonly length?: unknown; readonly [i: number]: unknown };
  const length = source.length; // read once
  if (typeof length !== 'number') throw expected();
  if (length !== n) throw new RangeError(`${name} must have length ${n}, received length ${length}`);
  const copy = new Float64(n);
  for (let i = 0; i < n; i++) {
    const v = source[i]; // read once
    if (typeof v !== 'number') {
      throw new TypeError(`${name}[${i}] must be a number, received ${describe(v)}${isArray(value) ? '' : ' (in an array-like)'}`);
    }
    copy[i] = v;
  }
  return copy;
}

/** Base of the layers: the dtype, PyTorch's train()/eval() switch, where the arrays live. */
export class Module {
  readonly dtype: DType;
  /** true after train(), false after eval() */
  training = true;
  /** @internal the layer's arrays: module memory when made on the wasm backend (lib/layers/home.ts) */
  protected readonly home: Home;

  constructor(dtype: DType) {
    this.dtype = dtype;
    this.home = new Home(dtype);
  }

  /** Whether the layer keeps its arrays in the wasm module memory (made on the wasm backend, not disposed). */
  get inWasmMemory(): boolean {
    return this.home.inModuleMemory;
  }

  /** Training mode; returns this. */
  train(mode = true): this {
    this.training = mode;
    return this;
  }

  /** Evaluation mode; returns this. */
  eval(): this {
    return this.train(false);
  }
}

/** A normalizedShape given as a number or an array of dims (each >= 1), read once into a plain array. */
export function readNormalizedShape(value: unknown): number[] {
  if (typeof value === 'number') return [checkCount(value, 'normalizedShape', 1)];
  if (!isArray(value)) throw new TypeError(`normalizedShape must be a number or an array of dimensions, received ${describe(value)}`);
  const dims = readShape(value, 'normalizedShape', 1);
  for (let i = 0; i < dims.length; i++) {
    if (dims[i] < 1) throw new RangeError(`normalizedShape[${i}] must be an integer >= 1, received ${dims[i]}`);
  }
  return dims;
}

/** The product of dims. */
export function product(dims: readonly number[], from = 0): number {
  let p = 1;
  for (let i = from; i < dims.length; i++) p *= dims[i];
  return p;
}
