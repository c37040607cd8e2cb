/**
 * The self-check: random cases on every available backend, compared with the float64
 * reference (the `js` backend on float64 copies of the same data).
 */
import {
  batchNormBackward,
  batchNormInfer,
  batchNormTrain,
  groupNorm,
  groupNormBackward,
  instanceNorm,
  instanceNormBackward,
  layerNorm,
  layerNormBackward,
  moments,
  rmsNorm,
  rmsNormBackward,
  type FloatArray,
  type Layout,
} from './api.js';
import type { BackendName } from './backend.js';
import { formatMismatch, rms, toleranceFor, worstMismatch } from './compare.js';
import { Random } from './random.js';
import { backends, withBackend } from './registry.js';

export interface VerifyOptions {
  /** random cases per backend (default 60) */
  cases?: number;
  /** default: a fixed seed, so a report can be reproduced */
  seed?: number;
  /** which backends (default: every available one) */
  backends?: BackendName[];
  /** called before each case (and once at the end, done = total): for a progress display */
  onProgress?: (done: number, total: number, backend: BackendName) => void;
}

export interface BackendVerdict {
  backend: BackendName;
  cases: number;
  failures: string[];
}

export interface VerifyReport {
  ok: boolean;
  seed: number;
  results: BackendVerdict[];
  /** backends not checked and why */
  unavailable: { backend: BackendName; reason: string }[];
  /** the report as lines of text */
  text: string;
}

/** BatchNorm's functions, and the family's ops (forward then backward in one case). */
export type Op = 'train' | 'infer' | 'backward' | 'moments' | FamilyOp;
export type FamilyOp = 'layerNorm' | 'rmsNorm' | 'groupNorm' | 'instanceNorm';
const FAMILY_OPS: readonly FamilyOp[] = ['layerNorm', 'rmsNorm', 'groupNorm', 'instanceNorm'];
type Outputs = Record<string, ArrayLike<number>>;

/** A run's outputs, and for some of them the scale errors are judged against (see worstMismatch). */
export interface SpecRun {
  outputs: Outputs;
  scales: Record<string, number>;
}

/** One op on one tensor: everything needed to run it and rebuild its data from `seed`. */
export interface CaseSpec {
  op: Op;
  dtype: 'float32' | 'float64';
  layout: Layout;
  dims: number[];
  affine: boolean;
  activation: 'none' | 'relu';
  /** data are offset + scale·N(0, 1) */
  offset: number;
  scale: number;
  eps: number;
  momentum: number | null;
  unbiasedRunningVar: boolean;
  /** backward only: eval-mode gradient */
  training: boolean;
  seed: number;
  /** groupNorm: the group count (divides C); layerNorm/rmsNorm: how many trailing dims are normalised */
  groups?: number;
  normalizedRank?: number;
  /** train/backward: a BatchNorm variant (README "BatchNorm variants") */
  variant?: 'renorm' | 'ghost';
}

/** The functions a case needs, passed in so a bundle (a browser page) can supply its own. */
export interface OpsApi {
  batchNormTrain: typeof batchNormTrain;
  batchNormInfer: typeof batchNormInfer;
  batchNormBackward: typeof batchNormBackward;
  moments: typeof moments;
  withBackend: typeof withBackend;
  layerNorm?: typeof layerNorm;
  layerNormBackward?: typeof layerNormBackward;
  rmsNorm?: typeof rmsNorm;
  rmsNormBackward?: typeof rmsNormBackward;
  groupNorm?: typeof groupNorm;
  groupNormBackward?: typeof groupNormBackward;
  instanceNorm?: typeof instanceNorm;
  instanceNormBackward?: typeof instanceNormBackward;
}

export function describeSpec(s: CaseSpec): string {
  const flags = [
    s.affine ? '' : 'no-affine',
    s.activation === 'relu' ? 'relu' : '',
    s.offset ? `offset ${s.offset}` : '',
    s.op === 'backward' && !s.training ? 'eval' : '',
    s.op === 'train' ? `momentum ${s.momentum} ${s.unbiasedRunningVar ? 'unbiased' : 'biased'}` : '',
    s.groups !== undefined ? `groups ${s.groups}` : '',
    s.normalizedRank !== undefined ? `normalizing the last ${s.normalizedRank} dims` : '',
    s.variant === 'renorm' ? `renorm ${JSON.stringify(RENORM)}` : '',
    s.variant === 'ghost' ? `virtualBatchSize ${ghostSize(s.dims, s.layout)}` : '',
  ].filter(Boolean);
  return `${s.op} ${s.dtype} ${s.layout} [${s.dims.join(',')}] eps ${s.eps}${flags.length ? ' ' + flags.join(' ') : ''}`;
}

/**
 * Runs the op with arrays of the spec's dtype, or (as64) with float64 copies of the same
 * values — both sides start from the same rounded data. Returns every output, running stats included.
 */
export function runSpec(api: OpsApi, s: CaseSpec, as64: boolean): SpecRun {
  const rng = new Random(s.seed);
  const rank = s.dims.length;
  const C = s.dims[s.layout === 'channels-first' ? 1 : rank - 1];
  const n = s.dims.reduce((a, b) => a * b, 1);
  const round = (a: Float64Array): Float64Array => (s.dtype === 'float32' ? new Float64Array(new Float32Array(a)) : a);
  const make = (length: number, scale = 1, shift = 0): Float64Array => round(rng.fill(new Float64Array(length), scale, shift));
  const x = make(n, s.scale, s.offset);
  const dy = make(n);
  const gamma = make(C, 0.5, 1);
  const beta = make(C);
  const runningMean = make(C, s.scale, s.offset);
  const runningVar = round(make(C).map((v) => 0.5 + Math.abs(v)));
  const c = (a: Float64Array): FloatArray => (as64 || s.dtype === 'float64' ? a.slice() : new Float32Array(a));
  const params = s.affine ? { gamma: c(gamma), beta: c(beta) } : {};
  const { layout, activation, eps } = s;
  const variant = s.variant === 'renorm' ? { renorm: RENORM } : s.variant === 'ghost' ? { virtualBatchSize: ghostSize(s.dims, s.layout) } : {};
  const chunks = s.variant === 'ghost' ? s.dims[0] / ghostSize(s.dims, s.layout) : 1;
  switch (s.op) {
    case 'train': {
      const running = { runningMean: c(runningMean), runningVar: c(runningVar) };
      const r = api.batchNormTrain(
        { x: c(x), shape: s.dims, ...params, ...running, numBatchesTracked: 3 },
        { layout, activation, eps, momentum: s.momentum, unbiasedRunningVar: s.unbiasedRunningVar, ...variant },
      );
      const rd: Outputs = r.r && r.d ? { r: r.r, d: r.d } : {};
      return { outputs: { y: r.y, mean: r.mean, invStd: r.invStd, ...running, ...rd }, scales: { ...meanScales(x, n / C / chunks), d: 1 } };
    }
    case 'infer': {
      const r = api.batchNormInfer({ x: c(x), shape: s.dims, runningMean: c(runningMean), runningVar: c(runningVar), ...params }, { layout, activation, eps });
      return { outputs: r, scales: {} };
    }
    case 'backward': {
      // The saved statistics (and y) are inputs here: both sides get the same rounded values
      // from the reference, so backward alone is judged.
      const fwd = api.withBackend('js', () =>
        api.batchNormTrain(
          { x: round(x).slice(), shape: s.dims, gamma: s.affine ? gamma : null, beta: s.affine ? beta : null, runningMean: runningMean.slice(), runningVar: runningVar.slice() },
          { layout, activation, eps, ...variant },
        ),
      );
      const [mean, invStd, y] = [fwd.mean, fwd.invStd, fwd.y].map((a) => round(a as Float64Array));
      const rd = fwd.r && fwd.d ? { r: c(round(fwd.r as Float64Array)), d: c(round(fwd.d as Float64Array)) } : {};
      const r = api.batchNormBackward(
        { dy: c(dy), x: c(x), shape: s.dims, mean: c(mean), invStd: c(invStd), gamma: params.gamma, y: activation === 'relu' ? c(y) : null, ...rd },
        { layout, activation, training: s.training, virtualBatchSize: s.variant === 'ghost' ? ghostSize(s.dims, s.layout) : null },
      );
      if (s.variant !== undefined) {
        // r ≤ 1.5 and |d| ≤ 0.5 (renorm), statistics per chunk (ghost): the plain scales, widened
        const inv = rms(invStd) * 1.5;
        const sums = rms(dy) * Math.sqrt(n / Math.max(C, 1));
        return { outputs: { ...r }, scales: { dx: rms(dy) * (s.affine ? rms(gamma) : 1) * inv, dbeta: sums, dgamma: sums * 2 } };
      }
      // Training dx is a difference of terms of size gamma·invStd·dy: judge it at that scale.
      const terms = dy.map((v, i) => v * (s.affine ? gamma[channelOf(s, i)] : 1) * invStd[channelOf(s, i)]);
      return { outputs: { ...r }, scales: { dx: rms(terms), ...gradientSumScales(dy, x, mean, invStd, (i) => channelOf(s, i)) } };
    }
    case 'moments':
      return { outputs: { ...api.moments({ x: c(x), shape: s.dims }, { layout }) }, scales: meanScales(x, n / C) };
    default:
      return runFamilySpec(api, s, x, dy, round, c);
  }
}

/**
 * A family op: forward, then backward from the float64 reference's forward statistics (rounded to
 * the dtype, so both sides start from the same inputs).
 */
function runFamilySpec(
  api: OpsApi,
  s: CaseSpec,
  x: Float64Array,
  dy: Float64Array,
  round: (a: Float64Array) => Float64Array,
  c: (a: Float64Array) => FloatArray,
): SpecRun {
  const rank = s.dims.length;
  const { layout, activation, eps } = s;
  const missing = (): never => {
    throw new Error(`this api has no ${s.op}`);
  };
  const rng = new Random(s.seed ^ 0x5a5a);
  const params = (length: number) => ({
    scale: s.affine ? round(rng.fill(new Float64Array(length), 0.5, 1)) : null,
    shift: s.affine ? round(rng.fill(new Float64Array(length), 1, 0)) : null,
  });
  const opt = (a: Float64Array | null) => (a === null ? null : c(a));
  const scaleOf = (values: ArrayLike<number>, count: number) => rms(values) * Math.sqrt(Math.max(count, 1));
  if (s.op === 'layerNorm' || s.op === 'rmsNorm') {
    const normalizedShape = s.dims.slice(rank - (s.normalizedRank ?? 1));
    const d = normalizedShape.reduce((a, b) => a * b, 1);
    const rows = x.length / Math.max(d, 1);
    const { scale: weight, shift: bias } = params(d);
    const shape = { x: c(x), shape: s.dims, normalizedShape };
    if (s.op === 'layerNorm') {
      const forward = api.layerNorm ?? missing();
      const f = forward({ ...shape, weight: opt(weight), bias: opt(bias) }, { eps, activation });
      const ref = api.withBackend('js', () => forward({ x: round(x).slice(), shape: s.dims, normalizedShape, weight, bias }, { eps, activation }));
      const [mean, invStd, y] = [ref.mean, ref.invStd, ref.y].map((a) => round(a as Float64Array));
      const b = (api.layerNormBackward ?? missing())(
        { dy: c(dy), x: c(x), shape: s.dims, normalizedShape, mean: c(mean), invStd: c(invStd), weight: opt(weight), y: activation === 'relu' ? c(y) : null },
        { activation },
      );
      return {
        outputs: { y: f.y, mean: f.mean, invStd: f.invStd, dx: b.dx, dweight: b.dweight, dbias: b.dbias },
        scales: { mean: rms(x) / Math.sqrt(Math.max(d, 1)), dx: rms(dy) * rms(invStd) * 2, dweight: scaleOf(dy, rows), dbias: scaleOf(dy, rows) },
      };
    }
    const forward = api.rmsNorm ?? missing();
    const f = forward({ ...shape, weight: opt(weight) }, { eps, activation });
    const ref = api.withBackend('js', () => forward({ x: round(x).slice(), shape: s.dims, normalizedShape, weight }, { eps, activation }));
    const [invRms, y] = [ref.invRms, ref.y].map((a) => round(a as Float64Array));
    const b = (api.rmsNormBackward ?? missing())(
      { dy: c(dy), x: c(x), shape: s.dims, normalizedShape, invRms: c(invRms), weight: opt(weight), y: activation === 'relu' ? c(y) : null },
      { activation },
    );
    return {
      outputs: { y: f.y, invRms: f.invRms, dx: b.dx, dweight: b.dweight },
      scales: { dx: rms(dy) * rms(invRms) * 2, dweight: scaleOf(dy, rows) * rms(x) * rms(invRms) },
    };
  }
  const C = s.dims[layout === 'channels-first' ? 1 : rank - 1];
  const { scale: gamma, shift: beta } = params(C);
  const perChannel = x.length / Math.max(C, 1);
  if (s.op === 'groupNorm') {
    const groups = s.groups ?? 1;
    const forward = api.groupNorm ?? missing();
    const f = forward({ x: c(x), shape: s.dims, groups, gamma: opt(gamma), beta: opt(beta) }, { eps, layout, activation });
    const ref = api.withBackend('js', () => forward({ x: round(x).slice(), shape: s.dims, groups, gamma, beta }, { eps, layout, activation }));
    const [mean, invStd, y] = [ref.mean, ref.invStd, ref.y].map((a) => round(a as Float64Array));
    const b = (api.groupNormBackward ?? missing())(
      { dy: c(dy), x: c(x), shape: s.dims, groups, mean: c(mean), invStd: c(invStd), gamma: opt(gamma), y: activation === 'relu' ? c(y) : null },
      { layout, activation },
    );
    return {
      outputs: { y: f.y, mean: f.mean, invStd: f.invStd, dx: b.dx, dgamma: b.dgamma, dbeta: b.dbeta },
      scales: { mean: rms(x) / Math.sqrt(Math.max(x.length / Math.max(mean.length, 1), 1)), dx: rms(dy) * rms(invStd) * 2, dgamma: scaleOf(dy, perChannel), dbeta: scaleOf(dy, perChannel) },
    };
  }
  const forward = api.instanceNorm ?? missing();
  const f = forward({ x: c(x), shape: s.dims, gamma: opt(gamma), beta: opt(beta) }, { eps, layout, activation, momentum: s.momentum });
  const ref = api.withBackend('js', () => forward({ x: round(x).slice(), shape: s.dims, gamma, beta }, { eps, layout, activation }));
  const [mean, invStd, y] = [ref.mean, ref.invStd, ref.y].map((a) => round(a as Float64Array));
  const b = (api.instanceNormBackward ?? missing())(
    { dy: c(dy), x: c(x), shape: s.dims, mean: c(mean), invStd: c(invStd), gamma: opt(gamma), y: activation === 'relu' ? c(y) : null },
    { layout, activation, training: s.training },
  );
  return {
    outputs: { y: f.y, mean: f.mean, invStd: f.invStd, dx: b.dx, dgamma: b.dgamma, dbeta: b.dbeta },
    scales: { mean: rms(x) / Math.sqrt(Math.max(x.length / Math.max(mean.length, 1), 1)), dx: rms(dy) * rms(invStd) * 2, dgamma: scaleOf(dy, perChannel), dbeta: scaleOf(dy, perChannel) },
  };
}

/**
 * The scales sums are judged at. A sum of M terms (dbeta = Σg, dgamma = Σg·x̂, and M times a mean)
 * is judged at the root-sum-square of its terms, √M·rms(terms): the size its rounding errors have
 * however the terms are added (README "Numerics": relative error ≤ 1e-5 on data of unit scale). Judged
 * relative to itself, a sum that cancels (the mean of zero-mean data, dgamma near 0) would be held
 * to far below the precision of its terms. The running mean takes in the batch mean: same scale.
 */
export function meanScales(x: ArrayLike<number>, perChannel: number): Record<string, number> {
  const scale = rms(x) / Math.sqrt(Math.max(perChannel, 1));
  return { mean: scale, runningMean: scale };
}

/** dbeta's and dgamma's scales (see meanScales); channel(i) is element i's channel. */
export function gradientSumScales(
  dy: ArrayLike<number>,
  x: ArrayLike<number>,
  mean: ArrayLike<number>,
  invStd: ArrayLike<number>,
  channel: (i: number) => number,
): Record<string, number> {
  const perChannel = dy.length / Math.max(mean.length, 1);
  const products = Array.from(dy, (g, i) => g * (x[i]! - mean[channel(i)]!) * invStd[channel(i)]!);
  const root = Math.sqrt(Math.max(perChannel, 1));
  return { dbeta: rms(dy) * root, dgamma: rms(products) * root };
}

/** The channel of flat index i under the spec's layout. */
function channelOf(s: CaseSpec, i: number): number {
  const rank = s.dims.length;
  if (s.layout === 'channels-last') return i % s.dims[rank - 1];
  const inner = s.dims.slice(2).reduce((a, b) => a * b, 1);
  return Math.floor(i / inner) % s.dims[1];
}

/** Runs the spec on `backend` and on the float64 reference; null when every output agrees. */
export function checkSpec(api: OpsApi, backend: BackendName, s: CaseSpec): string | null {
  const label = describeSpec(s);
  try {
    const got = api.withBackend(backend, () => runSpec(api, s, false));
    const expected = api.withBackend('js', () => runSpec(api, s, true));
    for (const [name, values] of Object.entries(got.outputs)) {
      const m = worstMismatch(values, expected.outputs[name], toleranceFor(values as FloatArray), expected.scales[name]);
      if (m) return `${label}: ${formatMismatch(name, m)}`;
    }
    return null;
  } catch (e) {
    return `${label}: threw ${e instanceof Error ? `${e.name}: ${e.message}` : String(e)}`;
  }
}

/** Batch Renormalization's limits in the random cases. */
const RENORM = { rmax: 1.5, dmax: 0.5 } as const;

/**
 * Ghost BatchNorm's virtual batch size in the random cases: the smallest divisor v > 1 of N (else
 * N) leaving more than one value per channel in each chunk.
 */
function ghostSize(dims: readonly number[], layout: Layout): number {
  const N = dims[0];
  const C = dims[layout === 'channels-first' ? 1 : dims.length - 1];
  const perSample = dims.slice(1).reduce((a, b) => a * b, 1) / Math.max(C, 1);
  for (let v = 2; v < N; v++) if (N % v === 0 && v * perSample > 1) return v;
  return N;
}

/** A random spec: every op, layout, dtype and option; now and then past the threading threshold. */
export function randomSpec(rng: Random): CaseSpec {
  const layout = rng.pick<Layout>(['channels-first', 'channels-last']);
  const rank = rng.int(2, 5);
  const big = rng.next() < 0.15;
  const dims = Array.from({ length: rank }, () => rng.int(1, rank <= 2 ? 64 : 9));
  dims[0] = rng.int(2, big ? 64 : 8);
  if (big) dims[layout === 'channels-first' ? rank - 1 : 0] = rng.int(200, 1200);
  // At most ~300k elements: big enough to cross threading thresholds, quick on the reference.
  const channelAxis = layout === 'channels-first' ? 1 : rank - 1;
  while (dims.reduce((a, b) => a * b, 1) > 300_000) {
    const widest = dims.reduce((best, d, i) => (i !== channelAxis && d > dims[best] ? i : best), channelAxis === 0 ? 1 : 0);
    dims[widest] = Math.ceil(dims[widest] / 2);
  }
  const op = rng.pick<Op>(['train', 'infer', 'backward', 'moments', ...FAMILY_OPS]);
  const C = dims[channelAxis];
  const divisors = Array.from({ length: C }, (_, i) => i + 1).filter((g) => C % g === 0);
  // InstanceNorm normalises each instance's spatial values: it needs more than one.
  if (op === 'instanceNorm') {
    const spatial = layout === 'channels-first' ? dims.slice(2) : dims.slice(1, rank - 1);
    if (spatial.reduce((a, b) => a * b, 1) < 2) dims.splice(layout === 'channels-first' ? 2 : 1, 0, rng.int(2, 9));
  }
  const spec: CaseSpec = {
    op,
    groups: op === 'groupNorm' ? rng.pick(divisors) : undefined,
    normalizedRank: op === 'layerNorm' || op === 'rmsNorm' ? rng.int(1, Math.min(rank, 3)) : undefined,
    dtype: rng.pick(['float32', 'float64'] as const),
    layout,
    dims,
    affine: rng.next() < 0.7,
    activation: rng.next() < 0.3 ? 'relu' : 'none',
    offset: rng.next() < 0.2 ? 1e3 : 0,
    scale: 1 + rng.next() * 3,
    eps: rng.pick([1e-5, 1e-3, 0.1]),
    momentum: rng.pick([0.9, 0.5, null]),
    unbiasedRunningVar: rng.next() < 0.7,
    training: rng.next() < 0.8,
    seed: rng.int(0, 2 ** 31),
  };
  const variant = variantFor(spec);
  return variant === undefined ? spec : { ...spec, variant };
}

/**
 * train and backward: now and then (40%) a BatchNorm variant, drawn from the case's own seed so
 * the sequence of cases is what it was before the variants existed.
 */
function variantFor(s: CaseSpec): CaseSpec['variant'] {
  if (s.op !== 'train' && s.op !== 'backward') return undefined;
  const u = new Random(s.seed ^ 0x9e3779b9).next();
  return u < 0.2 ? 'renorm' : u < 0.4 ? 'ghost' : undefined;
}

const localApi: OpsApi = {
  batchNormTrain,
  batchNormInfer,
  batchNormBackward,
  moments,
  withBackend,
  layerNorm,
  layerNormBackward,
  rmsNorm,
  rmsNormBackward,
  groupNorm,
  groupNormBackward,
  instanceNorm,
  instanceNormBackward,
};

/**
 * Runs random cases (every op, layout, dtype, affine and ReLU setting) on each available
 * backend and compares every output with the float64 reference. Never throws for a mismatch:
 * the report says what differed.
 */
export function verify(options: VerifyOptions = {}): VerifyReport {
  const seed = options.seed ?? 20261126;
  const count = options.cases ?? 60;
  if (!Number.isSafeInteger(count) || count < 1) {
    throw new RangeError(`verify: cases must be an integer >= 1 (zero cases would check nothing), received ${String(count)}`);
  }
  const status = backends();
  const wanted = options.backends ?? status.map((s) => s.name);
  const results: BackendVerdict[] = [];
  const unavailable: VerifyReport['unavailable'] = [];
  const total = count * status.filter((s) => s.available && wanted.includes(s.name)).length;
  let done = 0;
  for (const s of status) {
    if (!wanted.includes(s.name)) continue;
    if (!s.available) {
      unavailable.push({ backend: s.name, reason: s.reason ?? 'unavailable' });
      continue;
    }
    const rng = new Random(seed);
    const failures: string[] = [];
    for (let i = 0; i < count; i++) {
      options.onProgress?.(done++, total, s.name);
      const failure = checkSpec(localApi, s.name, randomSpec(rng));
      if (failure) failures.push(failure);
    }
    results.push({ backend: s.name, cases: count, failures });
  }
  if (results.length > 0) options.onProgress?.(total, total, results[results.length - 1].backend);
  const ok = results.length > 0 && results.every((r) => r.failures.length === 0);
  const lines = [`simdnorm verify (seed ${seed}): ${ok ? 'every backend conforms' : 'MISMATCH'}`];
  for (const r of results) {
    lines.push(`  ${r.backend.padEnd(6)} ${r.failures.length === 0 ? 'ok' : 'FAILED'}  ${r.cases - r.failures.length}/${r.cases} cases match the float64 reference`);
    for (const f of r.failures.slice(0, 10)) lines.push(`      ${f}`);
  }
  // The first line of the reason (the JSON report keeps all of it; `simdnorm info` explains it).
  for (const u of unavailable) lines.push(`  ${u.backend.padEnd(6)} not checked: ${u.reason.split('\n')[0].replace(/:$/, '')}`);
  return { ok, seed, results, unavailable, text: lines.join('\n') };
}
