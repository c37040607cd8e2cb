/**
 * The normalization family's conformance cases (LayerNorm, RMSNorm, GroupNorm, InstanceNorm):
 * written once, run against every backend by test/conformance/family.test.ts. A case receives
 * the façade with the backend under test chosen and throws an Error saying what differs.
 *
 * Expected values come from the float64 oracle (lib/reference/family.ts), computed on float64
 * copies of the very arrays the backend got. Backward is judged on its own: it is given the
 * backend's forward statistics (and y), and the oracle gets the same values. Tolerances are
 * README "Numerics" (lib/compare.ts): tol 1e-5 (float32) or 1e-11 (float64) of
 * max(|expected|, scale), where scale is rms(expected), or for a sum of M terms √M·rms(terms),
 * and for dx the size of its terms dy·weight·invStd.
 */
import { formatMismatch, rms, toleranceFor, worstMismatch } from '../../lib/compare.js';
import { Random } from '../../lib/random.js';
import * as ref from '../../lib/reference/family.js';
import type * as Simdnorm from '../../lib/exports.js';

/** What the cases use of the façade (the package's module object, backend under test chosen). */
export type SimdnormApi = Pick<
  typeof Simdnorm,
  | 'layerNorm'
  | 'layerNormAsync'
  | 'layerNormBackward'
  | 'layerNormBackwardAsync'
  | 'rmsNorm'
  | 'rmsNormAsync'
  | 'rmsNormBackward'
  | 'rmsNormBackwardAsync'
  | 'groupNorm'
  | 'groupNormAsync'
  | 'groupNormBackward'
  | 'groupNormBackwardAsync'
  | 'instanceNorm'
  | 'instanceNormAsync'
  | 'instanceNormBackward'
  | 'instanceNormBackwardAsync'
>;

export interface FamilyCase {
  name: string;
  run(api: SimdnormApi): void | Promise<void>;
}

type FloatArray = Float32Array | Float64Array;
type DType = 'float32' | 'float64';
type Layout = 'channels-first' | 'channels-last';
/** none; scale only (weight / gamma); scale and shift (RMSNorm has no shift: 'both' is 'scale') */
type Affine = 'none' | 'scale' | 'both';
/** how the outputs are obtained: allocated (sync or async), given by the caller, or in place (out.y = x, out.dx = dy) */
type Mode = 'sync' | 'async' | 'out' | 'inplace';

// ---------------------------------------------------------------------------------------------
// Assertions (no test framework: plain throws)

function fail(message: string): never {
  throw new Error(message);
}

function check(condition: boolean, message: string): void {
  if (!condition) fail(message);
}

/**
 * got vs the oracle's expected values: lib/compare.ts's bar at got's dtype. `minScale` raises the
 * scale (sums, dx); `allowance` is an absolute error always allowed (default: the subnormal spacing).
 */
function expectClose(name: string, got: ArrayLike<number>, expected: ArrayLike<number>, minScale = 0, allowance?: number): void {
  const m = worstMismatch(got, expected, toleranceFor(got as FloatArray), minScale, allowance);
  if (m) fail(formatMismatch(name, m));
}

function expectBitwise(name: string, got: ArrayLike<number>, expected: ArrayLike<number>): void {
  if (got.length !== expected.length) fail(`${name}: length ${got.length}, expected ${expected.length}`);
  for (let i = 0; i < got.length; i++) {
    if (!Object.is(got[i], expected[i])) fail(`${name}[${i}] = ${got[i]}, expected exactly ${expected[i]}`);
  }
}

type ErrorKind = typeof TypeError | typeof RangeError;

function checkError(what: string, e: unknown, kind: ErrorKind, mentions: string | RegExp): void {
  if (!(e instanceof kind)) fail(`${what}: threw ${(e as Error)?.name}: ${(e as Error)?.message}, expected ${kind.name}`);
  const ok = typeof mentions === 'string' ? e.message.includes(mentions) : mentions.test(e.message);
  if (!ok) fail(`${what}: message "${e.message}" does not name ${mentions}`);
}

// ---------------------------------------------------------------------------------------------
// Data

const product = (dims: readonly number[]): number => dims.reduce((a, b) => a * b, 1);
const make = (dtype: DType, n: number): FloatArray => (dtype === 'float32' ? new Float32Array(n) : new Float64Array(n));
const f64 = (a: ArrayLike<number>): Float64Array => Float64Array.from(a);
const opt64 = (a: FloatArray | null): Float64Array | null => (a === null ? null : f64(a));
const copyAs = (dtype: DType, a: ArrayLike<number>): FloatArray => (dtype === 'float32' ? Float32Array.from(a) : Float64Array.from(a));
const filled = (dtype: DType, n: number, v: number): FloatArray => make(dtype, n).fill(v);

function random(dtype: DType, n: number, seed: number, scale = 1, offset = 0): FloatArray {
  return new Random(seed).fill(make(dtype, n), scale, offset);
}

/** One ulp of |v| in float64: the rounding of a float64 mean near v. */
function ulp64(v: number): number {
  const a = Math.abs(v);
  return a === 0 ? 0 : 2 ** (Math.floor(Math.log2(a)) - 52);
}

function maxAbs(a: ArrayLike<number> | null): number {
  let m = 0;
  if (a) for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]));
  return a ? m : 1;
}

/** What a case does to x: random offset + spread·N(0, 1), or every value `constant`. */
interface DataSpec {
  offset?: number;
  spread?: number;
  constant?: number;
}

interface CommonSpec extends DataSpec {
  dtype: DType;
  affine: Affine;
  relu: boolean;
  mode: Mode;
  /** absent: the op's default */
  eps?: number;
  seed: number;
  label?: string;
}

function inputData(s: CommonSpec, n: number): FloatArray {
  if (s.constant !== undefined) return filled(s.dtype, n, s.constant);
  return random(s.dtype, n, s.seed, s.spread ?? 2, s.offset ?? 0);
}

/**
 * The absolute error allowed on y besides the relative bar: one ulp of the float64 mean times
 * |weight·invStd| for float64 data far from zero (1e8 + N(0,1)): a float64 mean there is a
 * rounding of 1.5e-8, which y inherits in any float64 evaluation, the oracle's included.
 */
function yAllowance(s: CommonSpec, mean: ArrayLike<number> | null, invStd: ArrayLike<number>, scale: ArrayLike<number> | null): number | undefined {
  if (s.dtype !== 'float64' || !s.offset) return undefined;
  return 2 * ulp64(maxAbs(mean ?? [s.offset])) * maxAbs(invStd) * maxAbs(scale);
}

function describeSpec(op: string, s: CommonSpec, geometry: string): string {
  const flags = [
    s.affine === 'none' ? 'no-affine' : s.affine === 'scale' ? 'scale only' : '',
    s.relu ? 'relu' : '',
    s.eps !== undefined ? `eps ${s.eps}` : '',
    s.mode !== 'sync' ? s.mode : '',
    s.offset ? `offset ${s.offset}` : '',
    s.constant !== undefined ? `constant ${s.constant}` : '',
    s.label ?? '',
  ].filter(Boolean);
  return `${op} ${s.dtype} ${geometry}${flags.length ? ' ' + flags.join(' ') : ''}`;
}

/** Runs a call as the mode says; in 'async' mode also checks the sync call gives the same bits. */
async function invoke<R extends object>(
  what: string,
  mode: Mode,
  sync: (out?: Record<string, FloatArray>) => R,
  async: () => Promise<R>,
  again: () => R,
  out: () => Record<string, FloatArray>,
  inPlace: Record<string, FloatArray>,
): Promise<R> {
  switch (mode) {
    case 'sync':
      return sync();
    case 'async': {
      const r = await async();
      const s = again();
      for (const [k, v] of Object.entries(s)) if (ArrayBuffer.isView(v)) expectBitwise(`${what}: async ${k} vs sync`, (r as Record<string, FloatArray>)[k], v as FloatArray);
      return r;
    }
    case 'out': {
      const given = out();
      const r = sync(given);
      for (const [k, v] of Object.entries(given)) check((r as Record<string, unknown>)[k] === v, `${what}: result.${k} is not the caller's out.${k}`);
      return r;
    }
    case 'inplace': {
      const r = sync(inPlace);
      for (const [k, v] of Object.entries(inPlace)) check((r as Record<string, unknown>)[k] === v, `${what}: result.${k} is not the in-place array`);
      return r;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// LayerNorm and RMSNorm

export interface RowsSpec extends CommonSpec {
  op: 'layerNorm' | 'rmsNorm';
  shape: number[];
  normalizedShape: number[];
}

function rowsCase(s: RowsSpec): FamilyCase {
  const name = describeSpec(s.op, s, `[${s.shape}] over [${s.normalizedShape}]`);
  return { name, run: (api) => (s.op === 'layerNorm' ? runLayerNorm(api, s, name) : runRmsNorm(api, s, name)) };
}

async function runLayerNorm(api: SimdnormApi, s: RowsSpec, what: string): Promise<void> {
  const { dtype, shape, normalizedShape } = s;
  const n = product(shape);
  const d = product(normalizedShape);
  const rows = product(shape.slice(0, shape.length - normalizedShape.length));
  const x = inputData(s, n);
  const x0 = f64(x);
  const dy = random(dtype, n, s.seed + 1);
  const dy0 = f64(dy);
  const weight = s.affine !== 'none' ? random(dtype, d, s.seed + 2, 0.5, 1) : null;
  const bias = s.affine === 'both' ? random(dtype, d, s.seed + 3) : null;
  const options = { ...(s.eps !== undefined ? { eps: s.eps } : {}), activation: s.relu ? ('relu' as const) : ('none' as const) };
  const inputs = { x, shape, normalizedShape, weight, bias };

  const f = await invoke(
    `${what} forward`,
    s.mode,
    (out) => api.layerNorm(inputs, options, out),
    () => api.layerNormAsync(inputs, options),
    () => api.layerNorm({ ...inputs, x: copyAs(dtype, x0) }, options),
    () => ({ y: filled(dtype, n, NaN), mean: filled(dtype, rows, NaN), invStd: filled(dtype, rows, NaN) }),
    { y: x },
  );
  const e = ref.layerNormRef({ x: x0, shape, normalizedShape, weight: opt64(weight), bias: opt64(bias) }, { eps: s.eps ?? 1e-5, relu: s.relu });
  expectClose(`${what}: y`, f.y, e.y, 0, yAllowance(s, e.mean, e.invStd, weight));
  expectClose(`${what}: mean`, f.mean, e.mean, rms(x0) / Math.sqrt(Math.max(d, 1)));
  expectClose(`${what}: invStd`, f.invStd, e.invStd);

  // Backward from the backend's own forward statistics (the oracle gets the same values).
  const xb = copyAs(dtype, x0);
  const y = s.relu ? f.y : null;
  const bInputs = { dy, x: xb, shape, normalizedShape, mean: f.mean, invStd: f.invStd, weight, y };
  const bOptions = { activation: options.activation };
  const b = await invoke(
    `${what} backward`,
    s.mode,
    (out) => api.layerNormBackward(bInputs, bOptions, out),
    () => api.layerNormBackwardAsync(bInputs, bOptions),
    () => api.layerNormBackward({ ...bInputs, dy: copyAs(dtype, dy0) }, bOptions),
    () => ({ dx: filled(dtype, n, NaN), dweight: filled(dtype, d, NaN), dbias: filled(dtype, d, NaN) }),
    { dx: dy },
  );
  const eb = ref.layerNormBackwardRef(
    { dy: dy0, x: x0, shape, normalizedShape, mean: f64(f.mean), invStd: f64(f.invStd), weight: opt64(weight), y: y && f64(y) },
    { relu: s.relu },
  );
  const root = Math.sqrt(Math.max(rows, 1));
  expectClose(`${what}: dx`, b.dx, eb.dx, rms(dy0) * rms(f.invStd) * (weight ? rms(weight) : 1));
  expectClose(`${what}: dweight`, b.dweight, eb.dweight, root * rms(dy0));
  expectClose(`${what}: dbias`, b.dbias, eb.dbias, root * rms(dy0));
}

async function runRmsNorm(api: SimdnormApi, s: RowsSpec, what: string): Promise<void> {
  const { dtype, shape, normalizedShape } = s;
  const n = product(shape);
  const d = product(normalizedShape);
  const rows = product(shape.slice(0, shape.length - normalizedShape.length));
  const x = inputData(s, n);
  const x0 = f64(x);
  const dy = random(dtype, n, s.seed + 1);
  const dy0 = f64(dy);
  const weight = s.affine !== 'none' ? random(dtype, d, s.seed + 2, 0.5, 1) : null;
  const options = { ...(s.eps !== undefined ? { eps: s.eps } : {}), activation: s.relu ? ('relu' as const) : ('none' as const) };
  const inputs = { x, shape, normalizedShape, weight };

  const f = await invoke(
    `${what} forward`,
    s.mode,
    (out) => api.rmsNorm(inputs, options, out),
    () => api.rmsNormAsync(inputs, options),
    () => api.rmsNorm({ ...inputs, x: copyAs(dtype, x0) }, options),
    () => ({ y: filled(dtype, n, NaN), invRms: filled(dtype, rows, NaN) }),
    { y: x },
  );
  // PyTorch's default eps: the dtype's machine epsilon.
  const eps = s.eps ?? (dtype === 'float32' ? 2 ** -23 : 2 ** -52);
  const e = ref.rmsNormRef({ x: x0, shape, normalizedShape, weight: opt64(weight) }, { eps, relu: s.relu });
  expectClose(`${what}: y`, f.y, e.y);
  expectClose(`${what}: invRms`, f.invRms, e.invRms);

  const xb = copyAs(dtype, x0);
  const y = s.relu ? f.y : null;
  const bInputs = { dy, x: xb, shape, normalizedShape, invRms: f.invRms, weight, y };
  const bOptions = { activation: options.activation };
  const b = await invoke(
    `${what} backward`,
    s.mode,
    (out) => api.rmsNormBackward(bInputs, bOptions, out),
    () => api.rmsNormBackwardAsync(bInputs, bOptions),
    () => api.rmsNormBackward({ ...bInputs, dy: copyAs(dtype, dy0) }, bOptions),
    () => ({ dx: filled(dtype, n, NaN), dweight: filled(dtype, d, NaN) }),
    { dx: dy },
  );
  const eb = ref.rmsNormBackwardRef(
    { dy: dy0, x: x0, shape, normalizedShape, invRms: f64(f.invRms), weight: opt64(weight), y: y && f64(y) },
    { relu: s.relu },
  );
  const root = Math.sqrt(Math.max(rows, 1));
  expectClose(`${what}: dx`, b.dx, eb.dx, rms(dy0) * rms(f.invRms) * (weight ? rms(weight) : 1));
  expectClose(`${what}: dweight`, b.dweight, eb.dweight, root * rms(dy0));
}

// ---------------------------------------------------------------------------------------------
// GroupNorm

export interface GroupSpec extends CommonSpec {
  shape: number[];
  groups: number;
  layout: Layout;
}

function channelsOf(shape: readonly number[], layout: Layout): number {
  return shape[layout === 'channels-first' ? 1 : shape.length - 1];
}

function groupCase(s: GroupSpec): FamilyCase {
  const name = describeSpec('groupNorm', s, `${s.layout} [${s.shape}] groups ${s.groups}`);
  return { name, run: (api) => runGroupNorm(api, s, name) };
}

async function runGroupNorm(api: SimdnormApi, s: GroupSpec, what: string): Promise<void> {
  const { dtype, shape, groups, layout } = s;
  const n = product(shape);
  const C = channelsOf(shape, layout);
  const N = shape[0];
  const x = inputData(s, n);
  const x0 = f64(x);
  const dy = random(dtype, n, s.seed + 1);
  const dy0 = f64(dy);
  const gamma = s.affine !== 'none' ? random(dtype, C, s.seed + 2, 0.5, 1) : null;
  const beta = s.affine === 'both' ? random(dtype, C, s.seed + 3) : null;
  const options = { ...(s.eps !== undefined ? { eps: s.eps } : {}), layout, activation: s.relu ? ('relu' as const) : ('none' as const) };
  const inputs = { x, shape, groups, gamma, beta };
  const f = await invoke(
    `${what} forward`,
    s.mode,
    (out) => api.groupNorm(inputs, options, out),
    () => api.groupNormAsync(inputs, options),
    () => api.groupNorm({ ...inputs, x: copyAs(dtype, x0) }, options),
    () => ({ y: filled(dtype, n, NaN), mean: filled(dtype, N * groups, NaN), invStd: filled(dtype, N * groups, NaN) }),
    { y: x },
  );
  const e = ref.groupNormRef({ x: x0, shape, groups, gamma: opt64(gamma), beta: opt64(beta) }, { eps: s.eps ?? 1e-5, layout, relu: s.relu });
  const perGroup = n / Math.max(N * groups, 1);
  expectClose(`${what}: y`, f.y, e.y, 0, yAllowance(s, e.mean, e.invStd, gamma));
  expectClose(`${what}: mean`, f.mean, e.mean, rms(x0) / Math.sqrt(Math.max(perGroup, 1)));
  expectClose(`${what}: invStd`, f.invStd, e.invStd);

  const xb = copyAs(dtype, x0);
  const y = s.relu ? f.y : null;
  const bInputs = { dy, x: xb, shape, groups, mean: f.mean, invStd: f.invStd, gamma, y };
  const bOptions = { layout, activation: options.activation };
  const b = await invoke(
    `${what} backward`,
    s.mode,
    (out) => api.groupNormBackward(bInputs, bOptions, out),
    () => api.groupNormBackwardAsync(bInputs, bOptions),
    () => api.groupNormBackward({ ...bInputs, dy: copyAs(dtype, dy0) }, bOptions),
    () => ({ dx: filled(dtype, n, NaN), dgamma: filled(dtype, C, NaN), dbeta: filled(dtype, C, NaN) }),
    { dx: dy },
  );
  const eb = ref.groupNormBackwardRef(
    { dy: dy0, x: x0, shape, groups, mean: f64(f.mean), invStd: f64(f.invStd), gamma: opt64(gamma), y: y && f64(y) },
    { layout, relu: s.relu },
  );
  const root = Math.sqrt(Math.max(n / Math.max(C, 1), 1));
  expectClose(`${what}: dx`, b.dx, eb.dx, rms(dy0) * rms(f.invStd) * (gamma ? rms(gamma) : 1));
  expectClose(`${what}: dgamma`, b.dgamma, eb.dgamma, root * rms(dy0));
  expectClose(`${what}: dbeta`, b.dbeta, eb.dbeta, root * rms(dy0));
}

// ---------------------------------------------------------------------------------------------
// InstanceNorm

export interface InstanceSpec extends CommonSpec {
  shape: number[];
  layout: Layout;
  /** running statistics given (updated unless useInputStats is false) */
  running?: { momentum?: number | null; numBatchesTracked?: number; unbiasedRunningVar?: boolean };
  /** false: eval (the running statistics), and backward with training: false */
  useInputStats?: boolean;
}

function instanceCase(s: InstanceSpec): FamilyCase {
  const r = s.running;
  const running = r
    ? `running (momentum ${r.momentum === undefined ? 'default' : r.momentum}${r.numBatchesTracked ? `, tracked ${r.numBatchesTracked}` : ''}${r.unbiasedRunningVar === false ? ', biased' : ''})`
    : '';
  const name = describeSpec('instanceNorm', s, `${s.layout} [${s.shape}]${running ? ' ' + running : ''}${s.useInputStats === false ? ' useInputStats false' : ''}`);
  return { name, run: (api) => runInstanceNorm(api, s, name) };
}

async function runInstanceNorm(api: SimdnormApi, s: InstanceSpec, what: string): Promise<void> {
  const { dtype, shape, layout } = s;
  const n = product(shape);
  const C = channelsOf(shape, layout);
  const N = shape[0];
  const x = inputData(s, n);
  const x0 = f64(x);
  const dy = random(dtype, n, s.seed + 1);
  const dy0 = f64(dy);
  const gamma = s.affine !== 'none' ? random(dtype, C, s.seed + 2, 0.5, 1) : null;
  const beta = s.affine === 'both' ? random(dtype, C, s.seed + 3) : null;
  const eval_ = s.useInputStats === false;
  const withRunning = s.running !== undefined || eval_;
  const rm0 = withRunning ? random(dtype, C, s.seed + 4, 1, s.offset ?? 0) : null;
  const rv0 = withRunning ? copyAs(dtype, Array.from(random(dtype, C, s.seed + 5), (v) => 0.5 + Math.abs(v))) : null;
  const runningMean = rm0 && rm0.slice();
  const runningVar = rv0 && rv0.slice();
  const tracked = s.running?.numBatchesTracked ?? 0;
  const options = {
    ...(s.eps !== undefined ? { eps: s.eps } : {}),
    layout,
    activation: s.relu ? ('relu' as const) : ('none' as const),
    ...(s.running?.momentum !== undefined ? { momentum: s.running.momentum } : {}),
    ...(s.running?.unbiasedRunningVar !== undefined ? { unbiasedRunningVar: s.running.unbiasedRunningVar } : {}),
    ...(eval_ ? { useInputStats: false } : {}),
  };
  const inputs = { x, shape, gamma, beta, runningMean, runningVar, numBatchesTracked: tracked };
  const f = await invoke(
    `${what} forward`,
    s.mode,
    (out) => api.instanceNorm(inputs, options, out),
    () => api.instanceNormAsync(inputs, options),
    () => api.instanceNorm({ ...inputs, x: copyAs(dtype, x0), runningMean: rm0 && rm0.slice(), runningVar: rv0 && rv0.slice() }, options),
    () => ({ y: filled(dtype, n, NaN), mean: filled(dtype, N * C, NaN), invStd: filled(dtype, N * C, NaN) }),
    { y: x },
  );
  const e = ref.instanceNormRef(
    { x: x0, shape, gamma: opt64(gamma), beta: opt64(beta), runningMean: opt64(rm0), runningVar: opt64(rv0), numBatchesTracked: tracked },
    {
      eps: s.eps ?? 1e-5,
      layout,
      relu: s.relu,
      momentum: s.running?.momentum,
      unbiasedRunningVar: s.running?.unbiasedRunningVar,
      useInputStats: !eval_,
    },
  );
  const S = n / Math.max(N * C, 1);
  expectClose(`${what}: y`, f.y, e.y, 0, yAllowance(s, e.mean, e.invStd, gamma));
  expectClose(`${what}: mean`, f.mean, e.mean, eval_ ? 0 : rms(x0) / Math.sqrt(Math.max(S, 1)));
  expectClose(`${what}: invStd`, f.invStd, e.invStd);
  check(f.updated === e.updated, `${what}: updated ${f.updated}, expected ${e.updated}`);
  check(f.numBatchesTracked === e.numBatchesTracked, `${what}: numBatchesTracked ${f.numBatchesTracked}, expected ${e.numBatchesTracked}`);
  if (runningMean && runningVar) {
    if (e.updated) {
      expectClose(`${what}: runningMean`, runningMean, e.runningMean!, rms(x0) / Math.sqrt(Math.max(n / Math.max(C, 1), 1)));
      expectClose(`${what}: runningVar`, runningVar, e.runningVar!);
    } else {
      expectBitwise(`${what}: runningMean (not updated)`, runningMean, rm0!);
      expectBitwise(`${what}: runningVar (not updated)`, runningVar, rv0!);
    }
  }

  const xb = copyAs(dtype, x0);
  const y = s.relu ? f.y : null;
  const bInputs = { dy, x: xb, shape, mean: f.mean, invStd: f.invStd, gamma, y };
  const bOptions = { layout, activation: options.activation, training: !eval_ };
  const b = await invoke(
    `${what} backward`,
    s.mode,
    (out) => api.instanceNormBackward(bInputs, bOptions, out),
    () => api.instanceNormBackwardAsync(bInputs, bOptions),
    () => api.instanceNormBackward({ ...bInputs, dy: copyAs(dtype, dy0) }, bOptions),
    () => ({ dx: filled(dtype, n, NaN), dgamma: filled(dtype, C, NaN), dbeta: filled(dtype, C, NaN) }),
    { dx: dy },
  );
  const eb = ref.instanceNormBackwardRef(
    { dy: dy0, x: x0, shape, mean: f64(f.mean), invStd: f64(f.invStd), gamma: opt64(gamma), y: y && f64(y) },
    { layout, relu: s.relu, training: !eval_ },
  );
  const root = Math.sqrt(Math.max(n / Math.max(C, 1), 1));
  expectClose(`${what}: dx`, b.dx, eb.dx, rms(dy0) * rms(f.invStd) * (gamma ? rms(gamma) : 1));
  expectClose(`${what}: dgamma`, b.dgamma, eb.dgamma, root * rms(dy0));
  expectClose(`${what}: dbeta`, b.dbeta, eb.dbeta, root * rms(dy0));
}

// ---------------------------------------------------------------------------------------------
// The matrix: every op × shape × layout × dtype × affine × ReLU, then the options and numerics

const DTYPES: readonly DType[] = ['float32', 'float64'];
const LAYOUTS: readonly Layout[] = ['channels-first', 'channels-last'];
const AFFINES: readonly Affine[] = ['both', 'scale', 'none'];

/** LayerNorm's and RMSNorm's shapes (the last two: zero rows, and rows of zero values: NaN statistics). */
export const ROWS_SHAPES: readonly [number[], number[]][] = [
  [[2, 3, 4], [4]],
  [[2, 3, 4], [3, 4]],
  [[64, 128], [128]],
  [[3, 1], [1]],
  [[5, 17], [17]],
  [[0, 8], [8]],
  [[3, 0], [0]],
];

/** GroupNorm's (channels-first shapes; channels-last moves C last). */
export const GROUP_SHAPES: readonly [number[], number][] = [
  [[2, 6, 4, 4], 1],
  [[2, 6, 4, 4], 2],
  [[2, 6, 4, 4], 3],
  [[2, 6, 4, 4], 6],
  [[3, 8, 5], 4],
  [[1, 4], 2],
  [[1, 4], 4],
  [[0, 6, 3], 3],
  [[2, 4, 0], 2],
];

export const INSTANCE_SHAPES: readonly number[][] = [
  [2, 3, 8],
  [2, 3, 4, 5],
  [1, 2, 3, 3, 3],
  [0, 3, 4],
  [2, 3, 0],
];

/** A channels-first shape in the layout's order. */
function inLayout(shape: readonly number[], layout: Layout): number[] {
  return layout === 'channels-first' ? [...shape] : [shape[0], ...shape.slice(2), shape[1]];
}

function matrixCases(): FamilyCase[] {
  const cases: FamilyCase[] = [];
  let seed = 1000;
  for (const op of ['layerNorm', 'rmsNorm'] as const) {
    for (const [shape, normalizedShape] of ROWS_SHAPES) {
      for (const dtype of DTYPES) {
        for (const affine of op === 'rmsNorm' ? (['scale', 'none'] as const) : AFFINES) {
          for (const relu of [false, true]) cases.push(rowsCase({ op, shape, normalizedShape, dtype, affine, relu, mode: 'sync', seed: (seed += 10) }));
        }
      }
    }
  }
  for (const [shape, groups] of GROUP_SHAPES) {
    for (const layout of LAYOUTS) {
      for (const dtype of DTYPES) {
        for (const affine of AFFINES) {
          for (const relu of [false, true]) {
            cases.push(groupCase({ shape: inLayout(shape, layout), groups, layout, dtype, affine, relu, mode: 'sync', seed: (seed += 10) }));
          }
        }
      }
    }
  }
  for (const shape of INSTANCE_SHAPES) {
    for (const layout of LAYOUTS) {
      for (const dtype of DTYPES) {
        for (const affine of AFFINES) {
          for (const relu of [false, true]) {
            cases.push(instanceCase({ shape: inLayout(shape, layout), layout, dtype, affine, relu, mode: 'sync', seed: (seed += 10) }));
          }
        }
      }
    }
  }
  return cases;
}

/** eps, caller-given outputs, in place, async; InstanceNorm's running statistics and eval mode. */
function optionCases(): FamilyCase[] {
  const cases: FamilyCase[] = [];
  let seed = 5000;
  for (const dtype of DTYPES) {
    for (const mode of ['out', 'inplace', 'async'] as const) {
      for (const relu of [false, true]) {
        const common = { dtype, mode, relu, affine: 'both' as const };
        cases.push(rowsCase({ ...common, op: 'layerNorm', shape: [4, 3, 10], normalizedShape: [3, 10], seed: (seed += 10) }));
        cases.push(rowsCase({ ...common, op: 'rmsNorm', shape: [4, 3, 10], normalizedShape: [10], seed: (seed += 10) }));
        for (const layout of LAYOUTS) {
          cases.push(groupCase({ ...common, shape: inLayout([3, 6, 5, 2], layout), groups: 3, layout, seed: (seed += 10) }));
          cases.push(instanceCase({ ...common, shape: inLayout([3, 4, 7], layout), layout, seed: (seed += 10) }));
          cases.push(instanceCase({ ...common, shape: inLayout([3, 4, 7], layout), layout, running: {}, seed: (seed += 10) }));
        }
      }
    }
    for (const eps of [1e-3, 0.5]) {
      const common = { dtype, mode: 'sync' as const, relu: false, affine: 'both' as const, eps };
      cases.push(rowsCase({ ...common, op: 'layerNorm', shape: [6, 9], normalizedShape: [9], seed: (seed += 10) }));
      cases.push(rowsCase({ ...common, op: 'rmsNorm', shape: [6, 9], normalizedShape: [9], seed: (seed += 10) }));
      cases.push(groupCase({ ...common, shape: [2, 4, 6], groups: 2, layout: 'channels-first', seed: (seed += 10) }));
      cases.push(instanceCase({ ...common, shape: [2, 4, 6], layout: 'channels-first', seed: (seed += 10) }));
    }
    // RMSNorm's default eps is the dtype's machine epsilon: visible on rows of tiny values.
    cases.push(rowsCase({ dtype, mode: 'sync', relu: false, affine: 'none', op: 'rmsNorm', shape: [3, 5], normalizedShape: [5], spread: 1e-7, seed: (seed += 10), label: 'default eps on data of 1e-7' }));
    // InstanceNorm's running statistics: momentum (default, 0.5, 0 and 1), null (cumulative average), biased.
    for (const layout of LAYOUTS) {
      for (const running of [
        {},
        { momentum: 0.5 },
        { momentum: 0 },
        { momentum: 1 },
        { momentum: null, numBatchesTracked: 3 },
        { momentum: null, numBatchesTracked: 0 },
        { unbiasedRunningVar: false, numBatchesTracked: 7 },
      ]) {
        cases.push(instanceCase({ dtype, layout, mode: 'sync', relu: false, affine: 'both', shape: inLayout([3, 4, 5, 2], layout), running, seed: (seed += 10) }));
      }
      // Eval: useInputStats false (running statistics used, not updated), backward training false.
      for (const relu of [false, true]) {
        for (const shape of [[3, 4, 5, 2], [2, 3, 1]]) {
          cases.push(instanceCase({ dtype, layout, mode: 'sync', relu, affine: 'both', shape: inLayout(shape, layout), useInputStats: false, running: {}, seed: (seed += 10) }));
        }
      }
      cases.push(instanceCase({ dtype, layout, mode: 'async', relu: false, affine: 'scale', shape: inLayout([2, 3, 6], layout), useInputStats: false, running: {}, seed: (seed += 10) }));
      cases.push(instanceCase({ dtype, layout, mode: 'sync', relu: false, affine: 'none', shape: inLayout([2, 3, 6], layout), useInputStats: false, running: { momentum: null }, seed: (seed += 10) }));
    }
  }
  return cases;
}

/** Far from zero (float32 1e4 + N(0,1), float64 1e8 + N(0,1)); constant rows/groups of 1e7 (variance 0: y = beta). */
function numericsCases(): FamilyCase[] {
  const cases: FamilyCase[] = [];
  let seed = 9000;
  for (const [dtype, offset] of [['float32', 1e4], ['float64', 1e8]] as const) {
    const common = { dtype, mode: 'sync' as const, affine: 'both' as const, offset, spread: 1 };
    for (const relu of [false, true]) {
      cases.push(rowsCase({ ...common, relu, op: 'layerNorm', shape: [16, 257], normalizedShape: [257], seed: (seed += 10) }));
      cases.push(rowsCase({ ...common, relu, op: 'rmsNorm', shape: [16, 257], normalizedShape: [257], seed: (seed += 10) }));
      for (const layout of LAYOUTS) {
        cases.push(groupCase({ ...common, relu, shape: inLayout([4, 8, 9, 7], layout), groups: 2, layout, seed: (seed += 10) }));
        cases.push(instanceCase({ ...common, relu, shape: inLayout([4, 3, 9, 7], layout), layout, running: {}, seed: (seed += 10) }));
      }
    }
  }
  for (const dtype of DTYPES) {
    const common = { dtype, mode: 'sync' as const, affine: 'both' as const, constant: 1e7, relu: false };
    cases.push(rowsCase({ ...common, op: 'layerNorm', shape: [4, 33], normalizedShape: [33], seed: (seed += 10) }));
    cases.push(rowsCase({ ...common, op: 'rmsNorm', shape: [4, 33], normalizedShape: [33], seed: (seed += 10) }));
    for (const layout of LAYOUTS) {
      cases.push(groupCase({ ...common, shape: inLayout([2, 6, 5, 3], layout), groups: 3, layout, seed: (seed += 10) }));
      cases.push(instanceCase({ ...common, shape: inLayout([2, 3, 5, 3], layout), layout, seed: (seed += 10) }));
    }
  }
  return cases;
}

/** Constant data of 1e7 mixed with random rows/groups: the constant ones give y = beta exactly or within tolerance. */
function constantCases(): FamilyCase[] {
  const cases: FamilyCase[] = [];
  for (const dtype of DTYPES) {
    cases.push({
      name: `${dtype}: a constant row / group / instance of 1e7 among random ones normalises to beta (mean exactly 1e7)`,
      run(api) {
        const tol = toleranceFor(make(dtype, 0));
        const near = (what: string, got: number, want: number) => check(Math.abs(got - want) <= tol * Math.max(1, Math.abs(want)), `${what}: ${got}, expected beta ${want}`);
        // LayerNorm: row 1 of 4 constant.
        {
          const x = random(dtype, 4 * 20, 11);
          x.fill(1e7, 20, 40);
          const bias = random(dtype, 20, 12);
          const weight = random(dtype, 20, 13, 0.5, 1);
          const r = api.layerNorm({ x, shape: [4, 20], normalizedShape: [20], weight, bias });
          check(r.mean[1] === 1e7, `layerNorm mean of the constant row ${r.mean[1]}`);
          for (let j = 0; j < 20; j++) near(`layerNorm y[1][${j}]`, r.y[20 + j], bias[j]);
        }
        // GroupNorm: group 1 of sample 0 constant, both layouts.
        for (const layout of LAYOUTS) {
          const shape = inLayout([2, 6, 4], layout);
          const x = random(dtype, 48, 14);
          for (let c = 2; c < 4; c++) for (let p = 0; p < 4; p++) x[layout === 'channels-first' ? c * 4 + p : p * 6 + c] = 1e7;
          const beta = random(dtype, 6, 15);
          const gamma = random(dtype, 6, 16, 0.5, 1);
          const r = api.groupNorm({ x, shape, groups: 3, gamma, beta }, { layout });
          check(r.mean[1] === 1e7, `groupNorm ${layout} mean of the constant group ${r.mean[1]}`);
          for (let c = 2; c < 4; c++) for (let p = 0; p < 4; p++) near(`groupNorm ${layout} y(c ${c}, p ${p})`, r.y[layout === 'channels-first' ? c * 4 + p : p * 6 + c], beta[c]);
        }
        // InstanceNorm: instance (1, 2) constant.
        {
          const x = random(dtype, 2 * 3 * 5, 17);
          x.fill(1e7, 25, 30);
          const beta = random(dtype, 3, 18);
          const r = api.instanceNorm({ x, shape: [2, 3, 5], gamma: random(dtype, 3, 19, 0.5, 1), beta });
          check(r.mean[5] === 1e7, `instanceNorm mean of the constant instance ${r.mean[5]}`);
          for (let p = 0; p < 5; p++) near(`instanceNorm y(1, 2, ${p})`, r.y[25 + p], beta[2]);
        }
      },
    });
  }
  return cases;
}

// ---------------------------------------------------------------------------------------------
// Bad input: typed errors naming the argument, nothing written (caller outputs untouched)

interface Victims {
  y: FloatArray;
  mean: FloatArray;
  invStd: FloatArray;
  invRms: FloatArray;
  dx: FloatArray;
  dweight: FloatArray;
  dbias: FloatArray;
  runningMean: FloatArray;
  runningVar: FloatArray;
  x: FloatArray;
}

type BadCall = (api: SimdnormApi, v: Victims) => unknown;

function badInputCases(): FamilyCase[] {
  // One tensor [4, 6, 5] (LayerNorm over [6, 5] or [5]; GroupNorm/InstanceNorm C = 6, S = 5).
  const shape = [4, 6, 5];
  const n = 120;
  const f32 = (length: number, v?: number): Float32Array => (v === undefined ? (random('float32', length, length) as Float32Array) : new Float32Array(length).fill(v));
  const victims = (): Victims => ({
    y: f32(n, 7),
    mean: f32(24, 7),
    invStd: f32(24, 7),
    invRms: f32(24, 7),
    dx: f32(n, 7),
    dweight: f32(30, 7),
    dbias: f32(30, 7),
    runningMean: f32(6, 0.5),
    runningVar: f32(6, 2),
    x: f32(n),
  });
  const ln = (inputs: Record<string, unknown>, options?: unknown): BadCall => (api, v) =>
    api.layerNorm({ x: v.x, shape, normalizedShape: [6, 5], ...inputs } as never, options as never, { y: v.y, mean: v.mean.subarray(0, 4), invStd: v.invStd.subarray(0, 4) } as never);
  const lnb = (inputs: Record<string, unknown>, options?: unknown): BadCall => (api, v) =>
    api.layerNormBackward(
      { dy: f32(n), x: v.x, shape, normalizedShape: [6, 5], mean: f32(4, 0), invStd: f32(4, 1), ...inputs } as never,
      options as never,
      { dx: v.dx, dweight: v.dweight, dbias: v.dbias } as never,
    );
  const rn = (inputs: Record<string, unknown>, options?: unknown): BadCall => (api, v) =>
    api.rmsNorm({ x: v.x, shape, normalizedShape: [5], ...inputs } as never, options as never, { y: v.y, invRms: v.invRms } as never);
  const rnb = (inputs: Record<string, unknown>, options?: unknown): BadCall => (api, v) =>
    api.rmsNormBackward(
      { dy: f32(n), x: v.x, shape, normalizedShape: [5], invRms: f32(24, 1), ...inputs } as never,
      options as never,
      { dx: v.dx, dweight: v.dweight.subarray(0, 5) } as never,
    );
  const gn = (inputs: Record<string, unknown>, options?: unknown): BadCall => (api, v) =>
    api.groupNorm({ x: v.x, shape, groups: 3, ...inputs } as never, options as never, { y: v.y, mean: v.mean.subarray(0, 12), invStd: v.invStd.subarray(0, 12) } as never);
  const gnb = (inputs: Record<string, unknown>, options?: unknown): BadCall => (api, v) =>
    api.groupNormBackward(
      { dy: f32(n), x: v.x, shape, groups: 3, mean: f32(12, 0), invStd: f32(12, 1), ...inputs } as never,
      options as never,
      { dx: v.dx, dgamma: v.dweight.subarray(0, 6), dbeta: v.dbias.subarray(0, 6) } as never,
    );
  const inn = (inputs: Record<string, unknown>, options?: unknown): BadCall => (api, v) =>
    api.instanceNorm(
      { x: v.x, shape, runningMean: v.runningMean, runningVar: v.runningVar, ...inputs } as never,
      options as never,
      { y: v.y, mean: v.mean, invStd: v.invStd } as never,
    );
  const inb = (inputs: Record<string, unknown>, options?: unknown): BadCall => (api, v) =>
    api.instanceNormBackward(
      { dy: f32(n), x: v.x, shape, mean: f32(24, 0), invStd: f32(24, 1), ...inputs } as never,
      options as never,
      { dx: v.dx, dgamma: v.dweight.subarray(0, 6), dbeta: v.dbias.subarray(0, 6) } as never,
    );
  const T = TypeError;
  const R = RangeError;
  const table: [string, BadCall, ErrorKind, string | RegExp][] = [
    // GroupNorm's groups
    ['groupNorm groups 4 not dividing C = 6', gn({ groups: 4 }), R, /groups must divide the channel count 6/],
    ['groupNorm groups 0', gn({ groups: 0 }), R, 'groups'],
    ['groupNorm groups 1.5', gn({ groups: 1.5 }), R, 'groups'],
    ['groupNorm groups -2', gn({ groups: -2 }), R, 'groups'],
    ["groupNorm groups '2'", gn({ groups: '2' }), T, 'groups'],
    ['groupNorm groups missing', gn({ groups: undefined }), T, 'groups'],
    ['groupNorm groups NaN', gn({ groups: NaN }), R, 'groups'],
    ['groupNormBackward groups 4', gnb({ groups: 4 }), R, 'groups'],
    ['groupNorm channels-last: groups 3 not dividing C = 5', gn({}, { layout: 'channels-last' }), R, 'groups'],
    // normalizedShape
    ['layerNorm normalizedShape [6] not the end of [4, 6, 5]', ln({ normalizedShape: [6] }), R, 'normalizedShape'],
    ['layerNorm normalizedShape [4, 6] not a suffix', ln({ normalizedShape: [4, 6] }), R, 'normalizedShape'],
    ['layerNorm normalizedShape longer than shape', ln({ normalizedShape: [1, 4, 6, 5] }), R, 'normalizedShape'],
    ['layerNorm normalizedShape empty', ln({ normalizedShape: [] }), R, 'normalizedShape'],
    ['layerNorm normalizedShape not an array', ln({ normalizedShape: 5 }), T, 'normalizedShape'],
    ['rmsNorm normalizedShape [4] not a suffix', rn({ normalizedShape: [4] }), R, 'normalizedShape'],
    ['layerNormBackward normalizedShape [6]', lnb({ normalizedShape: [6] }), R, 'normalizedShape'],
    ['rmsNormBackward normalizedShape [6, 4]', rnb({ normalizedShape: [6, 4] }), R, 'normalizedShape'],
    // lengths of weight / gamma / bias / beta / statistics
    ['layerNorm weight of length 5 (D = 30)', ln({ weight: f32(5) }), R, 'weight'],
    ['layerNorm bias of length 31', ln({ bias: f32(31) }), R, 'bias'],
    ['rmsNorm weight of length 6 (D = 5)', rn({ weight: f32(6) }), R, 'weight'],
    ['layerNormBackward weight of length 29', lnb({ weight: f32(29) }), R, 'weight'],
    ['layerNormBackward mean of length 5', lnb({ mean: f32(5) }), R, 'mean'],
    ['rmsNormBackward invRms of length 4', rnb({ invRms: f32(4) }), R, 'invRms'],
    ['groupNorm gamma of length 3 (per group, not per channel)', gn({ gamma: f32(3) }), R, 'gamma'],
    ['groupNorm beta of length 7', gn({ beta: f32(7) }), R, 'beta'],
    ['groupNormBackward invStd of length 6', gnb({ invStd: f32(6) }), R, 'invStd'],
    ['instanceNorm gamma of length 5', inn({ gamma: f32(5) }), R, 'gamma'],
    ['instanceNorm runningVar of length 5', inn({ runningVar: f32(5) }), R, 'runningVar'],
    ['instanceNormBackward mean of length 6', inb({ mean: f32(6) }), R, 'mean'],
    ['x of the wrong length', ln({ x: f32(n - 1) }), R, 'x'],
    ['out.y of the wrong length', (api, v) => api.layerNorm({ x: v.x, shape, normalizedShape: [5] }, {}, { y: v.y.subarray(1), mean: v.mean }), R, 'out.y'],
    // dtype mixes
    ['layerNorm weight Float64Array with x Float32Array', ln({ weight: new Float64Array(30) }), T, 'weight'],
    ['rmsNorm weight Float64Array', rn({ weight: new Float64Array(5) }), T, 'weight'],
    ['groupNorm beta Float64Array', gn({ beta: new Float64Array(6) }), T, 'beta'],
    ['instanceNorm runningMean Float64Array', inn({ runningMean: new Float64Array(6) }), T, 'runningMean'],
    ['layerNormBackward dy Float64Array', lnb({ dy: new Float64Array(n) }), T, 'dy'],
    ['rmsNormBackward invRms Float64Array', rnb({ invRms: new Float64Array(24) }), T, 'invRms'],
    ['groupNormBackward mean Float64Array', gnb({ mean: new Float64Array(12) }), T, 'mean'],
    ['instanceNormBackward gamma Float64Array', inb({ gamma: new Float64Array(6) }), T, 'gamma'],
    ['out.mean Float64Array for Float32Array x', (api, v) => api.groupNorm({ x: v.x, shape, groups: 3 }, {}, { y: v.y, mean: new Float64Array(12) as never }), T, 'out.mean'],
    ['x an Int32Array', gn({ x: new Int32Array(n) }), T, 'x'],
    // the forward y under ReLU
    ['layerNormBackward relu without y', lnb({}, { activation: 'relu' }), T, 'y (the forward output) is required'],
    ['rmsNormBackward relu without y', rnb({}, { activation: 'relu' }), T, 'y (the forward output) is required'],
    ['groupNormBackward relu without y', gnb({}, { activation: 'relu' }), T, 'y (the forward output) is required'],
    ['instanceNormBackward relu without y', inb({}, { activation: 'relu' }), T, 'y (the forward output) is required'],
    ['layerNormBackward y without relu', lnb({ y: f32(n) }), R, 'y'],
    ['groupNormBackward relu with y of the wrong length', gnb({ y: f32(n - 1) }, { activation: 'relu' }), R, 'y'],
    // InstanceNorm's running statistics
    ['instanceNorm runningMean without runningVar', inn({ runningVar: undefined }), T, 'runningMean and runningVar must be given together'],
    ['instanceNorm runningVar without runningMean', inn({ runningMean: null }), T, 'runningMean'],
    ['instanceNorm useInputStats false without running statistics', inn({ runningMean: undefined, runningVar: undefined }, { useInputStats: false }), T, 'runningMean'],
    ['instanceNorm one spatial position in training ([4, 6])', inn({ x: f32(24), shape: [4, 6] }), R, 'spatial position'],
    ['instanceNorm one spatial position in training ([4, 6, 1, 1])', inn({ x: f32(24), shape: [4, 6, 1, 1] }), R, 'x must have more than 1'],
    ['instanceNorm numBatchesTracked -1', inn({ numBatchesTracked: -1 }), R, 'numBatchesTracked'],
    ['instanceNorm momentum 2', inn({}, { momentum: 2 }), R, 'momentum'],
    // options
    ['layerNorm options.epsilon', ln({}, { epsilon: 1e-3 }), R, /options\.epsilon is not an option of layerNorm.*did you mean eps\?/],
    ['rmsNorm options.activaton', rn({}, { activaton: 'relu' }), R, /did you mean activation\?/],
    ['groupNorm options.layot', gn({}, { layot: 'channels-last' }), R, /options\.layot is not an option of groupNorm.*did you mean layout\?/],
    ['groupNorm options.groups (an input, not an option)', gn({}, { groups: 3 }), R, 'options.groups is not an option'],
    ['instanceNorm options.useInputStat', inn({}, { useInputStat: false }), R, /did you mean useInputStats\?/],
    ['instanceNorm options.momentun', inn({}, { momentun: 0.5 }), R, /did you mean momentum\?/],
    ['instanceNormBackward options.trainig', inb({}, { trainig: false }), R, /instanceNormBackward.*did you mean training\?/],
    ['layerNormBackward options.activation gelu', lnb({}, { activation: 'gelu' }), R, 'activation'],
    ['rmsNorm eps 0', rn({}, { eps: 0 }), R, 'eps'],
    ['groupNorm eps negative', gn({}, { eps: -1 }), R, 'eps'],
    ['instanceNorm useInputStats not a boolean', inn({}, { useInputStats: 'no' }), T, 'useInputStats'],
    ['layerNorm options not an object', ln({}, 3), T, 'options'],
    ['layerNorm inputs null', (api) => api.layerNorm(null as never), T, 'inputs'],
    // outputs overlapping inputs (only out.y = x and out.dx = dy exactly are allowed)
    ['layerNorm out.mean over weight', (api, v) => api.layerNorm({ x: v.x, shape, normalizedShape: [5], weight: v.mean.subarray(0, 5) }, {}, { y: v.y, mean: v.mean }), R, 'out.mean'],
    ['groupNormBackward out.dx over x', (api, v) => api.groupNormBackward({ dy: f32(n), x: v.x, shape, groups: 3, mean: f32(12, 0), invStd: f32(12, 1) }, {}, { dx: v.x, dgamma: v.dweight.subarray(0, 6) }), R, 'out.dx'],
    ['instanceNorm out.mean overlapping runningMean', (api, v) => api.instanceNorm({ x: v.x, shape, runningMean: v.mean.subarray(6, 12), runningVar: v.runningVar }, {}, { y: v.y, mean: v.mean }), R, 'out.mean'],
  ];
  const asyncTable: [string, (api: SimdnormApi, v: Victims) => Promise<unknown>, ErrorKind, string | RegExp][] = [
    ['layerNormAsync normalizedShape [6]', (api, v) => api.layerNormAsync({ x: v.x, shape, normalizedShape: [6] }, {}, { y: v.y }), R, 'normalizedShape'],
    ['rmsNormAsync weight of length 4', (api, v) => api.rmsNormAsync({ x: v.x, shape, normalizedShape: [5], weight: f32(4) }, {}, { y: v.y }), R, 'weight'],
    ['groupNormAsync groups 4', (api, v) => api.groupNormAsync({ x: v.x, shape, groups: 4 }, {}, { y: v.y }), R, 'groups'],
    ['instanceNormAsync runningMean alone', (api, v) => api.instanceNormAsync({ x: v.x, shape, runningMean: v.runningMean }, {}, { y: v.y }), T, 'runningMean'],
    ['instanceNormBackwardAsync relu without y', (api, v) => api.instanceNormBackwardAsync({ dy: f32(n), x: v.x, shape, mean: f32(24, 0), invStd: f32(24, 1) }, { activation: 'relu' }, { dx: v.dx }), T, 'y'],
    ['groupNormBackwardAsync gamma Float64Array', (api, v) => api.groupNormBackwardAsync({ dy: f32(n), x: v.x, shape, groups: 3, mean: f32(12, 0), invStd: f32(12, 1), gamma: new Float64Array(6) as never }, {}, { dx: v.dx }), T, 'gamma'],
  ];
  const unchanged = (what: string, v: Victims, before: [string, FloatArray][]) => {
    for (const [k, a] of before) {
      const now = v[k as keyof Victims];
      for (let i = 0; i < a.length; i++) {
        if (!Object.is(now[i], a[i])) fail(`${what}: ${k}[${i}] was written (${a[i]} -> ${now[i]}) by a call that threw`);
      }
    }
  };
  const snapshot = (v: Victims) => Object.entries(v).map(([k, a]) => [k, (a as FloatArray).slice()] as [string, FloatArray]);
  return [
    {
      name: `bad input: ${table.length} calls throw the documented typed error naming the argument, and write nothing`,
      run(api) {
        for (const [what, call, kind, mentions] of table) {
          const v = victims();
          const before = snapshot(v);
          let threw = false;
          try {
            call(api, v);
          } catch (e) {
            threw = true;
            checkError(what, e, kind, mentions);
          }
          if (!threw) fail(`${what}: did not throw (expected ${kind.name} naming ${mentions})`);
          unchanged(what, v, before);
        }
      },
    },
    {
      name: `bad input, async: ${asyncTable.length} calls reject with the typed error, and write nothing`,
      async run(api) {
        for (const [what, call, kind, mentions] of asyncTable) {
          const v = victims();
          const before = snapshot(v);
          let threw = false;
          try {
            await call(api, v);
          } catch (e) {
            threw = true;
            checkError(what, e, kind, mentions);
          }
          if (!threw) fail(`${what}: did not reject (expected ${kind.name} naming ${mentions})`);
          unchanged(what, v, before);
        }
      },
    },
    {
      name: 'accepted edge inputs: groups = C, groups = 1, normalizedShape = shape, InstanceNorm eval with one spatial position',
      run(api) {
        const x = f32(n);
        check(api.groupNorm({ x, shape, groups: 6 }).mean.length === 24, 'groups = C');
        check(api.groupNorm({ x, shape, groups: 1 }).mean.length === 4, 'groups = 1');
        check(api.layerNorm({ x, shape, normalizedShape: shape }).mean.length === 1, 'normalizedShape = shape');
        const r = api.instanceNorm({ x: f32(24), shape: [4, 6], runningMean: f32(6, 0), runningVar: f32(6, 1) }, { useInputStats: false });
        check(r.updated === false && r.y.length === 24, 'eval with S = 1');
      },
    },
  ];
}

/** Every case of the family, in a fixed order. */
export function familyCases(): FamilyCase[] {
  return [...matrixCases(), ...optionCases(), ...numericsCases(), ...constantCases(), ...badInputCases()];
}

// ---------------------------------------------------------------------------------------------
// The oracle's backward against central finite differences of its forward (float64)

export interface GradientCheck {
  name: string;
  /** throws when an analytic gradient differs from the finite difference */
  run(): void;
}

/**
 * Central differences of L = Σ dy·y: ∂L/∂v ≈ (L(v + h) − L(v − h))/2h for every entry of each
 * parameter, against the analytic gradient; relative error ≤ 1e-6 of the gradient's RMS.
 */
function compareGradient(what: string, loss: (v: Float64Array) => number, at: Float64Array, analytic: ArrayLike<number>): void {
  const numeric = new Float64Array(at.length);
  for (let i = 0; i < at.length; i++) {
    const h = 1e-5 * Math.max(1, Math.abs(at[i]));
    const plus = at.slice();
    plus[i] += h;
    const minus = at.slice();
    minus[i] -= h;
    numeric[i] = (loss(plus) - loss(minus)) / (plus[i] - minus[i]);
  }
  const m = worstMismatch(analytic, numeric, 1e-6, rms(numeric) + 1e-12);
  if (m) fail(formatMismatch(`${what} (analytic vs central difference)`, m));
}

const dot = (a: ArrayLike<number>, b: ArrayLike<number>): number => {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i] * b[i];
  return s;
};

export function gradientChecks(): GradientCheck[] {
  const checks: GradientCheck[] = [];
  const r = (n: number, seed: number, scale = 1, offset = 0) => new Random(seed).fill(new Float64Array(n), scale, offset);
  for (const relu of [false, true]) {
    const tag = relu ? ' relu' : '';
    checks.push({
      name: `layerNorm [3, 2, 4] over [2, 4]${tag}: dx, dweight, dbias`,
      run() {
        const shape = [3, 2, 4];
        const normalizedShape = [2, 4];
        const x = r(24, 1, 2, 1), dy = r(24, 2), weight = r(8, 3, 0.5, 1), bias = r(8, 4);
        const o = { eps: 1e-3, relu };
        const L = (xv: Float64Array, w: Float64Array, b: Float64Array) => dot(dy, ref.layerNormRef({ x: xv, shape, normalizedShape, weight: w, bias: b }, o).y);
        const f = ref.layerNormRef({ x, shape, normalizedShape, weight, bias }, o);
        const g = ref.layerNormBackwardRef({ dy, x, shape, normalizedShape, mean: f.mean, invStd: f.invStd, weight, y: f.y }, { relu });
        compareGradient('layerNorm dx', (v) => L(v, weight, bias), x, g.dx);
        compareGradient('layerNorm dweight', (v) => L(x, v, bias), weight, g.dweight);
        compareGradient('layerNorm dbias', (v) => L(x, weight, v), bias, g.dbias);
      },
    });
    checks.push({
      name: `rmsNorm [4, 5]${tag}: dx, dweight`,
      run() {
        const shape = [4, 5];
        const normalizedShape = [5];
        const x = r(20, 5, 2, 0.5), dy = r(20, 6), weight = r(5, 7, 0.5, 1);
        const o = { eps: 1e-3, relu };
        const L = (xv: Float64Array, w: Float64Array) => dot(dy, ref.rmsNormRef({ x: xv, shape, normalizedShape, weight: w }, o).y);
        const f = ref.rmsNormRef({ x, shape, normalizedShape, weight }, o);
        const g = ref.rmsNormBackwardRef({ dy, x, shape, normalizedShape, invRms: f.invRms, weight, y: f.y }, { relu });
        compareGradient('rmsNorm dx', (v) => L(v, weight), x, g.dx);
        compareGradient('rmsNorm dweight', (v) => L(x, v), weight, g.dweight);
      },
    });
    for (const layout of LAYOUTS) {
      checks.push({
        name: `groupNorm ${layout} [2, 6, 3] groups 3${tag}: dx, dgamma, dbeta`,
        run() {
          const shape = inLayout([2, 6, 3], layout);
          const x = r(36, 8, 2, 1), dy = r(36, 9), gamma = r(6, 10, 0.5, 1), beta = r(6, 11);
          const o = { eps: 1e-3, relu, layout };
          const L = (xv: Float64Array, gm: Float64Array, bt: Float64Array) => dot(dy, ref.groupNormRef({ x: xv, shape, groups: 3, gamma: gm, beta: bt }, o).y);
          const f = ref.groupNormRef({ x, shape, groups: 3, gamma, beta }, o);
          const g = ref.groupNormBackwardRef({ dy, x, shape, groups: 3, mean: f.mean, invStd: f.invStd, gamma, y: f.y }, { layout, relu });
          compareGradient('groupNorm dx', (v) => L(v, gamma, beta), x, g.dx);
          compareGradient('groupNorm dgamma', (v) => L(x, v, beta), gamma, g.dgamma);
          compareGradient('groupNorm dbeta', (v) => L(x, gamma, v), beta, g.dbeta);
        },
      });
      for (const training of [true, false]) {
        checks.push({
          name: `instanceNorm ${layout} [2, 3, 4] ${training ? 'training' : 'eval (running statistics, training false)'}${tag}: dx, dgamma, dbeta`,
          run() {
            const shape = inLayout([2, 3, 4], layout);
            const x = r(24, 12, 2, 1), dy = r(24, 13), gamma = r(3, 14, 0.5, 1), beta = r(3, 15);
            const runningMean = r(3, 16), runningVar = r(3, 17).map((v) => 0.5 + Math.abs(v));
            const o = { eps: 1e-3, relu, layout, useInputStats: training };
            const stats = training ? {} : { runningMean, runningVar };
            const L = (xv: Float64Array, gm: Float64Array, bt: Float64Array) => dot(dy, ref.instanceNormRef({ x: xv, shape, gamma: gm, beta: bt, ...stats }, o).y);
            const f = ref.instanceNormRef({ x, shape, gamma, beta, ...stats }, o);
            const g = ref.instanceNormBackwardRef({ dy, x, shape, mean: f.mean, invStd: f.invStd, gamma, y: f.y }, { layout, relu, training });
            compareGradient('instanceNorm dx', (v) => L(v, gamma, beta), x, g.dx);
            compareGradient('instanceNorm dgamma', (v) => L(x, v, beta), gamma, g.dgamma);
            compareGradient('instanceNorm dbeta', (v) => L(x, gamma, v), beta, g.dbeta);
          },
        });
      }
    }
  }
  return checks;
}
