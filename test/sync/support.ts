/**
 * Shared by the SyncBatchNorm suites: a batch and its shards, the reference (one
 * batchNormTrain/batchNormBackward over the concatenated batch) and the comparisons.
 */
import { expect } from 'vitest';
import type * as Api from '../../lib/index.js';
import { Random } from '../../lib/random.js';

export type FloatArray = Float32Array | Float64Array;
export type DTypeName = 'float32' | 'float64';
export type LayoutName = 'channels-first' | 'channels-last';

export interface SyncCase {
  name: string;
  dtype: DTypeName;
  layout: LayoutName;
  /** the batch's shape with N = the sum of `shards` */
  dims: number[];
  /** samples per rank (a 0 is a rank without samples) */
  shards: number[];
  relu: boolean;
  seed: number;
}

export interface Batch {
  x: FloatArray;
  dy: FloatArray;
  gamma: FloatArray;
  beta: FloatArray;
  runningMean: FloatArray;
  runningVar: FloatArray;
}

export function arrayOf(dtype: DTypeName, n: number | ArrayLike<number>): FloatArray {
  return dtype === 'float32' ? new Float32Array(n as number) : new Float64Array(n as number);
}

/** x with a per-channel offset (mean far from 0 for some channels), dy, γ, β, running stats. */
export function makeBatch(c: SyncCase): Batch {
  const rand = new Random(c.seed);
  const n = c.dims.reduce((a, b) => a * b, 1);
  const C = c.dims[c.layout === 'channels-first' ? 1 : c.dims.length - 1];
  const inner = c.layout === 'channels-first' ? c.dims.slice(2).reduce((a, b) => a * b, 1) : 1;
  const x = arrayOf(c.dtype, n);
  const dy = arrayOf(c.dtype, n);
  for (let i = 0; i < n; i++) {
    const ch = c.layout === 'channels-first' ? Math.floor(i / inner) % C : i % C;
    x[i] = rand.normal() * (1 + ch % 3) + (ch % 4) * 2 - 3;
    dy[i] = rand.normal();
  }
  const gamma = arrayOf(c.dtype, C);
  const beta = arrayOf(c.dtype, C);
  const runningMean = arrayOf(c.dtype, C);
  const runningVar = arrayOf(c.dtype, C);
  for (let k = 0; k < C; k++) {
    gamma[k] = 0.5 + rand.next();
    beta[k] = rand.normal();
    runningMean[k] = rand.normal() * 0.1;
    runningVar[k] = 1 + rand.next();
  }
  return { x, dy, gamma, beta, runningMean, runningVar };
}

/** Elements per sample (everything but N). */
export function sampleSize(dims: readonly number[]): number {
  return dims.slice(1).reduce((a, b) => a * b, 1);
}

/** Rank r's shard of a batch tensor (samples are contiguous in both layouts). */
export function shardOf(a: FloatArray, c: SyncCase, r: number): FloatArray {
  const per = sampleSize(c.dims);
  const start = c.shards.slice(0, r).reduce((s, v) => s + v, 0) * per;
  return a.slice(start, start + c.shards[r] * per);
}

export function shardDims(c: SyncCase, r: number): number[] {
  return [c.shards[r], ...c.dims.slice(1)];
}

export function concat(dtype: DTypeName, parts: readonly FloatArray[]): FloatArray {
  const out = arrayOf(dtype, parts.reduce((s, p) => s + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

export interface RankResult {
  y: FloatArray;
  mean: FloatArray;
  invStd: FloatArray;
  runningMean: FloatArray;
  runningVar: FloatArray;
  numBatchesTracked: number;
  count: number;
  dx: FloatArray;
  dgamma: FloatArray;
  dbeta: FloatArray;
}

export interface Reference {
  y: FloatArray;
  mean: FloatArray;
  invStd: FloatArray;
  runningMean: FloatArray;
  runningVar: FloatArray;
  dx: FloatArray;
  dgamma: FloatArray;
  dbeta: FloatArray;
}

/** One batchNormTrain + batchNormBackward over the whole batch (on the current backend). */
export function reference(api: typeof Api, c: SyncCase, b: Batch, options: Record<string, unknown>): Reference {
  const runningMean = b.runningMean.slice();
  const runningVar = b.runningVar.slice();
  const t = api.batchNormTrain({ x: b.x, shape: c.dims, gamma: b.gamma, beta: b.beta, runningMean, runningVar }, options);
  const g = api.batchNormBackward({ dy: b.dy, x: b.x, shape: c.dims, mean: t.mean, invStd: t.invStd, gamma: b.gamma, y: c.relu ? t.y : undefined }, options);
  return { y: t.y, mean: t.mean, invStd: t.invStd, runningMean, runningVar, dx: g.dx, dgamma: g.dgamma, dbeta: g.dbeta };
}

export function optionsOf(c: SyncCase): Record<string, unknown> {
  return { layout: c.layout, activation: c.relu ? 'relu' : 'none', eps: 1e-5, momentum: 0.9 };
}

/** max|a − b| / max|b| (the max-norm relative error). */
export function relativeError(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let diff = 0;
  let scale = 0;
  for (let i = 0; i < a.length; i++) {
    diff = Math.max(diff, Math.abs(a[i] - b[i]));
    scale = Math.max(scale, Math.abs(b[i]));
  }
  if (Number.isNaN(diff)) return NaN;
  return scale === 0 ? diff : diff / scale;
}

export function tolerance(dtype: DTypeName): number {
  return dtype === 'float32' ? 1e-5 : 1e-11;
}

export function sameBits(a: ArrayLike<number>, b: ArrayLike<number>): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (!Object.is(a[i], b[i])) return false;
  return true;
}

/** Every rank's results against the reference, and the per-channel ones bitwise the same on every rank. */
export function checkRanks(c: SyncCase, results: readonly RankResult[], ref: Reference): void {
  const tol = tolerance(c.dtype);
  const y = concat(c.dtype, results.map((r) => r.y));
  const dx = concat(c.dtype, results.map((r) => r.dx));
  const errors: Record<string, number> = {
    y: relativeError(y, ref.y),
    dx: relativeError(dx, ref.dx),
    mean: relativeError(results[0].mean, ref.mean),
    invStd: relativeError(results[0].invStd, ref.invStd),
    runningMean: relativeError(results[0].runningMean, ref.runningMean),
    runningVar: relativeError(results[0].runningVar, ref.runningVar),
    dgamma: relativeError(results[0].dgamma, ref.dgamma),
    dbeta: relativeError(results[0].dbeta, ref.dbeta),
  };
  for (const [name, e] of Object.entries(errors)) expect(e, `${c.name}: ${name} relative error ${e}`).toBeLessThanOrEqual(tol);
  const N = c.shards.reduce((a, b) => a + b, 0);
  for (const r of results) {
    expect(r.count).toBe(N * (c.layout === 'channels-first' ? c.dims.slice(2).reduce((a, b) => a * b, 1) : c.dims.slice(1, -1).reduce((a, b) => a * b, 1)));
    expect(r.numBatchesTracked).toBe(1);
    for (const k of ['mean', 'invStd', 'runningMean', 'runningVar', 'dgamma', 'dbeta'] as const) {
      expect(sameBits(r[k], results[0][k]), `${c.name}: ${k} bitwise the same on every rank`).toBe(true);
    }
  }
}

/** The cases: both dtypes and layouts, uneven shards with an empty rank, ReLU on some. */
export function syncCases(size: number): SyncCase[] {
  const shardsFor = (seed: number): number[] => {
    if (size === 1) return [5];
    const s = Array.from({ length: size }, (_, r) => 1 + ((r * 7 + seed) % 4));
    s[size - 1 - (seed % size)] = 0; // one rank without samples
    return s;
  };
  const cases: SyncCase[] = [];
  let seed = 1;
  for (const dtype of ['float32', 'float64'] as const) {
    for (const layout of ['channels-first', 'channels-last'] as const) {
      const shards = shardsFor(seed);
      const N = shards.reduce((a, b) => a + b, 0);
      const dims = layout === 'channels-first' ? [N, 5, 6, 7] : [N, 6, 7, 5];
      cases.push({ name: `${dtype} ${layout} shards [${shards.join(', ')}]${seed % 2 ? ' relu' : ''}`, dtype, layout, dims, shards, relu: seed % 2 === 1, seed });
      seed++;
    }
  }
  return cases;
}
