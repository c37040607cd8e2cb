/**
 * Shared by the wasm tests: random tensors, argument builders, float64-reference checks, and
 * `ops(backend)`: the BatchNorm calls of lib/reference.ts (the same argument objects) as
 * descriptors run through Backend.run, so the backend is tested below the façade.
 */
import type { Backend, FloatArray, Geometry } from '../../lib/backend.js';
import { Phase, Slot } from '../../lib/core/abi.js';
import { makeNorm, type Norm, type PhaseCode } from '../../lib/core/descriptor.js';
import type { BackwardArgs, InferArgs, MomentsArgs, TrainArgs, UpdateRunningArgs } from '../../lib/reference.js';

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

/** BatchNorm's descriptor: samples 1, outer N, stats C, inner spatial; γ/β by channel (run >= 1: sn_prepare wants it). */
export function batchNormNorm(phase: PhaseCode, x: FloatArray, g: Geometry, s: Parameters<typeof makeNorm>[4] = {}): Norm {
  return makeNorm(phase, x, { samples: 1, outer: g.outer, stats: g.channels, inner: g.inner }, { groups: g.channels, size: 1, run: Math.max(1, g.inner) }, s);
}

/** The old per-op calls (lib/reference.ts's argument objects) as descriptors through backend.run. */
export interface Ops {
  train(a: TrainArgs): boolean;
  infer(a: InferArgs): void;
  backward(a: BackwardArgs): void;
  moments(a: MomentsArgs): void;
  updateRunningStats(a: UpdateRunningArgs): boolean;
}

export function ops(backend: Backend): Ops {
  return {
    train(a) {
      const r = a.running;
      const n = batchNormNorm(Phase.train, a.x, a.geometry, {
        eps: a.eps, relu: a.relu, factor: r?.factor ?? 0, varScale: r?.varScale ?? 1, skipNonFinite: r?.skipNonFinite ?? false,
      });
      const t = n.tensors;
      t[Slot.x] = a.x; t[Slot.gamma] = a.gamma; t[Slot.beta] = a.beta; t[Slot.y] = a.y; t[Slot.mean] = a.mean; t[Slot.invStd] = a.invStd;
      t[Slot.runningMean] = r?.runningMean ?? null; t[Slot.runningVar] = r?.runningVar ?? null;
      return backend.run(n) === 1;
    },
    infer(a) {
      const n = batchNormNorm(Phase.infer, a.x, a.geometry, { eps: a.eps, relu: a.relu });
      const t = n.tensors;
      t[Slot.x] = a.x; t[Slot.runningMean] = a.runningMean; t[Slot.runningVar] = a.runningVar;
      t[Slot.gamma] = a.gamma; t[Slot.beta] = a.beta; t[Slot.y] = a.y;
      backend.run(n);
    },
    backward(a) {
      const n = batchNormNorm(Phase.backward, a.x, a.geometry, { relu: a.y !== null, training: a.training });
      const t = n.tensors;
      t[Slot.dy] = a.dy; t[Slot.x] = a.x; t[Slot.mean] = a.mean; t[Slot.invStd] = a.invStd; t[Slot.gamma] = a.gamma;
      t[Slot.y] = a.y; t[Slot.dx] = a.dx; t[Slot.dgamma] = a.dgamma; t[Slot.dbeta] = a.dbeta;
      backend.run(n);
    },
    moments(a) {
      const n = batchNormNorm(Phase.moments, a.x, a.geometry);
      n.tensors[Slot.x] = a.x; n.tensors[Slot.mean] = a.mean; n.tensors[Slot.variance] = a.variance;
      backend.run(n);
    },
    updateRunningStats(a) {
      const C = a.runningMean.length;
      const n = batchNormNorm(Phase.update, a.runningMean, { outer: 1, channels: C, inner: 1 }, {
        factor: a.factor, varScale: a.varScale, skipNonFinite: a.skipNonFinite,
      });
      const t = n.tensors;
      t[Slot.runningMean] = a.runningMean; t[Slot.runningVar] = a.runningVar; t[Slot.mean] = a.batchMean; t[Slot.variance] = a.batchVar;
      return backend.run(n) === 1;
    },
  };
}

/** Runs train, infer and backward of one case on a backend; returns every output by name. */
export function runAll(target: Backend, c: TrainCase, seed: number): Record<string, FloatArray> {
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
  const backend = ops(target);
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
