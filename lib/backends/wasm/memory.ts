/**
 * Zero-copy arrays: `wasmMemory`, the module memory of the loaded wasm backend (README "WASM:
 * zero-copy arrays"). An array allocated here lives in module memory; the backend passes it to
 * the kernels by pointer, without a copy. Module memory is not garbage-collected: free() it.
 */
import type { FloatArray } from '../../core/descriptor.js';
import { elementBytes, floatKind, typedArrayBuffer, typedArrayByteLength, typedArrayByteOffset } from '../../intrinsics.js';
import type { WasmAbi } from './abi.js';
import type { WasmBackend } from './backend.js';

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
export const MAX_BLOCK = 2 ** 31 - 2 ** 16;

export function tooLarge(bytes: number, memoryBytes: number): RangeError {
  return new RangeError(
    `simdnorm wasm: cannot allocate ${bytes} bytes in module memory (now ${memoryBytes} bytes): one block, ` +
      'a wasmMemory.alloc array or the area holding every copied array of a call, is at most 2 GiB - 64 KiB ' +
      '(2147418112 bytes), and the memory at most 4 GiB; use the native or js backend for tensors this large',
  );
}

/** Whether a genuine float array is a view inside one live block of this module's memory. */
export function inLiveBlock(abi: WasmAbi, array: FloatArray): boolean {
  return abi.inBlock(typedArrayByteOffset(array), typedArrayByteLength(array), elementBytes(array));
}

/** Whether the backend over `abi` passes `array` by pointer. */
export function isZeroCopy(abi: WasmAbi, array: FloatArray): boolean {
  return floatKind(array) !== undefined && abi.isModuleBuffer(typedArrayBuffer(array)) && inLiveBlock(abi, array);
}

/** One backend's WasmMemory; releaseScratch is the marshaller's. */
export function createWasmMemory(abi: WasmAbi, releaseScratch: () => void): WasmMemory {
  function alloc(type: FloatArrayConstructor, length: number): WasmArray<FloatArray> {
    if (type !== Float32Array && type !== Float64Array) {
      throw new TypeError('wasmMemory.alloc type must be Float32Array or Float64Array');
    }
    if (!Number.isSafeInteger(length) || length < 0) {
      throw new RangeError(`wasmMemory.alloc length must be a non-negative integer, received ${String(length)}`);
    }
    const bytes = Math.max(length * type.BYTES_PER_ELEMENT, 16);
    if (bytes > MAX_BLOCK) throw tooLarge(bytes, abi.buffer.byteLength);
    const ptr = abi.alloc(bytes);
    if (ptr === 0) throw tooLarge(bytes, abi.buffer.byteLength);
    let view: FloatArray = new type(abi.buffer, ptr, length);
    view.fill(0);
    let freed = false;
    abi.userBlocks = true;
    return {
      ptr,
      length,
      get array() {
        if (freed) throw new Error('wasmMemory: this array was freed');
        if (typedArrayBuffer(view) !== abi.buffer) view = new type(abi.buffer, ptr, length);
        return view;
      },
      get freed() {
        return freed;
      },
      free() {
        if (freed) return;
        freed = true;
        abi.free(ptr);
      },
    };
  }
  return {
    alloc: alloc as WasmMemory['alloc'],
    isZeroCopy: (array) => isZeroCopy(abi, array),
    get buffer() {
      abi.userBlocks = true; // the caller may make views of it (marshal.ts then checks every array)
      return abi.buffer;
    },
    get bytes() {
      return abi.buffer.byteLength;
    },
    releaseScratch,
  };
}

// ---------------------------------------------------------------------------------------------
// The backend the providers hand out (one per realm, shared by the Node and browser providers)

let loaded: WasmBackend | undefined;

/** The wasm backend the providers loaded, or undefined before it is loaded. */
export function loadedWasmBackend(): WasmBackend | undefined {
  return loaded;
}

/** Records the backend the providers hand out; the first one loaded wins. */
export function adoptWasmBackend(backend: WasmBackend): WasmBackend {
  loaded ??= backend;
  return loaded;
}

function requireLoaded(): WasmBackend {
  if (!loaded) {
    throw new Error(
      "simdnorm: the wasm backend is not loaded yet: await ready() (browsers) or call useBackend('wasm') first",
    );
  }
  return loaded;
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
  isZeroCopy: (array) => loaded?.memory.isZeroCopy(array) ?? false,
  get buffer() {
    return requireLoaded().memory.buffer;
  },
  get bytes() {
    return requireLoaded().memory.bytes;
  },
  releaseScratch: () => loaded?.memory.releaseScratch(),
};
