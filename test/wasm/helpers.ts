/** Shared by the wasm tests: random tensors, argument builders and float64-reference checks. */
import type { Backend, FloatArray, Geometry } from '../../lib/backend.js';
import * as reference from '../../lib/reference.js';

export type Ctor = Float32ArrayConstructor | Float64ArrayConstructor;

/** A deterministic generator (mulberry32), so failures reproduce. */
export function random(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function normal(rand: () => number): number {
  return Math.sqrt(-2 * Math.log(1 - rand())) * Math.cos(2 * Math.PI * rand());
}

export function randomArray(type: Ctor, n: number, rand: () => number, offset = 0, scale = 1): FloatArray {
  const a = new type(n);
  for (let i = 0; i < n; i++) a[i] = offset + scale * normal(rand);
  return a;
}

export function elements(g: Geometry): number {
  return g.outer * g.channels * g.inner;
}

/** max |a - b| / max(1, max |b|): relative to the data's scale, as README "Numerics"' tolerance. */
export function scaledError(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let scale = 1;
  for (let i = 0; i < b.length; i++) scale = Math.max(scale, Math.abs(b[i]));
  let worst = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i] - b[i]);
    if (Number.isNaN(d) && !(Number.isNaN(a[i]) && Number.isNaN(b[i]))) return Infinity;
    if (d > worst) worst = d;
  }
  return worst / scale;
}

export interface TrainCase {
  type: Ctor;
  g: Geometry;
  relu: boolean;
  affine: boolean;
  running: boolean;
}

/** Runs train, infer and backward of one case on a backend; returns every output by name. */
export function runAll(backend: Backend, c: TrainCase, seed: number): Record<string, FloatArray> {
  const rand = random(seed);
  const n = elements(c.g);
  const C = c.g.channels;
  const x = randomArray(c.type, n, rand, 3, 2);
  const gamma = c.affine ? randomArray(c.type, C, rand, 1, 0.5) : null;
  const beta = c.affine ? randomArray(c.type, C, rand, 0, 1) : null;
  const runningMean = randomArray(c.type, C, rand);
  const runningVar = randomArray(c.type, C, rand, 2, 0.1);
  const y = new c.type(n);
  const mean = new c.type(C);
  const invStd = new c.type(C);
  const M = c.g.outer * c.g.inner;
  backend.train({
    x, geometry: c.g, gamma, beta, eps: 1e-5, relu: c.relu, y, mean, invStd,
    running: c.running ? { runningMean, runningVar, factor: 0.1, varScale: M / (M - 1), skipNonFinite: false } : null,
  });
  const yInfer = new c.type(n);
  backend.infer({ x, geometry: c.g, runningMean, runningVar, gamma, beta, eps: 1e-3, relu: c.relu, y: yInfer });
  const dy = randomArray(c.type, n, rand);
  const outs: Record<string, FloatArray> = { y, mean, invStd, runningMean, runningVar, yInfer };
  for (const training of [true, false]) {
    const dx = new c.type(n);
    const dgamma = new c.type(C);
    const dbeta = new c.type(C);
    backend.backward({
      dy, x, geometry: c.g, mean, invStd, gamma, y: c.relu ? y : null, training, dx, dgamma, dbeta,
    });
    Object.assign(outs, { [`dx_${training}`]: dx, [`dgamma_${training}`]: dgamma, [`dbeta_${training}`]: dbeta });
  }
  const mom = new c.type(C);
  const variance = new c.type(C);
  backend.moments({ x, geometry: c.g, mean: mom, variance });
  Object.assign(outs, { momentsMean: mom, momentsVar: variance });
  return outs;
}

/** The js backend: the float64 reference. */
export { jsBackend as referenceBackend } from '../../lib/backends/js.js';

/** Cases covering both layouts (channels-last is inner = 1), odd sizes, relu, affine, dtypes. */
export function trainCases(): TrainCase[] {
  const shapes: Geometry[] = [
    { outer: 2, channels: 3, inner: 5 },
    { outer: 4, channels: 16, inner: 49 },
    { outer: 3, channels: 7, inner: 1 }, // channels-last / NC
    { outer: 75, channels: 13, inner: 1 },
    { outer: 2, channels: 5, inner: 1031 },
  ];
  const out: TrainCase[] = [];
  for (const type of [Float32Array, Float64Array] as Ctor[]) {
    for (const g of shapes) {
      out.push({ type, g, relu: false, affine: true, running: true });
      out.push({ type, g, relu: true, affine: false, running: false });
    }
  }
  return out;
}
