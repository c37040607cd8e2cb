/**
 * The golden cases: every public op and option that changes a kernel's work, on geometries that
 * take each kernel path (native/kernels/plan.h: rows, fusedRows, few rows, planes, fused
 * planes, plane pieces, streaming stores, the per-channel double fallback, non-finite inputs),
 * float32 and float64. Inputs come from the seeded generator (lib/random.ts), regenerated on every
 * run; only the SHA-256 of each output's bytes is stored (golden.json), per backend and variant.
 * Calls go through the public functions, so the fixture holds whatever sits below the façade.
 */
import { createHash } from 'node:crypto';
import type * as Simdnorm from '../../lib/exports.js';
import { Random } from '../../lib/random.js';

type Api = typeof Simdnorm;
type FloatArray = Float32Array | Float64Array;
type DType = 'float32' | 'float64';
type Layout = 'channels-first' | 'channels-last';

export interface GoldenCase {
  name: string;
  dtype: DType;
  layout: Layout;
  shape: number[];
  /** x = offset + scale·N(0, 1) */
  offset: number;
  scale: number;
  /** Infinity and NaN planted in x (and the skipNonFiniteUpdate variants run) */
  nonFinite?: boolean;
}

interface Geometry {
  label: string;
  layout: Layout;
  shape: number[];
  offset?: number;
  scale?: number;
  nonFinite?: boolean;
}

// Which path each takes follows native/kernels/plan.h (kMinPlane 16, kFusedRowsMaxPlane 32,
// kBlockElements 16384, kRowBlockElements 65536, kFusedMinChannels 8, kFusedMinPlane 512,
// kStreamBytes 8 MiB, kFewRows 8) as of the commit the fixture was recorded from.
const GEOMETRIES: Geometry[] = [
  { label: 'tiny NCHW', layout: 'channels-first', shape: [2, 3, 4, 5] }, // rows (plane 20), fusedRows
  { label: 'NC', layout: 'channels-first', shape: [64, 256] }, // rows, fusedRows
  { label: 'NCHW fused planes', layout: 'channels-first', shape: [8, 16, 33, 35] }, // planes, fused
  { label: 'NCHW few channels', layout: 'channels-first', shape: [4, 4, 20, 20] }, // planes, not fused
  { label: 'NCHW plane pieces', layout: 'channels-first', shape: [2, 3, 130, 130] }, // planes of several pieces
  { label: 'NCHW small planes, row blocks', layout: 'channels-first', shape: [512, 32, 5, 5] }, // plane 25 without fusedRows
  { label: 'NCHW 3x3 planes', layout: 'channels-first', shape: [300, 32, 3, 3] }, // rows (plane 9), several row blocks
  { label: 'NHWC', layout: 'channels-last', shape: [8, 30, 31, 24] }, // rows, several row blocks
  { label: 'NC few values', layout: 'channels-first', shape: [2, 4096] }, // few rows (M = 2)
  { label: 'NC channels-last few values', layout: 'channels-last', shape: [3, 1000] }, // few rows (M = 3)
  { label: 'NHWC eight values', layout: 'channels-last', shape: [2, 2, 2, 300] }, // M = kFewRows: few rows where 300 is whole vectors (wasm, AVX2 float64)
  { label: 'NCHW streamed', layout: 'channels-first', shape: [16, 32, 65, 64] }, // outputs > kStreamBytes
  { label: 'NHWC streamed', layout: 'channels-last', shape: [16, 64, 65, 32] }, // rows, outputs > kStreamBytes
  { label: 'NCHW far from zero', layout: 'channels-first', shape: [4, 16, 20, 20], offset: 1e6, scale: 1 }, // shifted sums
  { label: 'NCHW huge values', layout: 'channels-first', shape: [4, 16, 20, 20], offset: 0, scale: 1e19 }, // float sums overflow: double fallback
  { label: 'NHWC huge values', layout: 'channels-last', shape: [4, 20, 20, 16], offset: 0, scale: 1e19 },
  { label: 'NCHW non-finite', layout: 'channels-first', shape: [4, 8, 6, 6], nonFinite: true },
  { label: 'NHWC non-finite', layout: 'channels-last', shape: [4, 6, 6, 8], nonFinite: true },
];

export function goldenCases(): GoldenCase[] {
  const cases: GoldenCase[] = [];
  for (const g of GEOMETRIES) {
    for (const dtype of ['float32', 'float64'] as const) {
      cases.push({
        name: `${dtype} ${g.layout} [${g.shape.join(',')}] ${g.label}`,
        dtype,
        layout: g.layout,
        shape: g.shape,
        offset: g.offset ?? 3,
        scale: g.scale ?? 2,
        nonFinite: g.nonFinite,
      });
    }
  }
  return cases;
}

function seedOf(name: string): number {
  let h = 2166136261;
  for (let i = 0; i < name.length; i++) h = Math.imul(h ^ name.charCodeAt(i), 16777619);
  return h >>> 0;
}

/**
 * Runs every op variant of a case on the current backend of `api`; resolves to each output by
 * name (copies), plus `scalars`: the updated / numBatchesTracked results, as a Float64Array.
 * `viaAsync`: train, infer and backward through their Async variants (the same results).
 */
export async function runCase(api: Api, c: GoldenCase, viaAsync = false): Promise<Record<string, FloatArray>> {
  const train: Api['batchNormTrainAsync'] = async (...a) => (viaAsync ? api.batchNormTrainAsync(...a) : api.batchNormTrain(...a));
  const infer: Api['batchNormInferAsync'] = async (...a) => (viaAsync ? api.batchNormInferAsync(...a) : api.batchNormInfer(...a));
  const backward: Api['batchNormBackwardAsync'] = async (...a) =>
    viaAsync ? api.batchNormBackwardAsync(...a) : api.batchNormBackward(...a);
  const rand = new Random(seedOf(c.name));
  const T = c.dtype === 'float32' ? Float32Array : Float64Array;
  const n = c.shape.reduce((a, b) => a * b, 1);
  const C = c.shape[c.layout === 'channels-first' ? 1 : c.shape.length - 1];
  const M = n / C;
  const fill = (length: number, scale = 1, offset = 0): FloatArray => rand.fill(new T(length), scale, offset);
  const x = fill(n, c.scale, c.offset);
  if (c.nonFinite) {
    // channel 0 gets +Infinity, channel 1 a NaN (as indices of the layout), the rest stay finite
    const at = (ch: number, k: number): number =>
      c.layout === 'channels-first' ? (k * C + ch) * (n / C / c.shape[0]) : k * C + ch;
    x[at(0, 0)] = Infinity;
    x[at(1, 1)] = NaN;
  }
  const gamma = fill(C, 0.5, 1);
  const beta = fill(C);
  const rm0 = fill(C);
  const rv0 = fill(C, 0.1, 2);
  const dy = fill(n);
  const shape = c.shape;
  const layout = c.layout;
  const out: Record<string, FloatArray> = {};
  const scalars: number[] = [];
  const put = (prefix: string, r: object): void => {
    for (const [k, v] of Object.entries(r)) {
      if (v instanceof Float32Array || v instanceof Float64Array) out[`${prefix}.${k}`] = v.slice();
      else scalars.push(typeof v === 'boolean' ? Number(v) : v);
    }
  };

  // training forward: affine + running stats (momentum, unbiased), no activation
  {
    const runningMean = rm0.slice(), runningVar = rv0.slice();
    const r = await train({ x, shape, gamma, beta, runningMean, runningVar }, { layout, momentum: 0.9 });
    put('train', r);
    put('train', { runningMean, runningVar });
  }
  // no affine, no running stats, relu
  put('trainRelu', await train({ x, shape }, { layout, activation: 'relu' }));
  // running stats as the cumulative average (momentum null), biased running var, relu, affine
  {
    const runningMean = rm0.slice(), runningVar = rv0.slice();
    const r = await train(
      { x, shape, gamma, beta, runningMean, runningVar, numBatchesTracked: 3 },
      { layout, momentum: null, unbiasedRunningVar: false, activation: 'relu', eps: 1e-3 },
    );
    put('trainCumulative', r);
    put('trainCumulative', { runningMean, runningVar });
  }
  if (c.nonFinite) {
    for (const skip of [true, false]) {
      const runningMean = rm0.slice(), runningVar = rv0.slice();
      const r = await train(
        { x, shape, gamma, beta, runningMean, runningVar },
        { layout, momentum: 0.8, skipNonFiniteUpdate: skip },
      );
      put(`trainSkip${skip}`, { runningMean, runningVar, updated: r.updated, n: r.numBatchesTracked });
    }
  }

  // inference
  put('infer', await infer({ x, shape, runningMean: rm0, runningVar: rv0, gamma, beta }, { layout }));
  put('inferRelu', await infer({ x, shape, runningMean: rm0, runningVar: rv0 }, { layout, activation: 'relu', eps: 1e-2 }));

  // backward over the saved statistics of the first training call
  const saved = await train({ x, shape, gamma, beta }, { layout, activation: 'relu' });
  const { mean, invStd } = saved;
  put('backward', await backward({ dy, x, shape, mean, invStd, gamma }, { layout }));
  put('backwardRelu', await backward({ dy, x, shape, mean, invStd, gamma, y: saved.y }, { layout, activation: 'relu' }));
  put('backwardEval', await backward({ dy, x, shape, mean, invStd, gamma }, { layout, training: false }));
  put(
    'backwardEvalRelu',
    await backward({ dy, x, shape, mean, invStd, y: saved.y }, { layout, activation: 'relu', training: false }),
  );

  // statistics alone, and the running update alone
  const m = api.moments({ x, shape }, { layout });
  put('moments', m);
  for (const [label, momentum, unbiased] of [['update', 0.9, true], ['updateCumulative', null, false]] as const) {
    const runningMean = rm0.slice(), runningVar = rv0.slice();
    const r = api.updateRunningStats(
      { runningMean, runningVar, mean: m.mean, variance: m.variance, count: M, numBatchesTracked: 2 },
      { momentum, unbiasedRunningVar: unbiased },
    );
    put(label, { runningMean, runningVar, updated: r.updated, n: r.numBatchesTracked });
  }
  out.scalars = Float64Array.from(scalars);
  return out;
}

/** What the fixture holds of one case's outputs on one backend. */
export interface CaseDigest {
  /** "name length" of each output, in order */
  outputs: string[];
  /** SHA-256 (hex) over every output's name, length and the SHA-256 of its bytes */
  all: string;
  /** the first 12 hex digits of each output's SHA-256, in order: which output differs */
  each: string[];
}

export function digest(outputs: Record<string, FloatArray>): CaseDigest {
  const names = Object.keys(outputs);
  const full = names.map((k) => {
    const a = outputs[k];
    return createHash('sha256').update(new Uint8Array(a.buffer, a.byteOffset, a.byteLength)).digest('hex');
  });
  const all = createHash('sha256');
  names.forEach((k, i) => all.update(`${k}:${outputs[k].length}:${full[i]}\n`));
  return {
    outputs: names.map((k) => `${k} ${outputs[k].length}`),
    all: all.digest('hex'),
    each: full.map((h) => h.slice(0, 12)),
  };
}
