/**
 * One op on data with special values (NaN, ±Inf, denormals, huge and tiny magnitudes, -0) run on
 * a backend and on the float64 reference, for the property tests. Both sides start from the
 * same values rounded to the element type; the reference gets float64 copies.
 */
import * as api from '../../lib/index.js';
import type { BackendName } from '../../lib/backend.js';
import { Random } from '../../lib/random.js';
import { gradientSumScales, meanScales } from '../../lib/verify.js';
import {
  channelOf,
  channelsOf,
  compareOutput,
  ctor,
  normalData,
  product,
  rms,
  specialValue,
  type DType,
  type FloatArray,
  type Layout,
  type SpecialKind,
} from './support.js';

export type SpecialOp = 'train' | 'infer' | 'backward' | 'moments' | 'update';
export type Target = 'x' | 'dy' | 'gamma' | 'beta' | 'runningMean' | 'runningVar';

export interface Injection {
  target: Target;
  /** taken modulo the target's length */
  position: number;
  kind: SpecialKind;
}

export interface SpecialCase {
  op: SpecialOp;
  dtype: DType;
  layout: Layout;
  dims: number[];
  affine: boolean;
  relu: boolean;
  eps: number;
  momentum: number | null;
  unbiasedRunningVar: boolean;
  skipNonFiniteUpdate: boolean;
  training: boolean;
  /** data: scale·N(0, 1) + offset, then the injections */
  scale: number;
  offset: number;
  injections: Injection[];
  seed: number;
}

export function describeSpecial(c: SpecialCase): string {
  const inj = c.injections.map((i) => `${i.target}[${i.position}]=${i.kind}`).join(' ');
  return `${c.op} ${c.dtype} ${c.layout} [${c.dims.join(',')}] scale ${c.scale} offset ${c.offset}${c.affine ? '' : ' no-affine'}${c.relu ? ' relu' : ''} eps ${c.eps}${c.skipNonFiniteUpdate ? ' skipNonFinite' : ''}${inj ? ' ' + inj : ''}`;
}

interface Data {
  x: Float64Array;
  dy: Float64Array;
  gamma: Float64Array;
  beta: Float64Array;
  runningMean: Float64Array;
  runningVar: Float64Array;
}

/** The case's values (rounded to its element type), as float64. */
export function specialData(c: SpecialCase): Data {
  const n = product(c.dims);
  const C = channelsOf(c.dims, c.layout);
  const rng = new Random(c.seed);
  const seed = () => rng.int(0, 2 ** 31);
  const data: Data = {
    x: normalData(n, seed(), c.dtype, c.scale, c.offset),
    dy: normalData(n, seed(), c.dtype),
    gamma: normalData(C, seed(), c.dtype, 0.5, 1),
    beta: normalData(C, seed(), c.dtype),
    runningMean: normalData(C, seed(), c.dtype, c.scale, c.offset),
    runningVar: normalData(C, seed(), c.dtype).map((v) => 0.5 + Math.abs(v)),
  };
  if (c.dtype === 'float32') data.runningVar = new Float64Array(new Float32Array(data.runningVar));
  for (const inj of c.injections) {
    const target = data[inj.target];
    if (target.length > 0) target[inj.position % target.length] = specialValue(inj.kind, c.dtype);
  }
  return data;
}

type Outputs = Record<string, FloatArray>;

/** Runs the case with arrays of its dtype (as64: float64 copies) on the current backend. */
function runOnce(c: SpecialCase, data: Data, as64: boolean, saved?: Outputs): { outputs: Outputs; result?: unknown } {
  const T = as64 ? Float64Array : ctor(c.dtype);
  const a = (v: ArrayLike<number>): FloatArray => new T(v);
  const params = c.affine ? { gamma: a(data.gamma), beta: a(data.beta) } : {};
  const { layout, eps } = c;
  const activation = c.relu ? ('relu' as const) : ('none' as const);
  switch (c.op) {
    case 'train': {
      const running = { runningMean: a(data.runningMean), runningVar: a(data.runningVar) };
      const r = api.batchNormTrain(
        { x: a(data.x), shape: c.dims, ...params, ...running, numBatchesTracked: 3 },
        { layout, activation, eps, momentum: c.momentum, unbiasedRunningVar: c.unbiasedRunningVar, skipNonFiniteUpdate: c.skipNonFiniteUpdate },
      );
      return { outputs: { y: r.y, mean: r.mean, invStd: r.invStd, ...running }, result: { updated: r.updated, numBatchesTracked: r.numBatchesTracked } };
    }
    case 'infer':
      return { outputs: api.batchNormInfer({ x: a(data.x), shape: c.dims, runningMean: a(data.runningMean), runningVar: a(data.runningVar), ...params }, { layout, activation, eps }) };
    case 'backward': {
      const r = api.batchNormBackward(
        { dy: a(data.dy), x: a(data.x), shape: c.dims, mean: a(saved!.mean), invStd: a(saved!.invStd), gamma: params.gamma, y: c.relu ? a(saved!.y) : null },
        { layout, activation, training: c.training },
      );
      return { outputs: { ...r } };
    }
    case 'moments':
      return { outputs: { ...api.moments({ x: a(data.x), shape: c.dims }, { layout }) } };
    case 'update': {
      // the batch statistics are the (special-valued) dy values of the first C positions and
      // x's as variance: any value, finite or not
      const C = channelsOf(c.dims, c.layout);
      const running = { runningMean: a(data.runningMean), runningVar: a(data.runningVar) };
      const r = api.updateRunningStats(
        { ...running, mean: a(data.x.slice(0, C)), variance: a(data.dy.slice(0, C).map(Math.abs)), count: product(c.dims) / C, numBatchesTracked: 3 },
        { momentum: c.momentum, unbiasedRunningVar: c.unbiasedRunningVar, skipNonFiniteUpdate: c.skipNonFiniteUpdate },
      );
      return { outputs: running, result: r };
    }
  }
}

export interface SpecialRun {
  got: Outputs;
  expected: Outputs;
  gotResult?: unknown;
  expectedResult?: unknown;
  /** scales errors are judged against (training dx) */
  scales: Record<string, number>;
  data: Data;
  /** backward: the invStd it was given (the reference forward's, rounded to the dtype) */
  savedInvStd?: Float64Array;
  /** backward: the saved mean, invStd and forward output it was given */
  saved?: Outputs;
}

/** The case on `backend` and on the float64 reference. */
export function runSpecial(backend: BackendName, c: SpecialCase): SpecialRun {
  const data = specialData(c);
  let saved: Outputs | undefined;
  const scales: Record<string, number> = {};
  if (c.op === 'backward') {
    // The saved statistics are inputs: both sides get the reference's, rounded to the dtype.
    const fwd = api.withBackend('js', () =>
      api.batchNormTrain({ x: data.x.slice(), shape: c.dims, gamma: c.affine ? data.gamma : null, beta: c.affine ? data.beta : null },
        { layout: c.layout, activation: c.relu ? 'relu' : 'none', eps: c.eps }),
    );
    const round = (v: FloatArray) => (c.dtype === 'float32' ? new Float64Array(new Float32Array(v)) : Float64Array.from(v));
    saved = { mean: round(fwd.mean), invStd: round(fwd.invStd), y: round(fwd.y) };
    const terms = data.dy.map((v, i) => {
      const ch = channelOf(c.dims, c.layout, i);
      return v * (c.affine ? data.gamma[ch]! : 1) * saved!.invStd[ch]!;
    });
    scales.dx = rms(terms);
    Object.assign(scales, gradientSumScales(data.dy, data.x, saved.mean!, saved.invStd!, (i) => channelOf(c.dims, c.layout, i)));
  }
  if (c.op === 'train' || c.op === 'moments') Object.assign(scales, meanScales(data.x, product(c.dims) / channelsOf(c.dims, c.layout)));
  const got = api.withBackend(backend, () => runOnce(c, data, false, saved));
  const expected = api.withBackend('js', () => runOnce(c, data, true, saved));
  return {
    got: got.outputs, expected: expected.outputs, gotResult: got.result, expectedResult: expected.result, scales, data,
    savedInvStd: saved?.invStd as Float64Array | undefined,
    saved,
  };
}

/** Every output compared with the reference; the mismatches. */
export function mismatches(run: SpecialRun): { name: string; message: string }[] {
  const out: { name: string; message: string }[] = [];
  for (const [name, values] of Object.entries(run.got)) {
    const message = compareOutput(name, values, run.expected[name]!, run.scales[name]);
    if (message) out.push({ name, message });
  }
  if (JSON.stringify(run.gotResult) !== JSON.stringify(run.expectedResult)) {
    out.push({ name: 'result', message: `result ${JSON.stringify(run.gotResult)}, expected ${JSON.stringify(run.expectedResult)}` });
  }
  return out;
}
