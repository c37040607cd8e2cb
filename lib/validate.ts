/**
 * Argument validation shared by every backend (SPEC "Bad input").
 *
 * Wrong types throw TypeError; wrong lengths, shapes and option values throw RangeError.
 * Every message names the argument, what was expected and what was received. The façade
 * validates a whole call before it writes anything, so a call that throws has written nothing.
 */
import type { FloatArray, Geometry } from './backend.js';

export type Layout = 'channels-first' | 'channels-last';
export type Activation = 'none' | 'relu';
export type DType = 'float32' | 'float64';

// %TypedArray%.prototype[Symbol.toStringTag] answers a typed array's real kind and cannot be
// faked by an object (it returns undefined for anything that is not a typed array), and it
// works across realms (worker_threads, iframes) where instanceof does not.
const typedArrayPrototype = Object.getPrototypeOf(Uint8Array.prototype) as object;
const typedArrayTag = Object.getOwnPropertyDescriptor(typedArrayPrototype, Symbol.toStringTag)!.get as (
  this: unknown,
) => string | undefined;

// The intrinsic getters of what the backends read from an array. A genuine typed array can
// still shadow them (an own property, a subclass getter): one that claims a length it does not
// have would make the js and wasm backends read past it (NaN or stale data in the running
// stats), and a false BYTES_PER_ELEMENT would make the wasm backend copy it as the other type.
const intrinsicViewProperties = (['length', 'byteOffset', 'byteLength', 'buffer'] as const).map(
  (key) => [key, Object.getOwnPropertyDescriptor(typedArrayPrototype, key)!.get as (this: unknown) => unknown] as const,
);

/** The first property a typed array of `dtype` reports differently from what it is, if any. */
function shadowedProperty(a: FloatArray, dtype: DType): string | undefined {
  for (const [key, intrinsic] of intrinsicViewProperties) if (a[key] !== intrinsic.call(a)) return key;
  return a.BYTES_PER_ELEMENT === (dtype === 'float32' ? 4 : 8) ? undefined : 'BYTES_PER_ELEMENT';
}

/** What a value is, for error messages: "Int32Array(3)", "array(4)", "null", "string 'x'". */
export function describe(value: unknown): string {
  if (value === null) return 'null';
  if (value === undefined) return 'undefined';
  if (ArrayBuffer.isView(value)) {
    const tag = typedArrayTag.call(value);
    return tag ? `${tag}(${(value as unknown as { length: number }).length})` : 'DataView';
  }
  if (Array.isArray(value)) return `array(${value.length})`;
  if (typeof value === 'string') return `string '${value.length > 40 ? value.slice(0, 40) + '…' : value}'`;
  if (typeof value === 'number' || typeof value === 'boolean' || typeof value === 'bigint') {
    return `${typeof value} ${String(value)}`;
  }
  if (typeof value === 'function') return 'function';
  return `object ${Object.prototype.toString.call(value).slice(8, -1)}`;
}

/** The element type of a genuine Float32Array/Float64Array, else undefined. */
export function dtypeOf(value: unknown): DType | undefined {
  if (!ArrayBuffer.isView(value)) return undefined;
  const tag = typedArrayTag.call(value);
  return tag === 'Float32Array' ? 'float32' : tag === 'Float64Array' ? 'float64' : undefined;
}

function isDetached(a: ArrayBufferView): boolean {
  const buffer = a.buffer as ArrayBufferLike & { detached?: boolean };
  if (typeof buffer.detached === 'boolean') return buffer.detached;
  if (buffer.byteLength !== 0) return false;
  // Node 20 has no ArrayBuffer.prototype.detached, and an empty buffer has byteLength 0 too:
  // only a detached one refuses a new view.
  try {
    new Uint8Array(buffer, 0, 0);
    return false;
  } catch {
    return true;
  }
}

/**
 * A float tensor argument: a Float32Array or Float64Array of `dtype` (when given),
 * not detached, of `length` elements (when given).
 */
export function checkFloatArray(
  value: unknown,
  name: string,
  dtype?: DType,
  length?: number,
): FloatArray {
  const kind = dtypeOf(value);
  if (kind === undefined) {
    throw new TypeError(`${name} must be a Float32Array or Float64Array, received ${describe(value)}`);
  }
  const array = value as FloatArray;
  const shadowed = shadowedProperty(array, kind);
  if (shadowed !== undefined) {
    throw new TypeError(
      `${name} must be a plain ${describe(value).replace(/\(.*/, '')}, received one whose ${shadowed} property is overridden`,
    );
  }
  if (dtype !== undefined && kind !== dtype) {
    const want = dtype === 'float32' ? 'Float32Array' : 'Float64Array';
    throw new TypeError(`${name} must be a ${want} like x, received ${describe(value)}`);
  }
  const detached = () => new TypeError(`${name} must not be detached, received a detached ${describe(value)}`);
  if (length === undefined) {
    // an array that fixes the length of the others (updateRunningStats' runningMean)
    if (array.length === 0 && isDetached(array)) throw detached();
  } else if (array.length !== length) {
    if (length > 0 && isDetached(array)) throw detached();
    throw new RangeError(`${name} must have length ${length}, received length ${array.length}`);
  }
  return array;
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

/** The checked shape and what it means under a layout. */
export interface Shape {
  readonly dims: readonly number[];
  readonly elements: number;
  readonly geometry: Geometry;
  /** values per channel (M) */
  readonly perChannel: number;
}

/** A shape of rank >= 2 with non-negative integer dims whose product is a safe integer. */
export function checkShape(value: unknown, layout: Layout, name = 'shape'): Shape {
  if (!Array.isArray(value)) {
    throw new TypeError(`${name} must be an array of dimensions, received ${describe(value)}`);
  }
  // Read every dim once (holes as undefined): what is checked is what the geometry is computed
  // from, even when the array has getters or is a Proxy.
  const copy: unknown[] = Array.from(value as unknown[]);
  if (copy.length < 2) {
    throw new RangeError(`${name} must have rank >= 2 ([N, C, ...]), received rank ${copy.length}`);
  }
  let elements = 1;
  for (let i = 0; i < copy.length; i++) {
    const d = copy[i];
    if (typeof d !== 'number') {
      throw new TypeError(`${name}[${i}] must be a number, received ${describe(d)}`);
    }
    if (!Number.isSafeInteger(d) || d < 0) {
      throw new RangeError(`${name}[${i}] must be a non-negative integer, received ${d}`);
    }
  }
  const dims = copy as number[];
  // Zero anywhere makes the product 0; check the product of the non-zero dims for overflow too,
  // so [0, 2**40, 2**40] is still refused as a shape no array can have.
  let nonZero = 1;
  for (const d of dims) {
    elements *= d;
    if (d > 0) nonZero *= d;
    if (nonZero > Number.MAX_SAFE_INTEGER) {
      throw new RangeError(`${name} must have a product of at most 2^53-1 elements, received [${dims.join(', ')}]`);
    }
  }
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

/** x and its shape: x's length must equal the shape's product. */
export function checkTensor(
  x: unknown,
  xName: string,
  shapeValue: unknown,
  layout: Layout,
): { x: FloatArray; dtype: DType; shape: Shape } {
  const array = checkFloatArray(x, xName);
  const shape = checkShape(shapeValue, layout);
  if (array.length !== shape.elements) {
    if (shape.elements > 0 && isDetached(array)) {
      throw new TypeError(`${xName} must not be detached, received a detached ${describe(x)}`);
    }
    throw new RangeError(
      `${xName} must have length ${shape.elements} (the product of shape [${shape.dims.join(', ')}]), received length ${array.length}`,
    );
  }
  return { x: array, dtype: dtypeOf(array)!, shape };
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
}

export const DEFAULT_OPTIONS: Readonly<ParsedOptions> = Object.freeze({
  eps: 1e-5,
  momentum: 0.9,
  unbiasedRunningVar: true,
  layout: 'channels-first',
  activation: 'none',
  skipNonFiniteUpdate: false,
  training: true,
});

type OptionName = keyof ParsedOptions;

/**
 * Reads `options` for a function that accepts `allowed` keys. Unknown keys are refused
 * (a misspelt `epsilon` would otherwise be silently ignored); undefined values take the default.
 */
export function parseOptions(options: unknown, allowed: readonly OptionName[], fn: string): ParsedOptions {
  const parsed: ParsedOptions = { ...DEFAULT_OPTIONS };
  if (options === undefined || options === null) return parsed;
  if (typeof options !== 'object' || Array.isArray(options) || ArrayBuffer.isView(options)) {
    throw new TypeError(`options must be an object, received ${describe(options)}`);
  }
  const record = options as Record<string, unknown>;
  for (const key of Object.keys(record)) {
    if (!(allowed as readonly string[]).includes(key)) {
      throw new RangeError(`options.${key} is not an option of ${fn}; expected one of ${allowed.join(', ')}`);
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
        if (typeof value !== 'boolean') {
          throw new TypeError(`options.${key} must be a boolean, received ${describe(value)}`);
        }
        parsed[key as 'training'] = value;
        break;
    }
  }
  return parsed;
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
  if (value === null || typeof value !== 'object' || Array.isArray(value) || ArrayBuffer.isView(value)) {
    throw new TypeError(`${name} must be an object, received ${describe(value)}`);
  }
  return value as Record<string, unknown>;
}

// ---------------------------------------------------------------------------------------------
// Aliasing

interface Region {
  name: string;
  array: FloatArray;
}

function sameView(a: FloatArray, b: FloatArray): boolean {
  return a.buffer === b.buffer && a.byteOffset === b.byteOffset && a.length === b.length;
}

function overlaps(a: FloatArray, b: FloatArray): boolean {
  if (a.buffer !== b.buffer || a.byteLength === 0 || b.byteLength === 0) return false;
  return a.byteOffset < b.byteOffset + b.byteLength && b.byteOffset < a.byteOffset + a.byteLength;
}

/**
 * Outputs must not overlap any other argument, except for the exact aliases allowed
 * (`y` may be `x`, `dx` may be `dy`): each `allowed` pair names an output and the input
 * it may share memory with, as the very same view.
 */
export function checkNoOverlap(
  outputs: readonly Region[],
  inputs: readonly Region[],
  allowed: readonly (readonly [string, string])[] = [],
): void {
  const all = [...outputs, ...inputs];
  for (const out of outputs) {
    for (const other of all) {
      if (other === out || !overlaps(out.array, other.array)) continue;
      const permitted = allowed.some(
        ([o, i]) => (o === out.name && i === other.name) || (o === other.name && i === out.name),
      );
      if (permitted && sameView(out.array, other.array)) continue;
      const hint = permitted ? ' (it may be the very same array, not a partial overlap)' : '';
      throw new RangeError(`${out.name} must not overlap ${other.name}${hint}`);
    }
  }
}
