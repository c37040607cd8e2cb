/**
 * The read-once table (issue 12): every public operation, every point where the library reads a
 * value the caller supplied (each property of inputs / options / out / a layer's state, each dim
 * of a shape), and at that point a getter that attacks the call:
 *
 *   detach      transfer another argument's buffer away (structuredClone with transfer)
 *   shrink      shrink another argument's resizable ArrayBuffer to 0 bytes
 *   own-length / own-buffer / own-byteLength / own-set
 *               define an own accessor (or `set` method) on another argument that lies (or calls
 *               simdnorm again); the library must never read them
 *   reentrant   call simdnorm again (train, moments, infer on other arrays) from the getter
 *   proxy       (per op) inputs, options, out, shape, state are Proxies that answer the first read
 *               of each key with the valid value and every later read with another one
 *
 * Outcome required, on every backend: either the documented TypeError/RangeError with every
 * array's bytes unchanged (a detached victim's bytes are checked in the buffer it was
 * transferred to), or exactly the result of the same call made cleanly; each getter runs once,
 * and the own accessors never.
 */
import {
  typedArrayBuffer,
  typedArrayByteLength,
  typedArrayByteOffset,
} from '../../lib/intrinsics.js';
import type { FacadeApi, LayerLike } from './bad-inputs.js';

export type FloatArray = Float32Array | Float64Array;

/** What the table needs of the package: what the bad-input matrix needs of it. */
export type Api = FacadeApi;
export type Layer = LayerLike;

/** One prepared call. */
export interface Instance {
  /** every array the call reads or writes, by name */
  arrays: Record<string, FloatArray>;
  /** the caller's objects whose properties are read: inputs, options, out, shape, state */
  holders: Record<string, object>;
  /** runs the call with the holders as they are now (a Promise for async ops) */
  run(holders: Record<string, object>): unknown;
  /** scalar state beyond the arrays (a layer's counter) */
  extra?(): unknown;
  /** the arrays this call uses (default: every array): only their loss must make it throw */
  victims?: string[];
}

export interface Spec {
  op: string;
  async: boolean;
  make(api: Api, resizable: ReadonlySet<string>): Instance;
}

const N = 2;
const C = 3;
const S = 4;
const E = N * C * S;
const SHAPE = (): number[] => [N, C, S];

/** ArrayBuffer with the resizable-buffer options (ES2024; this project's TypeScript lib is older). */
export const ResizableBuffer = ArrayBuffer as unknown as new (bytes: number, options?: { maxByteLength: number }) => ArrayBuffer & {
  resize(bytes: number): void;
};

/** A deterministic Float32Array of n values in [0.5, 1.5), over a resizable buffer when asked. */
function arr(n: number, seed: number, resizable = false): Float32Array {
  const buffer = resizable ? new ResizableBuffer(n * 4, { maxByteLength: n * 4 }) : new ArrayBuffer(n * 4);
  const a = new Float32Array(buffer, 0, n);
  let s = seed * 2654435761;
  for (let i = 0; i < n; i++) {
    s = (s * 1103515245 + 12345) % 2147483648;
    a[i] = 0.5 + s / 2147483648;
  }
  return a;
}

function maker(resizable: ReadonlySet<string>) {
  return (name: string, n: number, seed: number) => arr(n, seed, resizable.has(name));
}

function layer(api: Api, a: ReturnType<typeof maker>): Layer {
  const l = new api.BatchNorm(C, { momentum: 0.7, activation: 'relu' });
  l.loadState({ weight: a('gamma', C, 71), bias: a('beta', C, 72), running_mean: a('runningMean', C, 73), running_var: a('runningVar', C, 74), num_batches_tracked: 4 });
  return l;
}

function layerArrays(l: Layer): Record<string, FloatArray> {
  const r: Record<string, FloatArray> = {};
  for (const k of ['gamma', 'beta', 'runningMean', 'runningVar', 'dgamma', 'dbeta'] as const) {
    const v = l[k];
    if (v) r[`layer.${k}`] = v;
  }
  return r;
}

function trainSpec(async: boolean): Spec {
  return {
    op: async ? 'batchNormTrainAsync' : 'batchNormTrain',
    async,
    make(api, resizable) {
      const a = maker(resizable);
      const inputs = { x: a('x', E, 1), shape: SHAPE(), gamma: a('gamma', C, 2), beta: a('beta', C, 3), runningMean: a('runningMean', C, 4), runningVar: a('runningVar', C, 5), numBatchesTracked: 2 };
      const out = { y: a('out.y', E, 6), mean: a('out.mean', C, 7), invStd: a('out.invStd', C, 8) };
      const options = { eps: 1e-3, momentum: 0.8 };
      const { shape, numBatchesTracked, ...ins } = inputs;
      void shape; void numBatchesTracked;
      return {
        arrays: { ...ins, 'out.y': out.y, 'out.mean': out.mean, 'out.invStd': out.invStd },
        holders: { inputs, options, out, shape: inputs.shape },
        run: (h) => (async ? api.batchNormTrainAsync : api.batchNormTrain)(h.inputs as never, h.options as never, h.out as never),
      };
    },
  };
}

function inferSpec(async: boolean): Spec {
  return {
    op: async ? 'batchNormInferAsync' : 'batchNormInfer',
    async,
    make(api, resizable) {
      const a = maker(resizable);
      const inputs = { x: a('x', E, 11), shape: SHAPE(), runningMean: a('runningMean', C, 12), runningVar: a('runningVar', C, 13), gamma: a('gamma', C, 14), beta: a('beta', C, 15) };
      const out = { y: a('out.y', E, 16) };
      const options = { eps: 1e-3, activation: 'relu' };
      const { shape, ...ins } = inputs;
      void shape;
      return {
        arrays: { ...ins, 'out.y': out.y },
        holders: { inputs, options, out, shape: inputs.shape },
        run: (h) => (async ? api.batchNormInferAsync : api.batchNormInfer)(h.inputs as never, h.options as never, h.out as never),
      };
    },
  };
}

function backwardSpec(async: boolean): Spec {
  return {
    op: async ? 'batchNormBackwardAsync' : 'batchNormBackward',
    async,
    make(api, resizable) {
      const a = maker(resizable);
      const inputs = { dy: a('dy', E, 21), x: a('x', E, 22), shape: SHAPE(), mean: a('mean', C, 23), invStd: a('invStd', C, 24), gamma: a('gamma', C, 25), y: a('y', E, 26) };
      const out = { dx: a('out.dx', E, 27), dgamma: a('out.dgamma', C, 28), dbeta: a('out.dbeta', C, 29) };
      const options = { activation: 'relu', training: true };
      const { shape, ...ins } = inputs;
      void shape;
      return {
        arrays: { ...ins, 'out.dx': out.dx, 'out.dgamma': out.dgamma, 'out.dbeta': out.dbeta },
        holders: { inputs, options, out, shape: inputs.shape },
        run: (h) => (async ? api.batchNormBackwardAsync : api.batchNormBackward)(h.inputs as never, h.options as never, h.out as never),
      };
    },
  };
}

const momentsSpec: Spec = {
  op: 'moments',
  async: false,
  make(api, resizable) {
    const a = maker(resizable);
    const inputs = { x: a('x', E, 31), shape: SHAPE() };
    const out = { mean: a('out.mean', C, 32), variance: a('out.variance', C, 33) };
    const options = { layout: 'channels-first' };
    return {
      arrays: { x: inputs.x, 'out.mean': out.mean, 'out.variance': out.variance },
      holders: { inputs, options, out, shape: inputs.shape },
      run: (h) => api.moments(h.inputs as never, h.options as never, h.out as never),
    };
  },
};

const updateSpec: Spec = {
  op: 'updateRunningStats',
  async: false,
  make(api, resizable) {
    const a = maker(resizable);
    const inputs = { runningMean: a('runningMean', C, 41), runningVar: a('runningVar', C, 42), mean: a('mean', C, 43), variance: a('variance', C, 44), count: 20, numBatchesTracked: 3 };
    const options = { momentum: null, unbiasedRunningVar: true };
    const { count, numBatchesTracked, ...ins } = inputs;
    void count; void numBatchesTracked;
    return {
      arrays: { ...ins },
      holders: { inputs, options },
      run: (h) => api.updateRunningStats(h.inputs as never, h.options as never),
    };
  },
};

const layerForwardSpec: Spec = {
  op: 'BatchNorm.forward',
  async: false,
  make(api, resizable) {
    const a = maker(resizable);
    const l = layer(api, a);
    const x = a('x', E, 51);
    const out = { y: a('out.y', E, 52) };
    const shape = SHAPE();
    return {
      arrays: { x, 'out.y': out.y, ...layerArrays(l) },
      holders: { shape, out },
      run: (h) => l.forward(x, h.shape, h.out),
      extra: () => l.numBatchesTracked,
      victims: ['x', 'out.y', 'layer.gamma', 'layer.beta', 'layer.runningMean', 'layer.runningVar'],
    };
  },
};

const layerBackwardSpec: Spec = {
  op: 'BatchNorm.backward',
  async: false,
  make(api, resizable) {
    const a = maker(resizable);
    const l = layer(api, a);
    const x = a('x', E, 61);
    l.forward(x, SHAPE());
    const dy = a('dy', E, 62);
    const out = { dx: a('out.dx', E, 63) };
    return {
      arrays: { x, dy, 'out.dx': out.dx, ...layerArrays(l) },
      holders: { out },
      run: (h) => l.backward(dy, h.out),
      extra: () => l.numBatchesTracked,
      victims: ['x', 'dy', 'out.dx', 'layer.gamma', 'layer.dgamma', 'layer.dbeta'],
    };
  },
};

const loadStateSpec: Spec = {
  op: 'BatchNorm.loadState',
  async: false,
  make(api, resizable) {
    const a = maker(resizable);
    const l = layer(api, a);
    const state = { weight: a('state.weight', C, 81), bias: [0.25, 0.5, 0.75], running_mean: a('state.running_mean', C, 83), running_var: a('state.running_var', C, 84), num_batches_tracked: 9 };
    return {
      arrays: { 'state.weight': state.weight, 'state.running_mean': state.running_mean, 'state.running_var': state.running_var, ...layerArrays(l) },
      holders: { state },
      run: (h) => l.loadState(h.state),
      extra: () => l.numBatchesTracked,
      victims: ['state.weight', 'state.running_mean', 'state.running_var', 'layer.gamma', 'layer.beta', 'layer.runningMean', 'layer.runningVar'],
    };
  },
};

export const SPECS: readonly Spec[] = [
  trainSpec(false), trainSpec(true), inferSpec(false), inferSpec(true), backwardSpec(false), backwardSpec(true),
  momentsSpec, updateSpec, layerForwardSpec, layerBackwardSpec, loadStateSpec,
];

// ---------------------------------------------------------------------------------------------
// Bytes

/** A copy of an array's bytes (through intrinsics: an attack's own properties are not read). */
export function bytesOf(a: FloatArray): Uint8Array {
  return new Uint8Array(typedArrayBuffer(a), typedArrayByteOffset(a), typedArrayByteLength(a)).slice();
}

export function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

// ---------------------------------------------------------------------------------------------
// Attacks

export type VictimAttack = 'detach' | 'shrink' | 'own-length' | 'own-buffer' | 'own-byteLength' | 'own-set';
export const VICTIM_ATTACKS: readonly VictimAttack[] = ['detach', 'shrink', 'own-length', 'own-buffer', 'own-byteLength', 'own-set'];

/** State of one attack: what it did, for the checks after the call. */
export interface Armed {
  /** runs inside the getter */
  fire(): void;
  /** after the call: how many times an own accessor of the victim ran (must be 0) */
  ownReads(): number;
  /** the victim's bytes now, where they are (the transfer target after a detach), or null (shrunk) */
  victimBytes(): Uint8Array | null;
  /** removes own properties defined by the attack */
  cleanup(): void;
}

export function arm(api: Api, attack: VictimAttack, victim: FloatArray): Armed {
  let reads = 0;
  let moved: ArrayBuffer | null = null;
  const offset = typedArrayByteOffset(victim);
  const bytes = typedArrayByteLength(victim);
  const own: string[] = [];
  const define = (key: string, get: () => unknown) => {
    own.push(key);
    Object.defineProperty(victim, key, { configurable: true, get: () => (reads++, get()) });
  };
  return {
    fire() {
      switch (attack) {
        case 'detach': {
          const buffer = typedArrayBuffer(victim) as ArrayBuffer;
          moved = structuredClone(buffer, { transfer: [buffer] });
          break;
        }
        case 'shrink':
          (typedArrayBuffer(victim) as ArrayBuffer & { resize(n: number): void }).resize(0);
          break;
        case 'own-length':
          define('length', () => 1 << 20);
          break;
        case 'own-buffer':
          define('buffer', () => new ArrayBuffer(1 << 16));
          break;
        case 'own-byteLength':
          define('byteLength', () => 1 << 20);
          break;
        case 'own-set':
          own.push('set');
          Object.defineProperty(victim, 'set', {
            configurable: true,
            value: () => {
              reads++;
              reenter(api);
            },
          });
          break;
      }
    },
    ownReads: () => reads,
    victimBytes() {
      if (attack === 'shrink') return null;
      if (moved) return new Uint8Array(moved, offset, bytes).slice();
      return bytesOf(victim);
    },
    cleanup() {
      for (const key of own) delete (victim as unknown as Record<string, unknown>)[key];
    },
  };
}

/** Calls simdnorm again on other arrays (resets a backend's per-call state if it kept any). */
export function reenter(api: Api): void {
  const x = arr(40, 91);
  const r = api.batchNormTrain({ x, shape: [4, 2, 5], runningMean: arr(2, 92), runningVar: arr(2, 93) } as never);
  void r;
  api.moments({ x, shape: [2, 4, 5] } as never);
  api.batchNormInfer({ x, shape: [8, 5], runningMean: arr(5, 94), runningVar: arr(5, 95) } as never);
}

/** Every read point of an instance: [holder, key]. */
export function readPoints(inst: Instance): [string, string][] {
  const points: [string, string][] = [];
  for (const [name, holder] of Object.entries(inst.holders)) {
    if (name === 'shape') {
      const dims = holder as number[];
      for (let i = 0; i < dims.length; i++) points.push([name, String(i)]);
    } else {
      for (const key of Object.keys(holder)) points.push([name, key]);
    }
  }
  return points;
}

/** Replaces holder[key] with a getter that counts its runs and fires `attack` on the first. */
export function trap(holder: object, key: string, attack: () => void): () => number {
  const value = (holder as Record<string, unknown>)[key];
  let runs = 0;
  Object.defineProperty(holder, key, {
    configurable: true,
    enumerable: true,
    get() {
      if (runs++ === 0) attack();
      return value;
    },
  });
  return () => runs;
}

/**
 * A Proxy that answers the first read of each key with the target's value and every later read
 * with `other(key, value)`; `reads` counts the reads per key.
 */
export function twoFaced<T extends object>(target: T, other: (key: string, value: unknown) => unknown, reads: Map<string, number>): T {
  return new Proxy(target, {
    get(t, key, receiver) {
      const value = Reflect.get(t, key, receiver);
      if (typeof key !== 'string') return value;
      const n = reads.get(key) ?? 0;
      reads.set(key, n + 1);
      return n === 0 ? value : other(key, value);
    },
  });
}

/** What a later read of a two-faced Proxy answers instead: valid-looking but different. */
export function otherValue(key: string, value: unknown): unknown {
  if (ArrayBuffer.isView(value)) return new Float32Array(1);
  if (typeof value === 'number') return key === 'length' ? 7 : value + 1;
  if (typeof value === 'string') return value === 'relu' ? 'none' : 'channels-last';
  if (Array.isArray(value)) return [1, 1];
  return value;
}
