/**
 * The engine's own typed-array and buffer operations, captured when this module loads, so that
 * nothing a caller does later (an own `length` on an array, a subclass with a `set` that calls
 * simdnorm again, a patched `Float32Array.prototype.set`, a Proxy) can run code or tell the
 * library something other than what the memory is. Every read of a caller's typed array in
 * lib/ goes through these (or is an integer-indexed element access, which no JavaScript can
 * intercept on a genuine typed array).
 *
 * `uncurry(f)(self, ...args)` is `f.call(self, ...args)` without looking `call` up at call time.
 */
import type { FloatArray } from './backend.js';

const FunctionCall = Function.prototype.call;
const bind = Function.prototype.bind;
function uncurry<A extends unknown[], R>(fn: (...args: A) => R): (self: unknown, ...args: A) => R {
  return bind.call(FunctionCall, fn) as (self: unknown, ...args: A) => R;
}

function getter(proto: object | undefined, key: PropertyKey): ((self: unknown) => unknown) | undefined {
  const get = proto ? Object.getOwnPropertyDescriptor(proto, key)?.get : undefined;
  return get ? uncurry(get as () => unknown) : undefined;
}

const TypedArrayPrototype = Object.getPrototypeOf(Uint8Array.prototype) as object;

/** The typed array's kind ('Float32Array', …), or undefined for anything that is not one (Proxies included). */
export const typedArrayTag = getter(TypedArrayPrototype, Symbol.toStringTag) as (a: unknown) => string | undefined;
/** Element count, 0 once detached or out of bounds (a resizable buffer shrunk under it). */
export const typedArrayLength = getter(TypedArrayPrototype, 'length') as (a: ArrayBufferView) => number;
export const typedArrayByteOffset = getter(TypedArrayPrototype, 'byteOffset') as (a: ArrayBufferView) => number;
export const typedArrayByteLength = getter(TypedArrayPrototype, 'byteLength') as (a: ArrayBufferView) => number;
export const typedArrayBuffer = getter(TypedArrayPrototype, 'buffer') as (a: ArrayBufferView) => ArrayBufferLike;
/** `%TypedArray%.prototype.set`: copies `source` (a typed array: no JavaScript runs) into `target` at `offset`. */
export const typedArraySet = uncurry(
  (TypedArrayPrototype as { set: (source: ArrayLike<number>, offset?: number) => void }).set,
) as unknown as (target: ArrayBufferView, source: ArrayBufferView, offset: number) => void;
export const typedArrayFill = uncurry(
  (TypedArrayPrototype as { fill: (value: number) => unknown }).fill,
) as unknown as (target: ArrayBufferView, value: number) => void;

const arrayBufferByteLength = getter(ArrayBuffer.prototype, 'byteLength') as (b: unknown) => number;
const arrayBufferResizable = getter(ArrayBuffer.prototype, 'resizable') as ((b: unknown) => boolean) | undefined;
const SAB = (globalThis as { SharedArrayBuffer?: typeof SharedArrayBuffer }).SharedArrayBuffer;
const sharedByteLength = getter(SAB?.prototype, 'byteLength') as ((b: unknown) => number) | undefined;

/**
 * Whether `buffer` is a SharedArrayBuffer: ArrayBuffer's intrinsic byteLength getter refuses one
 * (a prototype the caller swapped cannot fool it). Cheap for the common non-shared buffer.
 */
export function isShared(buffer: ArrayBufferLike): boolean {
  try {
    arrayBufferByteLength(buffer);
    return false;
  } catch {
    return sharedByteLength !== undefined;
  }
}

/** The buffer's current byte length (0 once detached), from the intrinsic getter of its kind. */
export function bufferByteLength(buffer: ArrayBufferLike): number {
  try {
    return arrayBufferByteLength(buffer);
  } catch {
    return sharedByteLength!(buffer);
  }
}

/** Whether a non-shared ArrayBuffer is resizable (false for shared ones and engines without resizable buffers). */
export function isResizable(buffer: ArrayBufferLike): boolean {
  if (arrayBufferResizable === undefined) return false;
  try {
    return arrayBufferResizable(buffer);
  } catch {
    return false; // a SharedArrayBuffer: growable ones never shrink
  }
}

export const Float32 = Float32Array;
export const Float64 = Float64Array;
export const Uint8 = Uint8Array;
export const isArray = Array.isArray;
export const isView = ArrayBuffer.isView;
const AtomicsObject = (globalThis as { Atomics?: typeof Atomics }).Atomics;
export const atomicsXor = AtomicsObject?.xor;
export const atomicsLoad = AtomicsObject?.load;

/** float32 or float64 for a genuine Float32Array/Float64Array, else undefined. */
export function floatKind(value: unknown): 'float32' | 'float64' | undefined {
  const tag = typedArrayTag(value);
  return tag === 'Float32Array' ? 'float32' : tag === 'Float64Array' ? 'float64' : undefined;
}

/** Bytes per element of a genuine float array (from its kind, not its BYTES_PER_ELEMENT property). */
export function elementBytes(a: FloatArray): 4 | 8 {
  return typedArrayTag(a) === 'Float64Array' ? 8 : 4;
}
