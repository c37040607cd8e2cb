/** Reading and writing the tensors of tfjs's cpu and wasm backends as Float32Arrays (no copy where the backend allows). */
import type { TensorInfo } from '@tensorflow/tfjs-core';

/** The tfjs backends simdnorm can take over (their tensors are plain memory JavaScript can read). */
export const SUPPORTED_BACKENDS = ['cpu', 'wasm'] as const;
export type SupportedBackend = (typeof SUPPORTED_BACKENDS)[number];

export interface Io {
  /** the float32 values of an input (a view, no copy), or null when they are not float32 */
  read(t: TensorInfo): Float32Array | null;
  /** allocate outputs (all before any `view`: an allocation may move the wasm heap) */
  make(shape: number[]): TensorInfo;
  /** the memory to write an output made by `make` into */
  view(t: TensorInfo): Float32Array;
  /** after writing */
  finish(t: TensorInfo, values: Float32Array): TensorInfo;
}

interface CpuBackendLike {
  data: { get(dataId: object): { values?: unknown } };
  makeTensorInfo(shape: number[], dtype: string, values?: unknown): TensorInfo;
}

interface WasmBackendLike {
  makeOutput(shape: number[], dtype: string): TensorInfo;
  typedArrayFromHeap(t: TensorInfo): unknown;
}

function cpuIo(backend: CpuBackendLike): Io {
  const pending = new Map<TensorInfo, Float32Array>();
  return {
    read(t) {
      const v = backend.data.get(t.dataId).values;
      return t.dtype === 'float32' && v instanceof Float32Array ? v : null;
    },
    make(shape) {
      // Placeholder info: the cpu backend creates the tensor from the values once they are written.
      const info = { dataId: {}, shape, dtype: 'float32' } as TensorInfo;
      pending.set(info, new Float32Array(sizeOf(shape)));
      return info;
    },
    view(t) {
      return pending.get(t)!;
    },
    finish(t, values) {
      pending.delete(t);
      return backend.makeTensorInfo(t.shape, 'float32', values);
    },
  };
}

function wasmIo(backend: WasmBackendLike): Io {
  return {
    read(t) {
      if (t.dtype !== 'float32') return null;
      const v = backend.typedArrayFromHeap(t);
      return v instanceof Float32Array ? v : null;
    },
    make(shape) {
      return backend.makeOutput(shape, 'float32');
    },
    view(t) {
      return backend.typedArrayFromHeap(t) as Float32Array;
    },
    finish(t) {
      return t;
    },
  };
}

export function ioFor(backendName: SupportedBackend, backend: unknown): Io {
  return backendName === 'cpu' ? cpuIo(backend as CpuBackendLike) : wasmIo(backend as WasmBackendLike);
}

export function sizeOf(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

