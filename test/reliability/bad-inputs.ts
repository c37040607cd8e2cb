/**
 * The bad-input matrix (README "Errors"): one generator of spoiled calls, operation × argument
 * × way of spoiling it, for the layers a caller can reach (the raw N-API addon's matrix, over
 * descriptors, is test/native/bad-calls.ts):
 *
 *   facadeBadCalls()   the public functions and the BatchNorm layer (run on every backend by
 *                      test/reliability/bad-inputs.test.ts, sync and async);
 *   abiBadCalls()      the raw WASM C ABI of wasm/abi.cpp, sn_run with spoiled scalars and
 *                      pointer tables (run by bad-inputs.test.ts on both wasm variants).
 *
 * Every façade and binding case expects the typed error README "Errors" promises (TypeError for a wrong type,
 * RangeError for a wrong value) whose message names the argument; every ABI case expects a
 * negative return code (a known error code; which one is sn_prepare's business). The runners
 * check on top that nothing was written: every array of the call, bit for bit (and for the ABI, all module memory).
 * Framework-free: the runners bring the assertions.
 */

export type ErrorClass = typeof TypeError | typeof RangeError;
export type FloatArray = Float32Array | Float64Array;
import { randomArray, type FloatCtor } from './bits.js';
import { Flag, PHASE_NAMES, ROLES, SCALAR_COUNT, SLOT_COUNT, SLOT_NAMES, SLOT_SIZE, Scalar, type PhaseName } from '../../lib/core/abi.js';

export type { FloatCtor };
export type DType = 'float32' | 'float64';
export type Layout = 'channels-first' | 'channels-last';

const T_ = TypeError;
const R_ = RangeError;

// ---------------------------------------------------------------------------------------------
// Values: deterministic data, and the typed-array look-alikes every array argument is spoiled with

/** Deterministic values in [0.5, 1.5), so variances and invStd stay meaningful. */
export function filled<C extends FloatCtor>(Ctor: C, n: number, seed: number): InstanceType<C> {
  return randomArray(Ctor, n, (seed * 2654435761) >>> 0, 0.5, 1);
}

export function detachedArray(Ctor: FloatCtor, n: number): FloatArray {
  const a = new Ctor(n);
  structuredClone(a.buffer, { transfer: [a.buffer] });
  return a;
}

/** A genuine typed array of `real` elements whose own `length` property claims `claimed`. */
export function lyingLength(Ctor: FloatCtor, real: number, claimed: number): FloatArray {
  const a = filled(Ctor, real, 99);
  Object.defineProperty(a, 'length', { value: claimed });
  return a;
}

/** A genuine Float32Array that claims 8 bytes per element (or a Float64Array claiming 4). */
export function lyingElementSize(Ctor: FloatCtor, n: number): FloatArray {
  const a = filled(Ctor, n, 98);
  Object.defineProperty(a, 'BYTES_PER_ELEMENT', { value: Ctor.BYTES_PER_ELEMENT === 4 ? 8 : 4 });
  return a;
}

/** An object with every property a typed array of this kind has, but not one. */
export function posingObject(Ctor: FloatCtor, n: number): object {
  const bytes = n * Ctor.BYTES_PER_ELEMENT;
  const value = (v: unknown) => ({ value: v, enumerable: true });
  // Its prototype is the real one (instanceof says yes) and its own properties answer like one.
  return Object.defineProperties(Object.create(Ctor.prototype) as object, {
    length: value(n), byteLength: value(bytes), byteOffset: value(0), buffer: value(new ArrayBuffer(bytes)),
    BYTES_PER_ELEMENT: value(Ctor.BYTES_PER_ELEMENT), [Symbol.toStringTag]: value(Ctor.name),
  });
}

function otherCtor(Ctor: FloatCtor): FloatCtor {
  return Ctor === Float32Array ? Float64Array : Float32Array;
}

export function ctorOf(dtype: DType): FloatCtor {
  return dtype === 'float32' ? Float32Array : Float64Array;
}

interface ArraySpoil {
  what: string;
  make: () => unknown;
  /** wrong type (TypeError), wrong length (RangeError), the other element type, or absent */
  kind: 'type' | 'length' | 'dtype' | 'absent' | 'detached';
}

/**
 * The ways every array argument is spoiled, for an argument of `n` elements of Ctor.
 * `valid` makes a correct value (for the wrappers that keep it inside).
 */
function arraySpoils(Ctor: FloatCtor, n: number, valid: () => FloatArray): ArraySpoil[] {
  const bytes = Math.max(n, 1) * Ctor.BYTES_PER_ELEMENT;
  const other = otherCtor(Ctor);
  const list: ArraySpoil[] = [
    { what: 'a plain Array', kind: 'type', make: () => Array.from(valid()) },
    { what: 'an Int32Array', kind: 'type', make: () => new Int32Array(n) },
    { what: 'a Uint8Array of the same bytes', kind: 'type', make: () => new Uint8Array(bytes) },
    { what: 'a BigInt64Array', kind: 'type', make: () => new BigInt64Array(n) },
    { what: 'a DataView', kind: 'type', make: () => new DataView(new ArrayBuffer(bytes)) },
    { what: 'an ArrayBuffer', kind: 'type', make: () => new ArrayBuffer(bytes) },
    { what: 'an object posing as a typed array', kind: 'type', make: () => posingObject(Ctor, n) },
    { what: 'an object inheriting from a typed array', kind: 'type', make: () => Object.create(valid()) },
    { what: 'a Proxy of a typed array', kind: 'type', make: () => new Proxy(valid(), {}) },
    { what: 'a number', kind: 'type', make: () => 3 },
    { what: 'a string', kind: 'type', make: () => 'x' },
    { what: 'a boolean', kind: 'type', make: () => true },
    { what: `a ${other.name} (the other element type)`, kind: 'dtype', make: () => filled(other, n, 5) },
    { what: 'one element short', kind: 'length', make: () => filled(Ctor, n - 1, 6) },
    { what: 'one element too many', kind: 'length', make: () => filled(Ctor, n + 1, 7) },
    { what: 'a subarray one element short', kind: 'length', make: () => filled(Ctor, n + 2, 8).subarray(1, n) },
    { what: 'empty', kind: 'length', make: () => new Ctor(0) },
    { what: 'a detached buffer', kind: 'detached', make: () => detachedArray(Ctor, n) },
    { what: 'null', kind: 'absent', make: () => null },
    { what: 'undefined', kind: 'absent', make: () => undefined },
  ];
  return list;
}

/**
 * Genuine typed arrays that lie: the library reads arrays only through the engine's own getters
 * (lib/intrinsics.ts), so an own `length` is ignored and the real length is refused. (An own
 * BYTES_PER_ELEMENT is ignored too, which leaves a valid call: test/reliability/snapshot.test.ts.)
 */
function lyingSpoils(Ctor: FloatCtor, n: number): ArraySpoil[] {
  return [
    { what: 'a typed array whose length property lies (half the claimed length)', kind: 'length', make: () => lyingLength(Ctor, Math.max(1, n >> 1), n) },
  ];
}

// ---------------------------------------------------------------------------------------------
// The façade

export type FacadeOp =
  | 'batchNormTrain'
  | 'batchNormTrainAsync'
  | 'batchNormInfer'
  | 'batchNormInferAsync'
  | 'batchNormBackward'
  | 'batchNormBackwardAsync'
  | 'moments'
  | 'updateRunningStats'
  | 'BatchNorm.forward'
  | 'BatchNorm.backward'
  | 'BatchNorm.loadState';

/** What a façade case needs of the package (the module object). */
export interface FacadeApi {
  batchNormTrain: (...a: never[]) => unknown;
  batchNormTrainAsync: (...a: never[]) => Promise<unknown>;
  batchNormInfer: (...a: never[]) => unknown;
  batchNormInferAsync: (...a: never[]) => Promise<unknown>;
  batchNormBackward: (...a: never[]) => unknown;
  batchNormBackwardAsync: (...a: never[]) => Promise<unknown>;
  moments: (...a: never[]) => unknown;
  updateRunningStats: (...a: never[]) => unknown;
  BatchNorm: new (numFeatures: number, options?: object) => LayerLike;
}

export interface LayerLike {
  gamma: FloatArray | null;
  beta: FloatArray | null;
  runningMean: FloatArray | null;
  runningVar: FloatArray | null;
  dgamma: FloatArray | null;
  dbeta: FloatArray | null;
  numBatchesTracked: number;
  training: boolean;
  forward(x: unknown, shape: unknown, out?: unknown): FloatArray;
  backward(dy: unknown, out?: unknown): FloatArray;
  loadState(state: unknown): void;
}

/** A prepared call: run it once; `watched` are the arrays that must keep every bit. */
export interface PreparedCall {
  call: () => unknown;
  watched: ArrayBufferView[];
  /** extra state that must not change (layer counters), as a comparable string */
  state?: () => string;
}

export interface FacadeCase {
  op: FacadeOp;
  dtype: DType;
  layout: Layout;
  /** the spoiled argument, as the caller writes it: inputs.x, options.eps, out.y, shape, ... */
  argument: string;
  what: string;
  error: ErrorClass;
  /** the argument name the message must contain (a word, or a pattern) */
  blame: string | RegExp;
  async: boolean;
  prepare(api: FacadeApi): PreparedCall;
}

// The valid call every case starts from: N = 4, C = 3, spatial 5.
const N = 4;
const C = 3;
const S = 5;
const ELEMENTS = N * C * S;
const shapeOf = (layout: Layout): number[] => (layout === 'channels-first' ? [N, C, S] : [N, S, C]);

type Role =
  | 'x' // the tensor that fixes the element type
  | 'tensor' // another tensor of x's length (dy, y)
  | 'param' // a required per-channel array
  | 'optParam' // an optional per-channel array (gamma, beta)
  | 'optTensor' // an optional tensor of x's length (residual)
  | 'running' // runningMean/runningVar of train: optional, but only as a pair
  | 'statsFirst' // updateRunningStats' runningMean: fixes the element type and C
  | 'shape'
  | 'numBatchesTracked'
  | 'count'
  | 'outTensor'
  | 'outParam';

interface OpSpec {
  op: FacadeOp;
  async: boolean;
  /** the slots of `inputs` (and `out`) with their roles, in the order the façade checks them */
  slots: [string, Role][];
  /** the option names the function accepts, with a valid value of each */
  options: Record<string, unknown>;
  /** an option of another function (refused by name) */
  /** an option of another function (accepted and ignored here) with a bad value: still refused */
  foreignOption: [string, unknown, ErrorClass];
  inputs(Ctor: FloatCtor, layout: Layout): Record<string, unknown>;
  out(Ctor: FloatCtor): Record<string, unknown> | undefined;
  invoke(api: FacadeApi, inputs: unknown, options: unknown, out: unknown): unknown;
  /** channel-length arrays in check order: who is blamed when the shape's C changes */
  firstChannelArgument: string;
  /** who is blamed when x has the other element type */
  dtypeBlame: RegExp;
}

const channelArrays = (Ctor: FloatCtor, seed: number) => filled(Ctor, C, seed);

const TRAIN: Omit<OpSpec, 'op' | 'async' | 'invoke'> = {
  slots: [
    ['x', 'x'], ['shape', 'shape'], ['gamma', 'optParam'], ['beta', 'optParam'], ['runningMean', 'running'],
    ['runningVar', 'running'], ['numBatchesTracked', 'numBatchesTracked'], ['residual', 'optTensor'],
    ['out.y', 'outTensor'], ['out.mean', 'outParam'], ['out.invStd', 'outParam'],
  ],
  options: { eps: 1e-3, momentum: 0.8, unbiasedRunningVar: true, activation: 'relu', skipNonFiniteUpdate: true },
  foreignOption: ['training', 'yes', TypeError],
  inputs: (Ctor, layout) => ({
    x: filled(Ctor, ELEMENTS, 1), shape: shapeOf(layout), gamma: channelArrays(Ctor, 2), beta: channelArrays(Ctor, 3),
    runningMean: channelArrays(Ctor, 4), runningVar: channelArrays(Ctor, 5), numBatchesTracked: 2,
    residual: filled(Ctor, ELEMENTS, 6),
  }),
  out: (Ctor) => ({ y: new Ctor(ELEMENTS).fill(7), mean: new Ctor(C).fill(7), invStd: new Ctor(C).fill(7) }),
  firstChannelArgument: 'gamma',
  dtypeBlame: /gamma must be a Float(32|64)Array like x/,
};

const INFER: Omit<OpSpec, 'op' | 'async' | 'invoke'> = {
  slots: [
    ['x', 'x'], ['shape', 'shape'], ['runningMean', 'param'], ['runningVar', 'param'], ['gamma', 'optParam'],
    ['beta', 'optParam'], ['residual', 'optTensor'], ['out.y', 'outTensor'],
  ],
  options: { eps: 1e-3, activation: 'relu' },
  foreignOption: ['momentum', 2, RangeError],
  inputs: (Ctor, layout) => ({
    x: filled(Ctor, ELEMENTS, 11), shape: shapeOf(layout), runningMean: channelArrays(Ctor, 12),
    runningVar: channelArrays(Ctor, 13), gamma: channelArrays(Ctor, 14), beta: channelArrays(Ctor, 15),
    residual: filled(Ctor, ELEMENTS, 16),
  }),
  out: (Ctor) => ({ y: new Ctor(ELEMENTS).fill(7) }),
  firstChannelArgument: 'runningMean',
  dtypeBlame: /runningMean must be a Float(32|64)Array like x/,
};

const BACKWARD: Omit<OpSpec, 'op' | 'async' | 'invoke'> = {
  slots: [
    ['x', 'x'], ['shape', 'shape'], ['dy', 'tensor'], ['mean', 'param'], ['invStd', 'param'], ['gamma', 'optParam'],
    ['y', 'tensor'], ['residual', 'optTensor'], ['out.dx', 'outTensor'], ['out.dgamma', 'outParam'],
    ['out.dbeta', 'outParam'], ['out.dz', 'outTensor'],
  ],
  // activation 'relu' in the valid call, so that y is a required argument that can be spoiled
  options: { activation: 'relu', training: true },
  foreignOption: ['eps', -1, RangeError],
  inputs: (Ctor, layout) => ({
    dy: filled(Ctor, ELEMENTS, 21), x: filled(Ctor, ELEMENTS, 22), shape: shapeOf(layout), mean: channelArrays(Ctor, 23),
    invStd: channelArrays(Ctor, 24), gamma: channelArrays(Ctor, 25), y: filled(Ctor, ELEMENTS, 26),
    residual: filled(Ctor, ELEMENTS, 27),
  }),
  out: (Ctor) => ({ dx: new Ctor(ELEMENTS).fill(7), dgamma: new Ctor(C).fill(7), dbeta: new Ctor(C).fill(7), dz: new Ctor(ELEMENTS).fill(7) }),
  firstChannelArgument: 'mean',
  dtypeBlame: /dy must be a Float(32|64)Array like x/,
};

const MOMENTS: Omit<OpSpec, 'op' | 'async' | 'invoke'> = {
  slots: [['x', 'x'], ['shape', 'shape'], ['out.mean', 'outParam'], ['out.variance', 'outParam']],
  options: {},
  foreignOption: ['activation', 'gelu', RangeError],
  inputs: (Ctor, layout) => ({ x: filled(Ctor, ELEMENTS, 31), shape: shapeOf(layout) }),
  out: (Ctor) => ({ mean: new Ctor(C).fill(7), variance: new Ctor(C).fill(7) }),
  firstChannelArgument: 'out.mean',
  dtypeBlame: /out\.mean must be a Float(32|64)Array like x/,
};

const UPDATE: Omit<OpSpec, 'op' | 'async' | 'invoke'> = {
  slots: [
    ['runningMean', 'statsFirst'], ['runningVar', 'param'], ['mean', 'param'], ['variance', 'param'],
    ['numBatchesTracked', 'numBatchesTracked'], ['count', 'count'],
  ],
  options: { momentum: null, unbiasedRunningVar: true, skipNonFiniteUpdate: true },
  foreignOption: ['eps', -1, RangeError],
  inputs: (Ctor) => ({
    runningMean: channelArrays(Ctor, 41), runningVar: channelArrays(Ctor, 42), mean: channelArrays(Ctor, 43),
    variance: channelArrays(Ctor, 44), count: 20, numBatchesTracked: 3,
  }),
  out: () => undefined,
  firstChannelArgument: 'runningVar',
  dtypeBlame: /runningVar must be a Float(32|64)Array/,
};

const FUNCTIONS: OpSpec[] = [
  { ...TRAIN, op: 'batchNormTrain', async: false, invoke: (a, i, o, out) => a.batchNormTrain(i as never, o as never, out as never) },
  { ...TRAIN, op: 'batchNormTrainAsync', async: true, invoke: (a, i, o, out) => a.batchNormTrainAsync(i as never, o as never, out as never) },
  { ...INFER, op: 'batchNormInfer', async: false, invoke: (a, i, o, out) => a.batchNormInfer(i as never, o as never, out as never) },
  { ...INFER, op: 'batchNormInferAsync', async: true, invoke: (a, i, o, out) => a.batchNormInferAsync(i as never, o as never, out as never) },
  { ...BACKWARD, op: 'batchNormBackward', async: false, invoke: (a, i, o, out) => a.batchNormBackward(i as never, o as never, out as never) },
  { ...BACKWARD, op: 'batchNormBackwardAsync', async: true, invoke: (a, i, o, out) => a.batchNormBackwardAsync(i as never, o as never, out as never) },
  { ...MOMENTS, op: 'moments', async: false, invoke: (a, i, o, out) => a.moments(i as never, o as never, out as never) },
  { ...UPDATE, op: 'updateRunningStats', async: false, invoke: (a, i, o) => a.updateRunningStats(i as never, o as never) },
];

interface Spoiled {
  argument: string;
  what: string;
  error: ErrorClass;
  blame: string | RegExp;
  /** changes the valid call in place (inputs, options, out, and extra arrays to watch) */
  apply(call: CallParts): void;
}

interface CallParts {
  inputs: Record<string, unknown>;
  options: Record<string, unknown>;
  out: Record<string, unknown> | undefined;
  /** arrays the spoil made that must not be written either (an overlap's host) */
  extra: ArrayBufferView[];
  /** replaces inputs / options / out as a whole */
  replace?: { inputs?: unknown; options?: unknown; out?: unknown };
}

function setPath(call: CallParts, path: string, value: unknown): void {
  if (path.startsWith('out.')) {
    call.out![path.slice(4)] = value;
  } else {
    call.inputs[path] = value;
  }
}

function getPath(call: CallParts, path: string): unknown {
  return path.startsWith('out.') ? call.out![path.slice(4)] : call.inputs[path];
}

/** Spoils of one slot of a function. */
function slotSpoils(spec: OpSpec, path: string, role: Role, Ctor: FloatCtor, layout: Layout): Spoiled[] {
  const list: Spoiled[] = [];
  const push = (what: string, error: ErrorClass, blame: string | RegExp, value: () => unknown) =>
    list.push({ argument: path, what, error, blame, apply: (call) => setPath(call, path, value()) });
  const isArray = role !== 'shape' && role !== 'numBatchesTracked' && role !== 'count';
  if (isArray) {
    const n = role === 'x' || role === 'tensor' || role === 'optTensor' || role === 'outTensor' ? ELEMENTS : C;
    const valid = () => filled(Ctor, n, 50);
    const optional = role === 'optParam' || role === 'optTensor' || role === 'running' || (role === 'outTensor' || role === 'outParam');
    for (const s of [...arraySpoils(Ctor, n, valid), ...lyingSpoils(Ctor, n)]) {
      if (s.kind === 'absent') {
        if (optional && role !== 'running') continue; // absent is valid: a default or a new output
        if (role === 'running') {
          if (s.what === 'null') push(`${path} ${s.what} (without its pair)`, T_, /runningMean and runningVar must be given together/, s.make);
          continue;
        }
        push(s.what, T_, path, s.make);
        continue;
      }
      if (s.kind === 'dtype') {
        // the array that fixes the element type blames the next one; the others blame themselves
        if (role === 'x') push(s.what, T_, spec.dtypeBlame, s.make);
        else if (role === 'statsFirst') push(s.what, T_, spec.dtypeBlame, s.make);
        else push(s.what, T_, path, s.make);
        continue;
      }
      if (s.kind === 'length') {
        // runningMean of updateRunningStats fixes C: the next array gets the blame
        push(s.what, R_, role === 'statsFirst' ? 'runningVar' : path, s.make);
        continue;
      }
      if (s.kind === 'detached') {
        push(s.what, T_, path, s.make);
        continue;
      }
      push(s.what, T_, path, s.make);
    }
  }
  switch (role) {
    case 'shape': {
      const cf = layout === 'channels-first';
      const swapped = cf ? [N, S, C] : [N, C, S]; // same product, C becomes 5
      const range = (what: string, value: unknown, blame: string | RegExp = /shape/) => push(what, R_, blame, () => value);
      const type = (what: string, value: unknown, blame: string | RegExp = /shape/) => push(what, T_, blame, () => value);
      type('a string', `${N},${C},${S}`);
      type('an Int32Array', Int32Array.of(N, C, S));
      type('an array-like object', { length: 3, 0: N, 1: C, 2: S });
      type('null', null);
      type('undefined', undefined);
      range('rank 0', []);
      range('rank 1', [ELEMENTS], /rank/);
      range('a negative dim', cf ? [N, -C, -S] : [N, -S, -C], /shape\[1\]/);
      range('a fractional dim', cf ? [N, C, S + 0.5] : [N, S + 0.5, C], cf ? /shape\[2\]/ : /shape\[1\]/);
      range('a NaN dim', [N, NaN, S], /shape\[1\]/);
      range('an Infinity dim', [N, C, Infinity], /shape\[2\]/);
      range('a -Infinity dim', [-Infinity, C, S], /shape\[0\]/);
      range('a dim of 2^53 (not a safe integer)', [2 ** 53, C, S], /shape\[0\]/);
      type('a string dim', [N, String(C), S], /shape\[1\]/);
      type('a null dim', [N, null, S], /shape\[1\]/);
      type('a hole for a dim', [N, , S], /shape\[1\]/); // eslint-disable-line no-sparse-arrays
      type('a bigint dim', [N, BigInt(C), S], /shape\[1\]/);
      range('huge dims whose product overflows 2^53', [2 ** 30, 2 ** 30, 2 ** 30], /shape must have a product/);
      range('a zero dim beside huge ones whose product overflows', [0, 2 ** 40, 2 ** 40], /shape must have a product/);
      const tensor = role === 'shape' && spec.slots[0]![0];
      range('a product that does not match x (one less)', cf ? [N, C, S - 1] : [N, S - 1, C], tensor as string);
      range('a zero dim (x is not empty)', cf ? [0, C, S] : [0, S, C], tensor as string);
      range('huge dims with a safe product that x cannot have', cf ? [2 ** 20, C, 2 ** 20] : [2 ** 20, 2 ** 20, C], tensor as string);
      range('the channel and spatial dims swapped (C = 5)', swapped, spec.firstChannelArgument);
      break;
    }
    case 'numBatchesTracked':
      for (const [what, v] of [['-1', -1], ['1.5', 1.5], ['NaN', NaN], ['Infinity', Infinity], ['2^53', 2 ** 53]] as const) {
        push(what, R_, path, () => v);
      }
      for (const [what, v] of [['a string', '3'], ['null', null], ['a bigint', 3n], ['a boolean', true]] as const) {
        push(what, T_, path, () => v);
      }
      break;
    case 'count':
      for (const [what, v] of [['1 (no unbiased variance)', 1], ['-1', -1], ['1.5', 1.5], ['NaN', NaN], ['Infinity', Infinity]] as const) {
        push(what, R_, path, () => v);
      }
      for (const [what, v] of [['a string', '20'], ['null', null], ['undefined', undefined], ['a bigint', 20n]] as const) {
        push(what, T_, path, () => v);
      }
      break;
    default:
      break;
  }
  return list;
}

/** Arguments that overlap where README "Caller-owned outputs" forbids it, and aliases of outputs with inputs. */
function overlapSpoils(spec: OpSpec, Ctor: FloatCtor): Spoiled[] {
  const list: Spoiled[] = [];
  const add = (argument: string, what: string, blame: string | RegExp, apply: (call: CallParts) => void) =>
    list.push({ argument, what, error: R_, blame, apply });
  const tensorIn = spec.slots.find(([, r]) => r === 'x' || r === 'statsFirst')![0];
  // An output shifted by one element over the input it may alias exactly (y over x, dx over dy).
  const outTensor = spec.slots.find(([, r]) => r === 'outTensor')?.[0];
  if (outTensor) {
    const aliasable = outTensor === 'out.dx' ? 'dy' : 'x';
    add(outTensor, `partially overlapping ${aliasable} (shifted by one element)`, outTensor, (call) => {
      const host = filled(Ctor, ELEMENTS + 1, 60);
      call.inputs[aliasable] = host.subarray(0, ELEMENTS);
      setPath(call, outTensor, host.subarray(1, ELEMENTS + 1));
      call.extra.push(host);
    });
    add(outTensor, `partially overlapping ${aliasable} (shifted the other way)`, outTensor, (call) => {
      const host = filled(Ctor, ELEMENTS + 1, 61);
      call.inputs[aliasable] = host.subarray(1, ELEMENTS + 1);
      setPath(call, outTensor, host.subarray(0, ELEMENTS));
      call.extra.push(host);
    });
    for (const [name, role] of spec.slots) {
      if (role !== 'x' && role !== 'tensor') continue;
      if (name === aliasable) continue;
      add(outTensor, `the very same array as ${name}`, outTensor, (call) => setPath(call, outTensor, call.inputs[name]));
    }
    const param = spec.slots.find(([, r]) => r === 'optParam' || r === 'param' || r === 'running')?.[0];
    if (param) {
      add(outTensor, `over the buffer that also holds ${param}`, new RegExp(`${outTensor.replace('.', '\\.')}|${param}`), (call) => {
        const host = filled(Ctor, ELEMENTS + C, 62);
        call.inputs[param] = host.subarray(ELEMENTS - 1, ELEMENTS - 1 + C);
        setPath(call, outTensor, host.subarray(0, ELEMENTS));
        call.extra.push(host);
      });
    }
  }
  // The residual: y may be it exactly, not in part; dz (backward) may be dy, neither dx nor y.
  if (outTensor === 'out.y' && spec.slots.some(([n]) => n === 'residual')) {
    add('out.y', 'partially overlapping residual (shifted by one element)', /out\.y must not overlap residual/, (call) => {
      const host = filled(Ctor, ELEMENTS + 1, 63);
      call.inputs.residual = host.subarray(0, ELEMENTS);
      setPath(call, 'out.y', host.subarray(1, ELEMENTS + 1));
      call.extra.push(host);
    });
  }
  if (spec.slots.some(([n]) => n === 'out.dz')) {
    add('out.dz', 'the very same array as out.dx', /out\.dx must not overlap out\.dz/, (call) => setPath(call, 'out.dz', getPath(call, 'out.dx')));
    add('out.dz', 'the very same array as y', /out\.dz must not overlap y/, (call) => setPath(call, 'out.dz', call.inputs.y));
    add('out.dz', 'without inputs.residual', /out\.dz is only written with inputs\.residual/, (call) => {
      call.inputs.residual = undefined;
    });
  }
  const outParams = spec.slots.filter(([, r]) => r === 'outParam').map(([n]) => n);
  for (const outParam of outParams) {
    for (const [name, role] of spec.slots) {
      if (role === 'param' || role === 'optParam' || role === 'running') {
        add(outParam, `the very same array as ${name}`, new RegExp(`${outParam.replace('.', '\\.')}|${name}`), (call) => setPath(call, outParam, call.inputs[name]));
      }
    }
    add(outParam, `a subarray of ${tensorIn}`, outParam, (call) => {
      setPath(call, outParam, (call.inputs[tensorIn] as FloatArray).subarray(2, 2 + C));
    });
  }
  if (outParams.length === 2 || outParams.length === 3) {
    const [a, b] = outParams as [string, string];
    add(a, `the very same array as ${b}`, new RegExp(`${a.replace('.', '\\.')}|${b.replace('.', '\\.')}`), (call) => setPath(call, a, getPath(call, b)));
  }
  // Running statistics over the data they are computed from, or over each other.
  if (spec.slots.some(([n, r]) => n === 'runningMean' && (r === 'running' || r === 'statsFirst'))) {
    const other = spec.op === 'updateRunningStats' ? 'mean' : 'gamma';
    add('runningMean', `the very same array as ${other}`, /runningMean|runningVar|out\./, (call) => {
      call.inputs.runningMean = call.inputs[other];
    });
    add('runningVar', 'the very same array as runningMean', /runningMean|runningVar/, (call) => {
      call.inputs.runningVar = call.inputs.runningMean;
    });
  }
  return list;
}

function optionSpoils(spec: OpSpec): Spoiled[] {
  const list: Spoiled[] = [];
  const add = (key: string, what: string, error: ErrorClass, value: unknown, blame: string | RegExp = `options.${key}`) =>
    list.push({ argument: `options.${key}`, what, error, blame, apply: (call) => (call.options[key] = value) });
  const allowed = Object.keys(spec.options);
  if (allowed.includes('eps')) {
    for (const [w, v] of [['0', 0], ['negative', -1e-5], ['NaN', NaN], ['Infinity', Infinity], ['-0', -0]] as const) add('eps', w, R_, v);
    for (const [w, v] of [['a string', '1e-5'], ['null', null], ['a bigint', 1n]] as const) add('eps', w, T_, v);
  }
  if (allowed.includes('momentum')) {
    for (const [w, v] of [['1.5', 1.5], ['-0.1', -0.1], ['NaN', NaN], ['Infinity', Infinity]] as const) add('momentum', w, R_, v);
    for (const [w, v] of [['a string', '0.9'], ['a boolean', true]] as const) add('momentum', w, T_, v);
  }
  for (const key of ['unbiasedRunningVar', 'skipNonFiniteUpdate', 'training']) {
    if (!allowed.includes(key)) continue;
    for (const [w, v] of [['1', 1], ["'true'", 'true'], ['null', null]] as const) add(key, w, T_, v);
  }
  if (spec.op !== 'updateRunningStats') {
    add('layout', "'NCHW'", R_, 'NCHW');
    add('layout', "'channels_last'", R_, 'channels_last');
    add('layout', 'a number', T_, 1);
  }
  if (allowed.includes('activation')) {
    add('activation', "'gelu'", R_, 'gelu');
    add('activation', 'a boolean', T_, true);
  }
  add('epsilon', 'a misspelt option', R_, 1e-3);
  add(spec.foreignOption[0], 'an option of another function with a bad value', spec.foreignOption[2], spec.foreignOption[1]);
  for (const [what, value] of [['a number', 5], ['a string', 'fast'], ['an array', []], ['a Float32Array', new Float32Array(2)], ['a function', () => 1]] as const) {
    list.push({ argument: 'options', what, error: T_, blame: 'options', apply: (call) => (call.replace = { ...call.replace, options: value }) });
  }
  return list;
}

function wholeSpoils(spec: OpSpec): Spoiled[] {
  const list: Spoiled[] = [];
  for (const [what, value] of [['null', null], ['undefined', undefined], ['a number', 5], ['an array', []], ['a Float32Array', new Float32Array(3)], ['a string', 'x']] as const) {
    list.push({ argument: 'inputs', what, error: T_, blame: 'inputs', apply: (call) => (call.replace = { ...call.replace, inputs: value }) });
  }
  if (spec.out(Float32Array) !== undefined) {
    for (const [what, value] of [['a number', 5], ['an array', []], ['a string', 'y']] as const) {
      list.push({ argument: 'out', what, error: T_, blame: 'out', apply: (call) => (call.replace = { ...call.replace, out: value }) });
    }
  }
  return list;
}

/** Cases only some functions have. */
function specialSpoils(spec: OpSpec, Ctor: FloatCtor, layout: Layout): Spoiled[] {
  const list: Spoiled[] = [];
  const add = (argument: string, what: string, error: ErrorClass, blame: string | RegExp, apply: (call: CallParts) => void) =>
    list.push({ argument, what, error, blame, apply });
  const train = spec.op.startsWith('batchNormTrain');
  const backward = spec.op.startsWith('batchNormBackward');
  if (train) {
    add('shape', 'one value per channel (M = 1) in training', R_, /more than 1 value per channel/, (call) => {
      call.inputs.x = filled(Ctor, C, 70);
      call.inputs.shape = layout === 'channels-first' ? [1, C, 1] : [1, 1, C];
      if (call.inputs.residual) call.inputs.residual = filled(Ctor, C, 71);
      call.out = { ...call.out, y: new Ctor(C).fill(7) };
    });
  }
  if (backward) {
    add('y', 'given without activation relu', R_, /y is only used with activation 'relu'/, (call) => (call.options.activation = 'none'));
    add('y', 'absent with activation relu', T_, /y \(the forward output\) is required/, (call) => delete call.inputs.y);
  }
  if (spec.op === 'updateRunningStats') {
    add('count', 'absent with unbiasedRunningVar', T_, 'count', (call) => delete call.inputs.count);
  }
  return list;
}

function combosOf(op: FacadeOp): [DType, Layout][] {
  const layouts: Layout[] = op === 'updateRunningStats' || op === 'BatchNorm.loadState' ? ['channels-first'] : ['channels-first', 'channels-last'];
  return (['float32', 'float64'] as DType[]).flatMap((d) => layouts.map((l) => [d, l] as [DType, Layout]));
}

function functionCases(spec: OpSpec): FacadeCase[] {
  const cases: FacadeCase[] = [];
  for (const [dtype, layout] of combosOf(spec.op)) {
    const Ctor = ctorOf(dtype);
    const spoils = [
      ...spec.slots.flatMap(([path, role]) => slotSpoils(spec, path, role, Ctor, layout)),
      ...overlapSpoils(spec, Ctor),
      ...optionSpoils(spec),
      ...wholeSpoils(spec),
      ...specialSpoils(spec, Ctor, layout),
    ];
    for (const s of spoils) {
      cases.push({
        op: spec.op, dtype, layout, argument: s.argument, what: s.what, error: s.error, blame: s.blame, async: spec.async,
        prepare(api) {
          const parts: CallParts = {
            inputs: spec.inputs(Ctor, layout),
            options: spec.op === 'updateRunningStats' ? { ...spec.options } : { ...spec.options, layout },
            out: spec.out(Ctor),
            extra: [],
          };
          s.apply(parts);
          const inputs = parts.replace && 'inputs' in parts.replace ? parts.replace.inputs : parts.inputs;
          const options = parts.replace && 'options' in parts.replace ? parts.replace.options : parts.options;
          const out = parts.replace && 'out' in parts.replace ? parts.replace.out : parts.out;
          return {
            call: () => spec.invoke(api, inputs, options, out),
            watched: [...viewsIn(parts.inputs), ...viewsIn(parts.out), ...parts.extra],
          };
        },
      });
    }
  }
  return cases;
}

function viewsIn(record: Record<string, unknown> | undefined): ArrayBufferView[] {
  if (!record) return [];
  return Object.values(record).filter((v): v is ArrayBufferView => ArrayBuffer.isView(v));
}

// The BatchNorm layer: forward, backward and loadState spoiled; its parameters, running
// statistics, gradients and counter must not change.

function layerState(layer: LayerLike): () => string {
  return () => JSON.stringify({ n: layer.numBatchesTracked, training: layer.training });
}

function layerWatched(layer: LayerLike): ArrayBufferView[] {
  return [layer.gamma, layer.beta, layer.runningMean, layer.runningVar, layer.dgamma, layer.dbeta].filter(
    (a): a is FloatArray => a !== null,
  );
}

function layerCases(): FacadeCase[] {
  const cases: FacadeCase[] = [];
  for (const [dtype, layout] of combosOf('BatchNorm.forward')) {
    const Ctor = ctorOf(dtype);
    const make = (api: FacadeApi) => {
      const layer = new api.BatchNorm(C, { dtype, layout, momentum: 0.7, activation: 'relu', skipNonFiniteUpdate: true });
      layer.loadState({ weight: [1.5, 0.5, 2], bias: [0.1, 0.2, 0.3], running_mean: [0.4, 0.5, 0.6], running_var: [1.1, 1.2, 1.3], num_batches_tracked: 4 });
      return layer;
    };
    const push = (op: FacadeOp, argument: string, what: string, error: ErrorClass, blame: string | RegExp, prepare: (api: FacadeApi) => PreparedCall) =>
      cases.push({ op, dtype, layout, argument, what, error, blame, async: false, prepare });
    // forward(x, shape, out)
    const xSpoils = [...arraySpoils(Ctor, ELEMENTS, () => filled(Ctor, ELEMENTS, 80)), ...lyingSpoils(Ctor, ELEMENTS)];
    for (const s of xSpoils) {
      const error = s.kind === 'length' ? R_ : T_;
      push('BatchNorm.forward', 'x', s.what, error, s.kind === 'dtype' ? /x must be a Float(32|64)Array/ : 'x', (api) => {
        const layer = make(api);
        const out = { y: new Ctor(ELEMENTS).fill(7) };
        return { call: () => layer.forward(s.make(), shapeOf(layout), out), watched: [...layerWatched(layer), out.y], state: layerState(layer) };
      });
    }
    const cf = layout === 'channels-first';
    const shapes: [string, unknown, ErrorClass, string | RegExp][] = [
      ['the wrong channel count', cf ? [N, C + 1, S] : [N, S, C + 1], R_, /numFeatures/],
      ['a product that does not match x', cf ? [N, C, S + 1] : [N, S + 1, C], R_, 'x'],
      ['rank 1', [ELEMENTS], R_, /rank/],
      ['a negative dim', [N, C, -S], R_, /shape\[2\]/],
      ['not an array', 'NCHW', T_, /shape/],
      ['a NaN dim', cf ? [NaN, C, S] : [NaN, S, C], R_, /shape\[0\]/],
      ['one value per channel in training', cf ? [1, C, 1] : [1, 1, C], R_, /x must have length|more than 1 value/],
    ];
    for (const [what, shape, error, blame] of shapes) {
      push('BatchNorm.forward', 'shape', what, error, blame, (api) => {
        const layer = make(api);
        return { call: () => layer.forward(filled(Ctor, ELEMENTS, 81), shape), watched: layerWatched(layer), state: layerState(layer) };
      });
    }
    const outs: [string, (x: FloatArray) => unknown, ErrorClass][] = [
      ['one element short', () => new Ctor(ELEMENTS - 1), R_],
      ['the other element type', () => new (otherCtor(Ctor))(ELEMENTS), T_],
      ['a plain Array', () => new Array(ELEMENTS).fill(0), T_],
      ['partially overlapping x', (x) => new Ctor(x.buffer as ArrayBuffer, Ctor.BYTES_PER_ELEMENT, ELEMENTS - 1), R_],
    ];
    for (const [what, y, error] of outs) {
      push('BatchNorm.forward', 'out.y', what, error, /out\.y/, (api) => {
        const layer = make(api);
        const x = filled(Ctor, ELEMENTS, 82);
        return { call: () => layer.forward(x, shapeOf(layout), { y: y(x) }), watched: [...layerWatched(layer), x], state: layerState(layer) };
      });
    }
    // eval mode: the same spoiled x through batchNormInfer
    push('BatchNorm.forward', 'x', 'one element short (eval mode)', R_, 'x', (api) => {
      const layer = make(api);
      layer.training = false;
      return { call: () => layer.forward(filled(Ctor, ELEMENTS - 1, 83), shapeOf(layout)), watched: layerWatched(layer), state: layerState(layer) };
    });
    // backward(dy) after a valid forward
    for (const s of [...arraySpoils(Ctor, ELEMENTS, () => filled(Ctor, ELEMENTS, 84)), ...lyingSpoils(Ctor, ELEMENTS)]) {
      const error = s.kind === 'length' ? R_ : T_;
      push('BatchNorm.backward', 'dy', s.what, error, 'dy', (api) => {
        const layer = make(api);
        const x = filled(Ctor, ELEMENTS, 85);
        const y = layer.forward(x, shapeOf(layout));
        return { call: () => layer.backward(s.make()), watched: [...layerWatched(layer), x, y], state: layerState(layer) };
      });
    }
    push('BatchNorm.backward', 'out.dx', 'one element too many', R_, /out\.dx/, (api) => {
      const layer = make(api);
      const x = filled(Ctor, ELEMENTS, 86);
      layer.forward(x, shapeOf(layout));
      return { call: () => layer.backward(filled(Ctor, ELEMENTS, 87), { dx: new Ctor(ELEMENTS + 1) }), watched: [...layerWatched(layer), x], state: layerState(layer) };
    });
  }
  // loadState: every entry is checked before any is written
  for (const [dtype] of combosOf('BatchNorm.loadState')) {
    const good = { weight: [1, 2, 3], bias: [4, 5, 6], running_mean: [7, 8, 9], running_var: [1, 1, 2], num_batches_tracked: 5 };
    const bad: [string, string, Record<string, unknown>, ErrorClass, string | RegExp][] = [
      ['state.weight', 'one value short', { weight: [1, 2] }, R_, 'state.weight'],
      ['state.bias', 'one value too many', { bias: [1, 2, 3, 4] }, R_, 'state.bias'],
      ['state.running_mean', 'missing', { running_mean: undefined }, T_, 'state.running_mean'],
      ['state.running_var', 'a number', { running_var: 3 }, T_, 'state.running_var'],
      ['state.running_var', 'null', { running_var: null }, T_, 'state.running_var'],
      ['state.num_batches_tracked', '-1', { num_batches_tracked: -1 }, R_, 'state.num_batches_tracked'],
      ['state.num_batches_tracked', '1.5', { num_batches_tracked: 1.5 }, R_, 'state.num_batches_tracked'],
      ['state.num_batches_tracked', 'a string', { num_batches_tracked: '5' }, T_, 'state.num_batches_tracked'],
      ['state', 'null', null as never, T_, 'state'],
      ['state', 'a number', 7 as never, T_, 'state'],
    ];
    for (const [argument, what, patch, error, blame] of bad) {
      cases.push({
        op: 'BatchNorm.loadState', dtype, layout: 'channels-first', argument, what, error, blame, async: false,
        prepare(api) {
          const layer = new api.BatchNorm(C, { dtype });
          layer.loadState({ weight: [0.1, 0.2, 0.3], bias: [0.4, 0.5, 0.6], running_mean: [0.7, 0.8, 0.9], running_var: [2, 3, 4], num_batches_tracked: 9 });
          const state = patch === null || typeof patch !== 'object' ? patch : { ...good, ...patch };
          return { call: () => layer.loadState(state), watched: layerWatched(layer), state: layerState(layer) };
        },
      });
    }
  }
  return cases;
}

/** Every spoiled façade call: each function (sync and async) and the layer, both dtypes and layouts. */
export function facadeBadCalls(): FacadeCase[] {
  return [...FUNCTIONS.flatMap(functionCases), ...layerCases()];
}

// ---------------------------------------------------------------------------------------------
// The raw WASM C ABI (wasm/abi.cpp): sn_run(scalars, tensors), a descriptor's scalars
// (native/abi/table.mjs) and its tensor-pointer table, each in a block of module memory

/** The geometry of every valid ABI call: x[samples][outer][stats][inner]. */
export const ABI_GEOMETRY = { samples: 1, outer: 2, stats: 3, inner: 4 } as const;

/** A slot's length in the valid call (SLOT_SIZE: 0 elements, 1 statistics, 2 channels, 3 affine). */
export function abiLength(slot: number): number {
  const g = ABI_GEOMETRY;
  return [g.samples * g.outer * g.stats * g.inner, g.samples * g.stats, g.stats, g.stats][SLOT_SIZE[slot]!]!;
}

/** The valid descriptor of a phase: BatchNorm-shaped (γ/β by statistic), every scalar in range. */
export function abiValidScalars(phase: number, f64: boolean): number[] {
  const s = new Array<number>(SCALAR_COUNT).fill(0);
  const g = ABI_GEOMETRY;
  s[Scalar.phase] = phase;
  s[Scalar.dtype] = f64 ? 1 : 0;
  s[Scalar.samples] = g.samples;
  s[Scalar.outer] = g.outer;
  s[Scalar.stats] = g.stats;
  s[Scalar.inner] = g.inner;
  s[Scalar.affineGroups] = g.stats;
  s[Scalar.affineSize] = 1;
  s[Scalar.affineRun] = g.inner;
  s[Scalar.flags] = 0;
  s[Scalar.eps] = 1e-5;
  s[Scalar.factor] = 0.1;
  s[Scalar.varScale] = 24 / 23;
  return s;
}

/** Whether the valid call of a phase gives the slot (every slot it uses, optional ones too). */
export function abiUses(phase: number, slot: number): boolean {
  return (ROLES[phase]?.[slot] ?? 0) !== 0;
}

/** The module's allocator and facts a case needs to build its call. */
export interface AbiHeap {
  alloc(bytes: number): number;
  free(p: number): void;
  /** bytes of module memory */
  readonly memoryBytes: number;
}

/** One sn_run call: the scalars and pointers to write, and where to write them / what to pass. */
export interface AbiCall {
  scalars: number[];
  /** module addresses by slot (0: null) */
  tensors: number[];
  /** the block of each given slot in the valid call */
  readonly blocks: readonly number[];
  /** sn_run's arguments: the scalars' and the table's addresses (the runner's blocks unless spoiled) */
  scalarsAt: number;
  tensorsAt: number;
}

export interface AbiCase {
  phase: PhaseName;
  dtype: 'f32' | 'f64';
  /** what is spoiled: a scalar, a slot or the call */
  argument: string;
  what: string;
  /** turns the valid call into the spoiled one; may allocate (released by the returned function) */
  spoil(call: AbiCall, heap: AbiHeap, elementSize: number): (() => void) | void;
}

/** The first bit no flag of native/abi/table.mjs uses. */
const NO_FLAG = 2 * Math.max(...Object.values(Flag));
const FORWARD = new Set<PhaseName>(['train', 'infer']);
const RUNNING = new Set<PhaseName>(['train', 'update']);
const USES_ELEMENTS = new Set<PhaseName>(['moments', 'train', 'infer', 'backward']);
const USES_AFFINE = new Set<PhaseName>(['train', 'infer', 'backward']);

/**
 * Every spoiled sn_run call: each phase, f32 and f64, each scalar and each slot, each way; and
 * the call's own two pointers. Every case must return a negative result (a known error code)
 * and write nothing; the runners do not check which code (sn_prepare's order is its own).
 */
export function abiBadCalls(): AbiCase[] {
  const cases: AbiCase[] = [];
  for (const phase of PHASE_NAMES) {
    const p = PHASE_NAMES.indexOf(phase);
    for (const dtype of ['f32', 'f64'] as const) {
      const add = (argument: string, what: string, spoil: AbiCase['spoil']) => cases.push({ phase, dtype, argument, what, spoil });
      const scalar = (name: keyof typeof Scalar, values: readonly (readonly [string, number])[]) => {
        for (const [what, v] of values) add(name, what, (call) => void (call.scalars[Scalar[name]] = v));
      };
      // Scalars.
      scalar('phase', [['-1', -1], ['5 (no such phase)', 5], ['0.5', p + 0.5], ['NaN', NaN], ['Infinity', Infinity]]);
      scalar('dtype', [['2', 2], ['-1', -1], ['0.5', 0.5], ['NaN', NaN]]);
      const counts = [['-1', -1], ['0.5', 0.5], ['NaN', NaN], ['Infinity', Infinity], ['-Infinity', -Infinity], ['2^53 + 2', 2 ** 53 + 2], ['2^64', 2 ** 64]] as const;
      for (const name of ['samples', 'outer', 'stats', 'inner', 'affineGroups', 'affineSize', 'affineRun'] as const) {
        const shapes = name === 'samples' || name === 'stats' || ((name === 'outer' || name === 'inner') && USES_ELEMENTS.has(phase));
        if (shapes) {
          scalar(name, counts);
          // The arrays no longer hold what the geometry says.
          add(name, 'one more (the arrays are too small)', (call) => void (call.scalars[Scalar[name]] += 1));
          add(name, '2^31 (the arrays are far too small)', (call) => void (call.scalars[Scalar[name]] = 2 ** 31));
          add(name, '2^40 (the size overflows wasm32)', (call) => void (call.scalars[Scalar[name]] = 2 ** 40));
        } else if (name === 'outer' || name === 'inner') {
          scalar(name, counts); // unused by the phase's tensors, but still a count
        } else {
          scalar(name, counts);
          add(name, '0 (with statistics to index)', (call) => void (call.scalars[Scalar[name]] = 0));
          if (name !== 'affineRun' && USES_AFFINE.has(phase)) {
            add(name, 'one more (γ/β are too small)', (call) => void (call.scalars[Scalar[name]] += 1));
          }
        }
      }
      scalar('flags', [[`${NO_FLAG} (no such flag)`, NO_FLAG], ['-1', -1], ['0.5', 0.5], ['NaN', NaN], ['2^32 + 1', 2 ** 32 + 1]]);
      if (FORWARD.has(phase)) {
        scalar('eps', [['0', 0], ['-0', -0], ['negative', -1e-5], ['NaN', NaN], ['Infinity', Infinity], ['-Infinity', -Infinity]]);
      }
      if (RUNNING.has(phase)) {
        scalar('factor', [['-0.1', -0.1], ['1.1', 1.1], ['NaN', NaN], ['Infinity', Infinity], ['-Infinity', -Infinity]]);
        scalar('varScale', [['-1', -1], ['NaN', NaN], ['Infinity', Infinity], ['-Infinity', -Infinity]]);
      }
      // Slots.
      for (let slot = 0; slot < SLOT_COUNT; slot++) {
        const name = SLOT_NAMES[slot]!;
        const role = ROLES[p]![slot]!;
        const set = (value: number) => (call: AbiCall) => void (call.tensors[slot] = value);
        if (role === 0) {
          add(name, 'given though the phase does not use it', (call, heap, size) => {
            const q = heap.alloc(abiLength(slot) * size);
            call.tensors[slot] = q;
            return () => heap.free(q);
          });
          add(name, 'a garbage pointer though the phase does not use it', set(1024));
          continue;
        }
        const n = abiLength(slot);
        if (role === 1 || role === 3 || role === 4) add(name, 'a null pointer', set(0));
        if (role === 5) add(name, 'null while the other half of the pair is given', set(0));
        add(name, 'misaligned by one byte', (call) => void (call.tensors[slot] += 1));
        add(name, 'misaligned by half an element', (call, _h, size) => void (call.tensors[slot] += size / 2));
        add(name, 'one element past its start (its block is one element short)', (call, _h, size) => void (call.tensors[slot] += size));
        add(name, 'in a block one element too small', (call, heap, size) => {
          const q = heap.alloc((n - 1) * size);
          call.tensors[slot] = q;
          return () => heap.free(q);
        });
        add(name, 'in a freed block', (call, heap, size) => {
          const q = heap.alloc(n * size);
          heap.free(q);
          call.tensors[slot] = q;
        });
        add(name, 'into static memory (address 1024)', set(1024));
        add(name, 'at the end of module memory', (call, heap) => void (call.tensors[slot] = heap.memoryBytes));
        add(name, 'beyond module memory (2^31)', set(2 ** 31));
        add(name, 'negative (-8, i.e. 2^32 - 8)', set(2 ** 32 - 8));
        add(name, 'just before its block (straddling its start)', (call, _h, size) => void (call.tensors[slot] -= 2 * size));
        if (role === 3 || role === 4 || role === 5) {
          // An output over another tensor of the call (not an allowed exact alias).
          for (let other = 0; other < SLOT_COUNT; other++) {
            if (other === slot || !abiUses(p, other) || abiLength(other) < n) continue;
            const allowed = (phase === 'train' || phase === 'infer') ? slot === 1 && other === 0 : phase === 'backward' && slot === 3 && other === 2;
            if (allowed) continue;
            add(name, `over ${SLOT_NAMES[other]}`, (call) => void (call.tensors[slot] = call.blocks[other]!));
          }
        }
      }
      // The call's own pointers.
      const at = (which: 'scalarsAt' | 'tensorsAt', what: string, value: (call: AbiCall, heap: AbiHeap) => number | [number, () => void]) =>
        add(which === 'scalarsAt' ? 'the scalars' : 'the pointer table', what, (call, heap) => {
          const v = value(call, heap);
          if (typeof v === 'number') call[which] = v;
          else {
            call[which] = v[0];
            return v[1];
          }
        });
      for (const which of ['scalarsAt', 'tensorsAt'] as const) {
        const bytes = which === 'scalarsAt' ? SCALAR_COUNT * 8 : SLOT_COUNT * 4;
        at(which, '0', () => 0);
        at(which, 'misaligned', (call) => call[which] + (which === 'scalarsAt' ? 4 : 2));
        at(which, 'into static memory (address 1024)', () => 1024);
        at(which, 'at the end of module memory', (_c, heap) => heap.memoryBytes);
        at(which, 'negative (2^32 - 8)', () => 2 ** 32 - 8);
        at(which, 'in a freed block', (_c, heap) => {
          const q = heap.alloc(bytes);
          heap.free(q);
          return q;
        });
        at(which, 'in a block one entry too small', (call, heap) => {
          const q = heap.alloc(bytes - 8);
          return [q, () => heap.free(q)];
        });
      }
    }
  }
  return cases;
}
