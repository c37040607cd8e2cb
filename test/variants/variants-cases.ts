/**
 * The BatchNorm variants' conformance cases (Batch Renormalization, ghost BatchNorm,
 * recomputeRunningStats), written once and run on every backend by test/variants/variants.test.ts.
 * Expected values come from the float64 oracle (lib/reference/variants.ts) on float64 copies of the
 * very arrays the backend got; tolerances are README "Numerics" (lib/compare.ts).
 */
import { formatMismatch, rms, toleranceFor, worstMismatch } from '../../lib/compare.js';
import { Random } from '../../lib/random.js';
import * as ref from '../../lib/reference/variants.js';
import type * as Simdnorm from '../../lib/exports.js';
import { residualCases } from './residual-cases.js';

type Api = typeof Simdnorm;
type FloatArray = Float32Array | Float64Array;
type DType = 'float32' | 'float64';
type Layout = 'channels-first' | 'channels-last';

export interface VariantCase {
  name: string;
  run(api: Api): void | Promise<void>;
}

function fail(message: string): never {
  throw new Error(message);
}

function expectClose(name: string, got: ArrayLike<number>, expected: ArrayLike<number>, minScale = 0): void {
  const m = worstMismatch(got, expected, toleranceFor(got as FloatArray), minScale);
  if (m) fail(formatMismatch(name, m));
}

function expectBitwise(name: string, got: ArrayLike<number>, expected: ArrayLike<number>): void {
  if (got.length !== expected.length) fail(`${name}: length ${got.length}, expected ${expected.length}`);
  for (let i = 0; i < got.length; i++) {
    if (!Object.is(got[i], expected[i])) fail(`${name}[${i}] = ${got[i]}, expected exactly ${expected[i]}`);
  }
}

function expectThrows(what: string, fn: () => unknown, kind: typeof TypeError | typeof RangeError, mentions: string | RegExp): void {
  try {
    fn();
  } catch (e) {
    if (!(e instanceof kind)) fail(`${what}: threw ${(e as Error)?.name}: ${(e as Error)?.message}, expected ${kind.name}`);
    const ok = typeof mentions === 'string' ? e.message.includes(mentions) : mentions.test(e.message);
    if (!ok) fail(`${what}: message "${e.message}" does not name ${mentions}`);
    return;
  }
  fail(`${what}: did not throw`);
}

async function expectRejects(what: string, fn: () => Promise<unknown>, kind: typeof TypeError | typeof RangeError, mentions: string | RegExp): Promise<void> {
  try {
    await fn();
  } catch (e) {
    if (!(e instanceof kind)) fail(`${what}: threw ${(e as Error)?.name}: ${(e as Error)?.message}, expected ${kind.name}`);
    const ok = typeof mentions === 'string' ? e.message.includes(mentions) : mentions.test(e.message);
    if (!ok) fail(`${what}: message "${e.message}" does not name ${mentions}`);
    return;
  }
  fail(`${what}: did not reject`);
}

const make = (dtype: DType, n: number): FloatArray => (dtype === 'float32' ? new Float32Array(n) : new Float64Array(n));
const f64 = (a: ArrayLike<number>): Float64Array => Float64Array.from(a);
const product = (dims: readonly number[]): number => dims.reduce((a, b) => a * b, 1);
function random(dtype: DType, n: number, seed: number, scale = 1, offset = 0): FloatArray {
  return new Random(seed).fill(make(dtype, n), scale, offset);
}
function positive(dtype: DType, n: number, seed: number, lo = 0.3, hi = 3): FloatArray {
  const r = new Random(seed);
  const a = make(dtype, n);
  for (let i = 0; i < n; i++) a[i] = lo + (hi - lo) * r.next();
  return a;
}
/** shape [N, C, ...spatial] in the layout's order */
function inLayout(dims: readonly number[], layout: Layout): number[] {
  return layout === 'channels-first' ? [...dims] : [dims[0], ...dims.slice(2), dims[1]];
}
function geometry(dims: readonly number[], layout: Layout) {
  return ref.geometryOf(dims, layout);
}
/** √M·rms(terms) per README "Numerics" for a sum of M terms, over all channels */
function sumScale(terms: ArrayLike<number>, M: number): number {
  return Math.sqrt(M) * rms(terms);
}

// ---------------------------------------------------------------------------------------------
// Batch Renormalization

interface RenormSpec {
  dtype: DType;
  layout: Layout;
  dims: number[]; // [N, C, ...spatial]
  affine: boolean;
  relu: boolean;
  rmax: number;
  dmax: number;
  momentum: number | null;
  offset?: number;
  async?: boolean;
  seed: number;
}

function renormCase(s: RenormSpec): VariantCase {
  const shape = inLayout(s.dims, s.layout);
  const name = `renorm ${s.dtype} ${s.layout} [${shape}] rmax ${s.rmax} dmax ${s.dmax}${s.affine ? '' : ' no-affine'}${s.relu ? ' relu' : ''}${s.momentum === null ? ' momentum null' : ''}${s.offset ? ` offset ${s.offset}` : ''}${s.async ? ' async' : ''}`;
  return {
    name,
    async run(api) {
      const C = s.dims[1];
      const n = product(shape);
      const offset = s.offset ?? 0;
      const x = random(s.dtype, n, s.seed, 1.7, offset);
      const gamma = s.affine ? random(s.dtype, C, s.seed + 1, 0.8, 1) : null;
      const beta = s.affine ? random(s.dtype, C, s.seed + 2, 0.5) : null;
      const runningMean = random(s.dtype, C, s.seed + 3, 0.6, offset);
      const runningVar = positive(s.dtype, C, s.seed + 4);
      const before = { runningMean: f64(runningMean), runningVar: f64(runningVar) };
      const options = { layout: s.layout, renorm: { rmax: s.rmax, dmax: s.dmax }, momentum: s.momentum, activation: s.relu ? 'relu' : 'none' } as const;
      const inputs = { x, shape, gamma, beta, runningMean, runningVar, numBatchesTracked: 3 };
      const t = s.async ? await api.batchNormTrainAsync(inputs, options) : api.batchNormTrain(inputs, options);
      const want = ref.renormTrainRef(
        { x: f64(x), dims: shape, gamma: gamma && f64(gamma), beta: beta && f64(beta), ...before },
        { layout: s.layout, eps: 1e-5, rmax: s.rmax, dmax: s.dmax, momentum: s.momentum, numBatchesTracked: 3, unbiased: true, relu: s.relu },
      );
      if (!t.r || !t.d) fail('the result has no r and d');
      expectClose('r', t.r, want.r);
      expectClose('d', t.d, want.d, 1);
      expectClose('y', t.y, want.y);
      expectClose('mean', t.mean, want.mean, rms(x) / Math.sqrt(n / C));
      expectClose('invStd', t.invStd, want.invStd);
      expectClose('runningMean', runningMean, want.runningMean);
      expectClose('runningVar', runningVar, want.runningVar);
      if (t.numBatchesTracked !== 4 || !t.updated) fail(`numBatchesTracked ${t.numBatchesTracked}, updated ${t.updated}`);

      // Backward with the backend's forward statistics, r and d.
      const dy = random(s.dtype, n, s.seed + 5);
      const bInputs = { dy, x, shape, mean: t.mean, invStd: t.invStd, gamma, r: t.r, d: t.d, y: s.relu ? t.y : null };
      const bOptions = { layout: s.layout, activation: options.activation };
      const b = s.async ? await api.batchNormBackwardAsync(bInputs, bOptions) : api.batchNormBackward(bInputs, bOptions);
      const masked = f64(dy).map((v, i) => (s.relu && !(t.y[i] > 0) ? 0 : v));
      const wantB = ref.renormBackwardRef(
        { dy: masked, x: f64(x), dims: shape, mean: f64(t.mean), invStd: f64(t.invStd), gamma: gamma && f64(gamma), r: f64(t.r), d: f64(t.d) },
        s.layout,
      );
      const g = geometry(shape, s.layout);
      const M = g.outer * g.inner;
      let dxScale = 0;
      for (let c = 0; c < C; c++) dxScale = Math.max(dxScale, Math.abs((gamma ? gamma[c] : 1) * t.r[c] * t.invStd[c]));
      expectClose('dx', b.dx, wantB.dx, dxScale * rms(masked));
      expectClose('dbeta', b.dbeta, wantB.dbeta, sumScale(masked, M));
      expectClose('dgamma', b.dgamma, wantB.dgamma, sumScale(masked, M) * (Math.max(...Array.from(t.r)) + Math.max(...Array.from(t.d, Math.abs))));
    },
  };
}

/** rmax = 1, dmax = 0 is BatchNorm: bit for bit, forward, running update and backward. */
function renormIdentityCase(dtype: DType, layout: Layout, affine: boolean): VariantCase {
  const shape = inLayout([5, 3, 4], layout);
  return {
    name: `renorm rmax 1 dmax 0 is BatchNorm bit for bit, ${dtype} ${layout}${affine ? '' : ' no-affine'}`,
    run(api) {
      const x = random(dtype, product(shape), 77, 2, 0.5);
      const gamma = affine ? random(dtype, 3, 78, 0.5, 1) : null;
      const beta = affine ? random(dtype, 3, 79) : null;
      const rm1 = random(dtype, 3, 80), rv1 = positive(dtype, 3, 81);
      const rm2 = rm1.slice(), rv2 = rv1.slice();
      const a = api.batchNormTrain({ x, shape, gamma, beta, runningMean: rm1, runningVar: rv1 }, { layout, renorm: { rmax: 1, dmax: 0 } });
      const b = api.batchNormTrain({ x, shape, gamma, beta, runningMean: rm2, runningVar: rv2 }, { layout });
      expectBitwise('y', a.y, b.y);
      expectBitwise('mean', a.mean, b.mean);
      expectBitwise('invStd', a.invStd, b.invStd);
      expectBitwise('runningMean', rm1, rm2);
      expectBitwise('runningVar', rv1, rv2);
      expectBitwise('r', a.r!, make(dtype, 3).fill(1));
      expectBitwise('d', a.d!.map(Math.abs), make(dtype, 3));
      const dy = random(dtype, product(shape), 82);
      const ga = api.batchNormBackward({ dy, x, shape, mean: a.mean, invStd: a.invStd, gamma, r: a.r, d: a.d }, { layout });
      const gb = api.batchNormBackward({ dy, x, shape, mean: b.mean, invStd: b.invStd, gamma }, { layout });
      expectBitwise('dx', ga.dx, gb.dx);
      expectBitwise('dgamma', ga.dgamma, gb.dgamma);
      expectBitwise('dbeta', ga.dbeta, gb.dbeta);
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Ghost BatchNorm

interface GhostSpec {
  dtype: DType;
  layout: Layout;
  dims: number[];
  v: number;
  affine: boolean;
  relu: boolean;
  running: boolean;
  unbiased: boolean;
  async?: boolean;
  seed: number;
}

function ghostCase(s: GhostSpec): VariantCase {
  const shape = inLayout(s.dims, s.layout);
  const name = `ghost ${s.dtype} ${s.layout} [${shape}] virtualBatchSize ${s.v}${s.affine ? '' : ' no-affine'}${s.relu ? ' relu' : ''}${s.running ? '' : ' no running'}${s.unbiased ? '' : ' biased'}${s.async ? ' async' : ''}`;
  return {
    name,
    async run(api) {
      const C = s.dims[1];
      const N = s.dims[0];
      const chunks = N / s.v;
      const n = product(shape);
      const x = random(s.dtype, n, s.seed, 1.3, 0.7);
      const gamma = s.affine ? random(s.dtype, C, s.seed + 1, 0.8, 1) : null;
      const beta = s.affine ? random(s.dtype, C, s.seed + 2) : null;
      const runningMean = s.running ? random(s.dtype, C, s.seed + 3) : null;
      const runningVar = s.running ? positive(s.dtype, C, s.seed + 4) : null;
      const before = { runningMean: runningMean && f64(runningMean), runningVar: runningVar && f64(runningVar) };
      const options = { layout: s.layout, virtualBatchSize: s.v, activation: s.relu ? 'relu' : 'none', unbiasedRunningVar: s.unbiased } as const;
      const inputs = { x, shape, gamma, beta, runningMean, runningVar };
      const t = s.async ? await api.batchNormTrainAsync(inputs, options) : api.batchNormTrain(inputs, options);
      const want = ref.ghostTrainRef(
        { x: f64(x), dims: shape, gamma: gamma && f64(gamma), beta: beta && f64(beta), ...before },
        { layout: s.layout, eps: 1e-5, v: s.v, momentum: 0.9, unbiased: s.unbiased, relu: s.relu },
      );
      if (t.mean.length !== chunks * C) fail(`mean has length ${t.mean.length}, expected ${chunks * C}`);
      expectClose('y', t.y, want.y);
      expectClose('mean', t.mean, want.mean, rms(x) / 4);
      expectClose('invStd', t.invStd, want.invStd);
      if (s.running) {
        expectClose('runningMean', runningMean!, want.runningMean!);
        expectClose('runningVar', runningVar!, want.runningVar!);
      }
      if (t.updated !== s.running) fail(`updated ${t.updated}`);

      // Ghost BatchNorm is BatchNorm on each chunk (the same backend): y, mean, invStd.
      const per = n / chunks;
      for (let k = 0; k < chunks; k++) {
        const xk = x.slice(k * per, (k + 1) * per);
        const one = api.batchNormTrain({ x: xk, shape: [s.v, ...shape.slice(1)], gamma, beta }, { layout: s.layout, activation: options.activation });
        expectClose(`chunk ${k} y`, t.y.slice(k * per, (k + 1) * per), one.y);
        expectClose(`chunk ${k} mean`, t.mean.slice(k * C, (k + 1) * C), one.mean, rms(x) / 4);
        expectClose(`chunk ${k} invStd`, t.invStd.slice(k * C, (k + 1) * C), one.invStd);
      }

      const dy = random(s.dtype, n, s.seed + 5);
      const bInputs = { dy, x, shape, mean: t.mean, invStd: t.invStd, gamma, y: s.relu ? t.y : null };
      const bOptions = { layout: s.layout, activation: options.activation, virtualBatchSize: s.v };
      const b = s.async ? await api.batchNormBackwardAsync(bInputs, bOptions) : api.batchNormBackward(bInputs, bOptions);
      const masked = f64(dy).map((v, i) => (s.relu && !(t.y[i] > 0) ? 0 : v));
      const wantB = ref.ghostBackwardRef({ dy: masked, x: f64(x), dims: shape, mean: f64(t.mean), invStd: f64(t.invStd), gamma: gamma && f64(gamma) }, s.layout, s.v);
      let dxScale = 0;
      for (let k = 0; k < chunks * C; k++) dxScale = Math.max(dxScale, Math.abs((gamma ? gamma[k % C] : 1) * t.invStd[k]));
      const M = n / C;
      expectClose('dx', b.dx, wantB.dx, dxScale * rms(masked));
      expectClose('dbeta', b.dbeta, wantB.dbeta, sumScale(masked, M));
      expectClose('dgamma', b.dgamma, wantB.dgamma, sumScale(masked, M));
    },
  };
}

/** virtualBatchSize = N is plain BatchNorm, bit for bit. */
function ghostWholeBatchCase(dtype: DType, layout: Layout): VariantCase {
  const shape = inLayout([4, 3, 5], layout);
  return {
    name: `ghost virtualBatchSize = N is BatchNorm bit for bit, ${dtype} ${layout}`,
    run(api) {
      const x = random(dtype, product(shape), 90, 1, 2);
      const rm1 = random(dtype, 3, 91), rv1 = positive(dtype, 3, 92);
      const rm2 = rm1.slice(), rv2 = rv1.slice();
      const a = api.batchNormTrain({ x, shape, runningMean: rm1, runningVar: rv1 }, { layout, virtualBatchSize: 4 });
      const b = api.batchNormTrain({ x, shape, runningMean: rm2, runningVar: rv2 }, { layout });
      expectBitwise('y', a.y, b.y);
      expectBitwise('runningVar', rv1, rv2);
      expectBitwise('runningMean', rm1, rm2);
      const dy = random(dtype, product(shape), 93);
      const ga = api.batchNormBackward({ dy, x, shape, mean: a.mean, invStd: a.invStd }, { layout, virtualBatchSize: 4 });
      const gb = api.batchNormBackward({ dy, x, shape, mean: b.mean, invStd: b.invStd }, { layout });
      expectBitwise('dx', ga.dx, gb.dx);
      expectBitwise('dgamma', ga.dgamma, gb.dgamma);
    },
  };
}

// ---------------------------------------------------------------------------------------------
// recomputeRunningStats

function recomputeCase(dtype: DType, layout: Layout): VariantCase {
  return {
    name: `recomputeRunningStats ${dtype} ${layout}: exact = statistics of the concatenation whatever the split, cumulative = PyTorch's average`,
    async run(api) {
      const C = 3;
      const spatial = [2, 3];
      const sizes = [4, 1, 7, 2];
      const batches = sizes.map((N, k) => {
        const dims = inLayout([N, C, ...spatial], layout);
        return { x: random(dtype, product(dims), 300 + k, 1 + k / 2, 5 - k), shape: dims };
      });
      const plain = batches.map((b) => ({ x: f64(b.x), dims: b.shape }));
      const population = ref.populationStatsRef(plain, layout);
      const cumulative = ref.cumulativeStatsRef(plain, layout);
      // exact, over a sync iterable, with progress
      const target = { runningMean: make(dtype, C), runningVar: make(dtype, C).fill(1), numBatchesTracked: 9 };
      const progress: [number, number][] = [];
      const s = await api.recomputeRunningStats(target, batches, { mode: 'exact', layout, onProgress: (b, v) => progress.push([b, v]) });
      expectClose('exact mean', target.runningMean, population.mean, 1);
      expectClose('exact variance', target.runningVar, population.variance);
      if (s.values !== population.count || s.batches !== 4 || target.numBatchesTracked !== 4) fail(`summary ${JSON.stringify(s)}`);
      const perChannel = sizes.map((N) => N * 6);
      const seen = perChannel.map((_, k) => [k + 1, perChannel.slice(0, k + 1).reduce((a, b) => a + b, 0)]);
      if (JSON.stringify(progress) !== JSON.stringify(seen)) fail(`progress ${JSON.stringify(progress)}, expected ${JSON.stringify(seen)}`);
      // exact with another split of the same values (one batch of everything in channels-first order)
      if (layout === 'channels-first') {
        const whole = new Float64Array(population.count * C);
        let at = 0;
        for (const b of batches) whole.set(b.x, at), (at += b.x.length);
        const t2 = { runningMean: make(dtype, C), runningVar: make(dtype, C) };
        await api.recomputeRunningStats(t2, [{ x: dtype === 'float32' ? Float32Array.from(whole) : whole, shape: [sizes.reduce((a, b) => a + b), C, ...spatial] }], { mode: 'exact' });
        expectClose('exact mean (one batch)', t2.runningMean, population.mean, 1);
        expectClose('exact variance (one batch)', t2.runningVar, population.variance);
      }
      // cumulative over an async generator, into a layer
      const layer = new api.BatchNorm(C, { dtype, layout });
      layer.runningMean!.fill(42);
      async function* stream() {
        for (const b of batches) yield b;
      }
      const c = await api.recomputeRunningStats(layer as never, stream());
      expectClose('cumulative mean', layer.runningMean!, cumulative.mean, 1);
      expectClose('cumulative variance', layer.runningVar!, cumulative.variance);
      if (layer.numBatchesTracked !== 4 || c.mode !== 'cumulative') fail(`layer numBatchesTracked ${layer.numBatchesTracked}`);
      // bare arrays with options.shape, sync
      const same = batches.filter((b) => b.shape[0] === 4);
      const t3 = { runningMean: make(dtype, C), runningVar: make(dtype, C) };
      api.recomputeRunningStatsSync(t3, same.map((b) => b.x), { shape: same[0].shape, layout, mode: 'exact' });
      const p3 = ref.populationStatsRef(same.map((b) => ({ x: f64(b.x), dims: b.shape })), layout);
      expectClose('bare arrays mean', t3.runningMean, p3.mean, 1);
      // a bad batch in the middle: typed error naming it, the target untouched
      const t4 = { runningMean: make(dtype, C).fill(7), runningVar: make(dtype, C).fill(8) };
      const bad = [batches[0], { x: batches[1].x, shape: inLayout([2, C, ...spatial], layout) }, batches[2]];
      await expectRejects('bad batch', () => api.recomputeRunningStats(t4, bad, { layout }), RangeError, /batch 1: x must have length/);
      expectBitwise('untouched runningMean', t4.runningMean, make(dtype, C).fill(7));
      const wrongC = [{ x: make(dtype, 8), shape: inLayout([2, 4], layout) }];
      await expectRejects('channels', () => api.recomputeRunningStats(t4, wrongC, { layout }), RangeError, /batch 0: shape \[2, 4\] must have 3 channels/);
      await expectRejects('mode', () => api.recomputeRunningStats(t4, batches, { mode: 'population' as never }), RangeError, /options\.mode/);
      await expectRejects('batches', () => api.recomputeRunningStats(t4, 3 as never), TypeError, /batches must be an iterable/);
      const other = dtype === 'float32' ? new Float64Array(18) : new Float32Array(18);
      await expectRejects('dtype', () => api.recomputeRunningStats(t4, [{ x: other, shape: inLayout([1, C, 2, 3], layout) }], { layout }), TypeError, /batch 0: x must be a/);
      expectBitwise('untouched runningVar', t4.runningVar, make(dtype, C).fill(8));
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Bad inputs (typed errors naming the argument; nothing written)

function badInputsCase(dtype: DType): VariantCase {
  return {
    name: `bad inputs ${dtype}: typed errors naming the argument, nothing written`,
    run(api) {
      const shape = [4, 3, 2];
      const x = random(dtype, 24, 5);
      const runningMean = make(dtype, 3).fill(0.25);
      const runningVar = make(dtype, 3).fill(2);
      const y = make(dtype, 24).fill(-7);
      const mean = make(dtype, 3).fill(-7);
      const train = (options: object, inputs: object = {}) => () =>
        api.batchNormTrain({ x, shape, runningMean, runningVar, ...inputs } as never, options as never, { y, mean });
      expectThrows('rmax < 1', train({ renorm: { rmax: 0.5, dmax: 1 } }), RangeError, 'options.renorm.rmax');
      expectThrows('rmax NaN', train({ renorm: { rmax: NaN, dmax: 1 } }), RangeError, 'options.renorm.rmax');
      expectThrows('dmax < 0', train({ renorm: { rmax: 2, dmax: -1 } }), RangeError, 'options.renorm.dmax');
      expectThrows('dmax missing', train({ renorm: { rmax: 2 } }), TypeError, 'options.renorm.dmax');
      expectThrows('renorm not an object', train({ renorm: 3 }), TypeError, 'options.renorm');
      expectThrows('renorm without running stats', train({ renorm: { rmax: 2, dmax: 1 } }, { runningMean: null, runningVar: null }), TypeError, 'runningMean');
      expectThrows('renorm and ghost', train({ renorm: { rmax: 2, dmax: 1 }, virtualBatchSize: 2 }), RangeError, 'virtualBatchSize');
      expectThrows('v not dividing N', train({ virtualBatchSize: 3 }), RangeError, /options\.virtualBatchSize must divide the batch size N = 4/);
      expectThrows('v = 0', train({ virtualBatchSize: 0 }), RangeError, 'options.virtualBatchSize');
      expectThrows('v not integer', train({ virtualBatchSize: 1.5 }), RangeError, 'options.virtualBatchSize');
      expectThrows('v string', train({ virtualBatchSize: '2' }), TypeError, 'options.virtualBatchSize');
      expectThrows('one value per chunk', () => api.batchNormTrain({ x: x.subarray(0, 12), shape: [4, 3], runningMean, runningVar }, { virtualBatchSize: 1 }, { y: y.subarray(0, 12) }), RangeError, 'virtual batch');
      expectThrows('out.mean wrong length with ghost', train({ virtualBatchSize: 2 }), RangeError, /out\.mean must have length 6/);
      expectThrows('did you mean virtualBatchSize', train({ virtualBatch: 2 }), RangeError, /did you mean virtualBatchSize\?/);
      expectThrows('did you mean renorm', train({ renrom: { rmax: 2, dmax: 1 } }), RangeError, /did you mean renorm\?/);
      expectThrows('ignored option still checked', () => api.moments({ x, shape }, { renorm: { rmax: 0, dmax: 0 } } as never), RangeError, 'options.renorm.rmax');
      expectBitwise('runningMean untouched', runningMean, make(dtype, 3).fill(0.25));
      expectBitwise('runningVar untouched', runningVar, make(dtype, 3).fill(2));
      expectBitwise('out.y untouched', y, make(dtype, 24).fill(-7));
      expectBitwise('out.mean untouched', mean, make(dtype, 3).fill(-7));
      const t = api.batchNormTrain({ x, shape, runningMean: runningMean.slice(), runningVar: runningVar.slice() }, { renorm: { rmax: 2, dmax: 1 } });
      const dy = random(dtype, 24, 6);
      const dx = make(dtype, 24).fill(-7);
      const back = (inputs: object, options: object = {}) => () =>
        api.batchNormBackward({ dy, x, shape, mean: t.mean, invStd: t.invStd, ...inputs } as never, options as never, { dx });
      expectThrows('r without d', back({ r: t.r }), TypeError, /r and d/);
      expectThrows('r wrong length', back({ r: t.r!.subarray(0, 2), d: t.d }), RangeError, /^r must have length 3/);
      expectThrows('d wrong type', back({ r: t.r, d: [0, 0, 0] }), TypeError, /^d must be/);
      expectThrows('ghost mean length', back({}, { virtualBatchSize: 2 }), RangeError, /^mean must have length 6/);
      expectThrows('ghost v not dividing', back({}, { virtualBatchSize: 3 }), RangeError, 'options.virtualBatchSize');
      expectBitwise('out.dx untouched', dx, make(dtype, 24).fill(-7));
    },
  };
}

// ---------------------------------------------------------------------------------------------
// The layer

function layerCase(dtype: DType, layout: Layout): VariantCase {
  return {
    name: `BatchNorm layer ${dtype} ${layout}: renorm schedule and virtualBatchSize as the functional calls`,
    run(api) {
      const shape = inLayout([4, 3, 5], layout);
      const x = random(dtype, 60, 400, 1.5, 0.3);
      const dy = random(dtype, 60, 401);
      const steps: number[] = [];
      const bn = new api.BatchNorm(3, { dtype, layout, renorm: (step: number) => (steps.push(step), { rmax: 1 + step, dmax: step }) } as never);
      const rm = make(dtype, 3), rv = make(dtype, 3).fill(1);
      for (let step = 0; step < 3; step++) {
        const y = bn.forward(x as never, shape) as FloatArray;
        const f = api.batchNormTrain({ x, shape, gamma: bn.gamma, beta: bn.beta, runningMean: rm, runningVar: rv, numBatchesTracked: step }, { layout, renorm: { rmax: 1 + step, dmax: step } });
        expectBitwise(`step ${step} y`, y, f.y);
        expectBitwise(`step ${step} r`, (bn as unknown as { r: FloatArray }).r, f.r!);
        expectBitwise(`step ${step} runningVar`, bn.runningVar!, rv);
        const dx = bn.backward(dy as never) as FloatArray;
        const b = api.batchNormBackward({ dy, x, shape, mean: f.mean, invStd: f.invStd, gamma: bn.gamma, r: f.r, d: f.d }, { layout });
        expectBitwise(`step ${step} dx`, dx, b.dx);
        expectBitwise(`step ${step} dgamma`, bn.dgamma!, b.dgamma);
      }
      if (steps.join() !== '0,1,2') fail(`schedule steps ${steps}`);
      bn.eval();
      bn.forward(x as never, shape); // eval: running statistics, no schedule call
      if (steps.length !== 3) fail('the schedule ran in eval mode');

      const ghost = new api.BatchNorm(3, { dtype, layout, virtualBatchSize: 2 } as never);
      const y = ghost.forward(x as never, shape) as FloatArray;
      const grm = make(dtype, 3), grv = make(dtype, 3).fill(1);
      const f = api.batchNormTrain({ x, shape, gamma: ghost.gamma, beta: ghost.beta, runningMean: grm, runningVar: grv }, { layout, virtualBatchSize: 2 });
      expectBitwise('ghost y', y, f.y);
      expectBitwise('ghost runningMean', ghost.runningMean!, grm);
      const dx = ghost.backward(dy as never) as FloatArray;
      expectBitwise('ghost dx', dx, api.batchNormBackward({ dy, x, shape, mean: f.mean, invStd: f.invStd, gamma: ghost.gamma }, { layout, virtualBatchSize: 2 }).dx);
      // another batch size: the saved statistics change length
      const x2 = random(dtype, 30, 402);
      const shape2 = inLayout([2, 3, 5], layout);
      ghost.forward(x2 as never, shape2);
      ghost.backward(random(dtype, 30, 403) as never);

      expectThrows('renorm without running stats', () => new api.BatchNorm(3, { renorm: { rmax: 2, dmax: 1 }, trackRunningStats: false } as never), RangeError, 'trackRunningStats');
      expectThrows('layer rmax', () => new api.BatchNorm(3, { renorm: { rmax: 0.5, dmax: 1 } } as never), RangeError, 'options.renorm.rmax');
      expectThrows('layer v', () => new api.BatchNorm(3, { virtualBatchSize: -1 } as never), RangeError, 'options.virtualBatchSize');
      const bad = new api.BatchNorm(3, { dtype, layout, renorm: () => ({ rmax: 0, dmax: 0 }) } as never);
      const before = bad.runningMean!.slice();
      expectThrows('schedule result checked', () => bad.forward(x as never, shape), RangeError, 'options.renorm(step).rmax');
      expectBitwise('layer untouched', bad.runningMean!, before);
      if (bad.numBatchesTracked !== 0) fail('numBatchesTracked moved');
      const odd = new api.BatchNorm(3, { dtype, layout, virtualBatchSize: 3 } as never);
      expectThrows('layer v not dividing N', () => odd.forward(x as never, shape), RangeError, 'virtualBatchSize');
    },
  };
}

export function variantCases(): VariantCase[] {
  const cases: VariantCase[] = [];
  let seed = 1000;
  for (const dtype of ['float32', 'float64'] as const) {
    for (const layout of ['channels-first', 'channels-last'] as const) {
      for (const dims of [[6, 3, 5], [8, 4], [3, 2, 3, 4]]) {
        for (const [affine, relu] of [[true, false], [false, false], [true, true]] as const) {
          cases.push(renormCase({ dtype, layout, dims, affine, relu, rmax: 1.4, dmax: 0.5, momentum: 0.9, seed: (seed += 10) }));
        }
      }
      cases.push(renormCase({ dtype, layout, dims: [5, 3, 7], affine: true, relu: false, rmax: 3, dmax: 5, momentum: null, async: true, seed: (seed += 10) }));
      cases.push(renormCase({ dtype, layout, dims: [5, 3, 7], affine: true, relu: false, rmax: Infinity, dmax: Infinity, momentum: 0.5, seed: (seed += 10) }));
      // the mean far from zero: d needs μ_B beyond x's precision
      cases.push(renormCase({ dtype, layout, dims: [6, 3, 9], affine: true, relu: false, rmax: 3, dmax: 5, momentum: 0.9, offset: dtype === 'float32' ? 1e4 : 1e8, seed: (seed += 10) }));
      cases.push(renormIdentityCase(dtype, layout, true));
      cases.push(renormIdentityCase(dtype, layout, false));
      for (const [dims, v] of [[[6, 3, 5], 2], [[6, 3, 5], 3], [[8, 4], 2], [[4, 2, 3, 2], 1], [[6, 3, 5], 6]] as const) {
        cases.push(ghostCase({ dtype, layout, dims: [...dims], v, affine: true, relu: false, running: true, unbiased: true, seed: (seed += 10) }));
      }
      cases.push(ghostCase({ dtype, layout, dims: [6, 3, 4], v: 2, affine: false, relu: true, running: false, unbiased: true, seed: (seed += 10) }));
      cases.push(ghostCase({ dtype, layout, dims: [6, 3, 4], v: 3, affine: true, relu: true, running: true, unbiased: false, async: true, seed: (seed += 10) }));
      cases.push(ghostWholeBatchCase(dtype, layout));
      cases.push(recomputeCase(dtype, layout));
      cases.push(layerCase(dtype, layout));
    }
    cases.push(badInputsCase(dtype));
  }
  cases.push(...residualCases());
  return cases;
}
