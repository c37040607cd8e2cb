/**
 * SyncBatchNorm (README "SyncBatchNorm"): BatchNorm over a batch split into shards, one per rank
 * of a Collective (lib/sync/collective.ts), with the statistics of the whole batch.
 *
 * Forward: each rank's per-channel (count, mean, M2) of its shard (the moments phase), gathered
 * and merged in rank order with Chan's formula in float64 — the same operations on the same
 * numbers on every rank, so mean and invStd are bitwise the same everywhere whatever the arrival
 * order — then the shard normalised with them (the infer phase) and the running statistics updated
 * once with the whole batch's count. Backward: each rank's Σg and Σg·x̂ (the backward phase under
 * flag sumsOnly), gathered and summed in rank order, then dx from the whole batch's sums and count
 * (flag givenSums). Each exchange also carries a signature of the call (shape but N, dtype, layout,
 * options), so mismatched calls are rejected on every rank; a rank whose call fails before the
 * exchange sends a failure instead of its statistics, so the others reject at once.
 */
import { Phase, Slot } from '../core/abi.js';
import { checkAllFixed, checkOut, momentumFactor, nextCount, output, runAsync, unbiasedScale } from '../core/call.js';
import { makeNorm, releaseNorm, type FloatArray, type Norm, type NormScalars } from '../core/descriptor.js';
import { typedArraySet } from '../intrinsics.js';
import { getBackend } from '../registry.js';
import { CollectiveError, readCollective, type Collective } from '../sync/collective.js';
import {
  allocateFloat,
  checkCount,
  checkFloatArray,
  checkNoOverlap,
  checkObject,
  checkOptionalFloatArray,
  checkTensor,
  describe,
  parseOptions,
  readShape,
  shapeOf,
  type DType,
  type Shape,
} from '../validate.js';
import type { BackwardInputs, BackwardOptions, BackwardOut, BackwardResult, FamilyOptions, TrainInputs, TrainOptions, TrainOut, TrainResult } from './batchnorm.js';

export type { Collective } from '../sync/collective.js';

export interface SyncTrainResult<T extends FloatArray = FloatArray> extends TrainResult<T> {
  /** values per channel over every rank's shard (M of the whole batch) */
  count: number;
}

const TRAIN_OPTIONS = ['eps', 'momentum', 'unbiasedRunningVar', 'layout', 'activation', 'skipNonFiniteUpdate', 'renorm', 'virtualBatchSize'] as const;
const BACKWARD_OPTIONS = ['layout', 'activation', 'training', 'virtualBatchSize'] as const;
const TRAIN_NAMES = ['out.y', 'out.mean', 'out.invStd', 'runningMean', 'runningVar', 'x', 'gamma', 'beta'] as const;
const BACKWARD_NAMES = ['out.dx', 'out.dgamma', 'out.dbeta', 'dy', 'x', 'mean', 'invStd', 'gamma', 'y'] as const;

// What an exchange starts with: a kind, then the signature's length and fields.
const FORWARD = 1;
const BACKWARD = 2;
const FAILED = -1;
const FORWARD_FIELDS = ['dtype', 'layout', 'eps', 'momentum', 'unbiasedRunningVar', 'activation', 'skipNonFiniteUpdate', 'gamma given', 'beta given', 'running stats given', 'numBatchesTracked'];
const BACKWARD_FIELDS = ['dtype', 'layout', 'activation', 'gamma given'];

/** BatchNorm's descriptor (lib/ops/batchnorm.ts): samples 1, stats C, γ/β one per channel. */
function descriptor(phase: (typeof Phase)[keyof typeof Phase], like: FloatArray, shape: Shape, s: NormScalars): Norm {
  const g = shape.geometry;
  return makeNorm(phase, like, { samples: 1, outer: g.outer, stats: g.channels, inner: g.inner }, { groups: g.channels, size: 1, run: 1 }, s);
}

/** The signature of a call: the rank of the shape, its dims but N, then `fields`. */
function signature(kind: number, dims: readonly number[], fields: readonly number[]): number[] {
  return [kind, dims.length, ...dims.slice(1), ...fields];
}

/** The payload: [signature length, signature..., body...]. */
function payload(sig: readonly number[], body: ArrayLike<number>, bodyLength: number): Float64Array {
  const p = new Float64Array(1 + sig.length + bodyLength);
  p[0] = sig.length;
  p.set(sig, 1);
  for (let i = 0; i < bodyLength; i++) p[1 + sig.length + i] = body[i];
  return p;
}

/** A failure sent in place of statistics: [FAILED, message as char codes]. */
function failurePayload(e: unknown): Float64Array {
  const message = String(e instanceof Error ? `${e.name}: ${e.message}` : e).slice(0, 300);
  const p = new Float64Array(2 + message.length);
  p[0] = 1;
  p[1] = FAILED;
  for (let i = 0; i < message.length; i++) p[2 + i] = message.charCodeAt(i);
  return p;
}

/**
 * Checks what every rank sent against this call's signature; returns each rank's body. A failed
 * rank is a CollectiveError; a signature unlike rank 0's a RangeError (the same on every rank).
 */
function bodies(all: unknown, size: number, sig: readonly number[], fieldNames: readonly string[], what: string, bodyLength: number): Float64Array[] {
  if (!Array.isArray(all) || all.length !== size || !all.every((a) => a instanceof Float64Array)) {
    throw new TypeError(`${what}: collective.allGather must resolve to ${size} Float64Arrays in rank order, received ${describe(all)}`);
  }
  const arrays = all as Float64Array[];
  for (let r = 0; r < size; r++) {
    const a = arrays[r];
    if (a.length >= 2 && a[1] === FAILED) {
      const message = String.fromCharCode(...Array.from(a.subarray(2), (c) => c | 0));
      throw new CollectiveError(`${what}: rank ${r} failed before the exchange: ${message}`, [r]);
    }
  }
  const sigOf = (a: Float64Array) => a.subarray(1, 1 + (a[0] | 0));
  const first = sigOf(arrays[0]);
  const name = (i: number, s: ArrayLike<number>): string => {
    const rank = s[1] | 0;
    if (i === 0) return 'operation';
    if (i === 1) return 'rank of shape';
    if (i < 1 + rank) return `dim ${i - 1} of shape`;
    return fieldNames[i - 1 - rank] ?? `field ${i}`;
  };
  for (let r = 1; r < size; r++) {
    const s = sigOf(arrays[r]);
    const n = Math.max(s.length, first.length);
    for (let i = 0; i < n; i++) {
      if (!Object.is(s[i], first[i])) {
        throw new RangeError(`${what}: the ranks' calls differ: rank ${r}'s ${name(i, i < 2 ? first : s)} is ${s[i]}, rank 0's is ${first[i]} (every rank must call with the same shape but N, dtype, layout and options)`);
      }
    }
  }
  if (first.length !== sig.length || !first.every((v, i) => Object.is(v, sig[i]))) {
    throw new RangeError(`${what}: the collective returned rank 0's data unlike this rank's signature (allGather must return every rank's array as given)`);
  }
  const out = arrays.map((a) => a.subarray(1 + (a[0] | 0)));
  for (let r = 0; r < size; r++) {
    if (out[r].length !== bodyLength) {
      throw new TypeError(`${what}: collective.allGather returned rank ${r}'s array with ${out[r].length} values after its signature, expected ${bodyLength} (allGather must return every rank's array as given)`);
    }
  }
  return out;
}

/** Sends a failure so the other ranks reject at once, then rethrows (a gather that fails too is ignored). */
async function failBeforeExchange(collective: Collective | null, e: unknown): Promise<never> {
  if (collective) {
    try {
      await collective.allGather(failurePayload(e));
    } catch {
      // the original error is the one to report
    }
  }
  throw e;
}

function layoutCode(layout: string): number {
  return layout === 'channels-first' ? 0 : 1;
}

// ---------------------------------------------------------------------------------------------
// Forward

interface PreparedSyncTrain {
  shape: Shape;
  dtype: DType;
  x: FloatArray;
  gamma: FloatArray | null;
  beta: FloatArray | null;
  runningMean: FloatArray | null;
  runningVar: FloatArray | null;
  y: FloatArray;
  mean: FloatArray;
  invStd: FloatArray;
  numBatchesTracked: number;
  eps: number;
  momentum: number | null;
  unbiased: boolean;
  relu: boolean;
  skipNonFinite: boolean;
  sig: number[];
}

function prepareTrain(inputs: unknown, options: unknown, outArg: unknown): PreparedSyncTrain {
  const opts = parseOptions(options, TRAIN_OPTIONS, 'syncBatchNormTrain');
  const input = checkObject(inputs, 'inputs');
  const xValue = input.x;
  const shapeValue = input.shape;
  const gammaValue = input.gamma;
  const betaValue = input.beta;
  const runningMeanValue = input.runningMean;
  const runningVarValue = input.runningVar;
  const numBatchesTracked = checkCount(input.numBatchesTracked, 'numBatchesTracked');
  const dims = readShape(shapeValue);
  const out = checkOut(outArg);
  const yValue = out?.y;
  const meanValue = out?.mean;
  const invStdValue = out?.invStd;
  // no caller code runs from here on
  if (opts.renorm !== null) throw new RangeError('options.renorm is not supported by syncBatchNormTrain (give null)');
  if (opts.virtualBatchSize !== null) throw new RangeError('options.virtualBatchSize is not supported by syncBatchNormTrain (give null)');
  const shape = shapeOf(dims, opts.layout);
  const { x, dtype } = checkTensor(xValue, 'x', shape);
  const C = shape.geometry.channels;
  const gamma = checkOptionalFloatArray(gammaValue, 'gamma', dtype, C);
  const beta = checkOptionalFloatArray(betaValue, 'beta', dtype, C);
  const runningMean = checkOptionalFloatArray(runningMeanValue, 'runningMean', dtype, C);
  const runningVar = checkOptionalFloatArray(runningVarValue, 'runningVar', dtype, C);
  if ((runningMean === null) !== (runningVar === null)) {
    throw new TypeError(
      `runningMean and runningVar must be given together, received runningMean ${describe(runningMeanValue)} and runningVar ${describe(runningVarValue)}`,
    );
  }
  const y = output(yValue, 'out.y', dtype, shape.elements, shape.dims, 'its product');
  const mean = output(meanValue, 'out.mean', dtype, C, shape.dims, 'its channel dim');
  const invStd = output(invStdValue, 'out.invStd', dtype, C, shape.dims, 'its channel dim');
  const arrays = [y, mean, invStd, runningMean, runningVar, x, gamma, beta];
  checkNoOverlap(TRAIN_NAMES, arrays, 5, 0, 5);
  checkAllFixed(TRAIN_NAMES, arrays);
  const relu = opts.activation === 'relu';
  const sig = signature(FORWARD, shape.dims, [
    dtype === 'float64' ? 1 : 0,
    layoutCode(opts.layout),
    opts.eps,
    opts.momentum === null ? -1 : opts.momentum,
    opts.unbiasedRunningVar ? 1 : 0,
    relu ? 1 : 0,
    opts.skipNonFiniteUpdate ? 1 : 0,
    gamma ? 1 : 0,
    beta ? 1 : 0,
    runningMean ? 1 : 0,
    numBatchesTracked,
  ]);
  return {
    shape, dtype, x, gamma, beta, runningMean, runningVar, y, mean, invStd, numBatchesTracked,
    eps: opts.eps, momentum: opts.momentum, unbiased: opts.unbiasedRunningVar, relu, skipNonFinite: opts.skipNonFiniteUpdate, sig,
  };
}

/**
 * Merges per-rank (count, mean[C], M2[C]) bodies in rank order (Chan, Golub and LeVeque):
 * n = na + nb, δ = mb − ma, mean = ma + δ·nb/n, M2 = M2a + M2b + δ²·na·nb/n, in float64.
 */
function mergeMoments(bodies: readonly Float64Array[], C: number): { count: number; mean: Float64Array; m2: Float64Array } {
  const mean = new Float64Array(C);
  const m2 = new Float64Array(C);
  let count = 0;
  for (const b of bodies) {
    const nb = b[0];
    if (!(nb > 0)) continue;
    const n = count + nb;
    for (let c = 0; c < C; c++) {
      const mb = b[1 + c];
      const m2b = b[1 + C + c];
      if (count === 0) {
        mean[c] = mb;
        m2[c] = m2b;
      } else {
        const delta = mb - mean[c];
        mean[c] += (delta * nb) / n;
        m2[c] += m2b + ((delta * delta) * count * nb) / n;
      }
    }
    count = n;
  }
  return { count, mean, m2 };
}

/**
 * Training forward of SyncBatchNorm: batchNormTrain's formulas with the statistics of the whole
 * batch — every rank's shard of it — per channel:
 *   M = Σ_r M_r, μ and σ² = M2/M merged from every rank's (M_r, μ_r, M2_r) in rank order (Chan),
 *   invStd = 1/sqrt(σ² + eps), y = γ·(x − μ)·invStd + β on this rank's shard (then ReLU);
 * the running statistics (when given) updated once with μ and σ²·M/(M−1) (unbiasedRunningVar).
 * `inputs`, `options` and `out` as batchNormTrain's (without renorm and virtualBatchSize); every
 * rank calls it with its shard — same shape but N (N may be 0 on some ranks), dtype, layout and
 * options — and the same `collective` step for step. mean, invStd and the running statistics are
 * bitwise the same on every rank. The result adds `count` (M). Arrays must not change until the
 * promise settles.
 * @throws (rejects) TypeError / RangeError as batchNormTrain, on this rank before the exchange
 *   (the other ranks then reject with a CollectiveError naming it); RangeError on every rank when
 *   the ranks' calls differ or M = 1; CollectiveError when a rank fails or does not arrive in
 *   time. A rejected call has written nothing (running statistics untouched).
 */
export async function syncBatchNormTrain<T extends FloatArray>(
  inputs: TrainInputs<T>,
  options: (TrainOptions & FamilyOptions) | undefined,
  collective: Collective,
  out?: TrainOut<T>,
): Promise<SyncTrainResult<T>> {
  const group = readCollective(collective);
  const b = getBackend();
  let p: PreparedSyncTrain;
  try {
    p = prepareTrain(inputs, options, out);
  } catch (e) {
    return failBeforeExchange(group, e);
  }
  const { shape, dtype } = p;
  const C = shape.geometry.channels;
  const local = shape.perChannel;
  // This shard's (count, mean, M2) per channel.
  const body = new Float64Array(1 + 2 * C);
  body[0] = local;
  if (shape.elements > 0) {
    const mean = allocateFloat(dtype, C, 'the shard mean', 'its channel dim');
    const variance = allocateFloat(dtype, C, 'the shard variance', 'its channel dim');
    const n = descriptor(Phase.moments, p.x, shape, {});
    n.tensors[Slot.x] = p.x;
    n.tensors[Slot.mean] = mean;
    n.tensors[Slot.variance] = variance;
    try {
      await runAsync(b, n);
    } catch (e) {
      return failBeforeExchange(group, e);
    } finally {
      releaseNorm(n);
    }
    for (let c = 0; c < C; c++) {
      body[1 + c] = mean[c];
      body[1 + C + c] = variance[c] * local;
    }
  }
  const all = await group.allGather(payload(p.sig, body, body.length));
  const merged = mergeMoments(bodies(all, group.size, p.sig, FORWARD_FIELDS, 'syncBatchNormTrain', body.length), C);
  const M = merged.count;
  if (M === 1 && C > 0) {
    throw new RangeError(`x must have more than 1 value per channel over every rank's shard when training, received shape [${shape.dims.join(', ')}] here and 1 value per channel in all`);
  }
  // The whole batch's statistics, in the dtype, for the infer and update phases.
  const batchMean = allocateFloat(dtype, C, 'the batch mean', 'its channel dim');
  const batchVar = allocateFloat(dtype, C, 'the batch variance', 'its channel dim');
  const invStd = allocateFloat(dtype, C, 'invStd', 'its channel dim');
  for (let c = 0; c < C; c++) {
    const variance = M > 0 ? merged.m2[c] / M : NaN;
    batchMean[c] = M > 0 ? merged.mean[c] : NaN;
    batchVar[c] = variance;
    invStd[c] = 1 / Math.sqrt(variance + p.eps);
  }
  if (shape.elements > 0) {
    const n = descriptor(Phase.infer, p.x, shape, { eps: p.eps, relu: p.relu });
    const t = n.tensors;
    t[Slot.x] = p.x;
    t[Slot.runningMean] = batchMean;
    t[Slot.runningVar] = batchVar;
    t[Slot.gamma] = p.gamma;
    t[Slot.beta] = p.beta;
    t[Slot.y] = p.y;
    try {
      await runAsync(b, n);
    } finally {
      releaseNorm(n);
    }
  }
  typedArraySet(p.mean, batchMean, 0);
  typedArraySet(p.invStd, invStd, 0);
  let updated = false;
  if (p.runningMean && p.runningVar && M > 0 && C > 0) {
    const n = makeNorm(Phase.update, batchMean, { samples: 1, outer: 0, stats: C, inner: 0 }, { groups: C, size: 1, run: 1 }, {
      factor: momentumFactor(p.momentum, p.numBatchesTracked),
      varScale: unbiasedScale(p.unbiased, M),
      skipNonFinite: p.skipNonFinite,
    });
    const t = n.tensors;
    t[Slot.runningMean] = p.runningMean;
    t[Slot.runningVar] = p.runningVar;
    t[Slot.mean] = batchMean;
    t[Slot.variance] = batchVar;
    try {
      updated = b.run(n) === 1;
    } finally {
      releaseNorm(n);
    }
  }
  return {
    y: p.y as T,
    mean: p.mean as T,
    invStd: p.invStd as T,
    updated,
    numBatchesTracked: nextCount(p.numBatchesTracked, updated),
    count: M,
  };
}

// ---------------------------------------------------------------------------------------------
// Backward

interface PreparedSyncBackward {
  shape: Shape;
  dtype: DType;
  dy: FloatArray;
  x: FloatArray;
  mean: FloatArray;
  invStd: FloatArray;
  gamma: FloatArray | null;
  y: FloatArray | null;
  dx: FloatArray;
  dgamma: FloatArray;
  dbeta: FloatArray;
  relu: boolean;
  sig: number[];
}

function prepareBackward(inputs: unknown, options: unknown, outArg: unknown): PreparedSyncBackward {
  const opts = parseOptions(options, BACKWARD_OPTIONS, 'syncBatchNormBackward');
  const input = checkObject(inputs, 'inputs');
  const dyValue = input.dy;
  const xValue = input.x;
  const shapeValue = input.shape;
  const meanValue = input.mean;
  const invStdValue = input.invStd;
  const gammaValue = input.gamma;
  const yValue = input.y;
  const rValue = input.r;
  const dValue = input.d;
  const dims = readShape(shapeValue);
  const out = checkOut(outArg);
  const dxValue = out?.dx;
  const dgammaValue = out?.dgamma;
  const dbetaValue = out?.dbeta;
  // no caller code runs from here on
  if (!opts.training) throw new RangeError('options.training must be true for syncBatchNormBackward (with fixed statistics use batchNormBackward)');
  if (opts.virtualBatchSize !== null) throw new RangeError('options.virtualBatchSize is not supported by syncBatchNormBackward (give null)');
  if ((rValue !== undefined && rValue !== null) || (dValue !== undefined && dValue !== null)) {
    throw new TypeError('r and d (Batch Renormalization) are not supported by syncBatchNormBackward');
  }
  const shape = shapeOf(dims, opts.layout);
  const { x, dtype } = checkTensor(xValue, 'x', shape);
  const dy = checkFloatArray(dyValue, 'dy', dtype, shape.elements);
  const C = shape.geometry.channels;
  const mean = checkFloatArray(meanValue, 'mean', dtype, C);
  const invStd = checkFloatArray(invStdValue, 'invStd', dtype, C);
  const gamma = checkOptionalFloatArray(gammaValue, 'gamma', dtype, C);
  const y = checkOptionalFloatArray(yValue, 'y', dtype, shape.elements);
  if (opts.activation === 'relu' && y === null) {
    throw new TypeError(`y (the forward output) is required with activation 'relu', received ${describe(yValue)}`);
  }
  if (opts.activation === 'none' && y !== null) {
    throw new RangeError(`y is only used with activation 'relu', received it with activation 'none'`);
  }
  const dx = output(dxValue, 'out.dx', dtype, shape.elements, shape.dims, 'its product');
  const dgamma = output(dgammaValue, 'out.dgamma', dtype, C, shape.dims, 'its channel dim');
  const dbeta = output(dbetaValue, 'out.dbeta', dtype, C, shape.dims, 'its channel dim');
  const arrays = [dx, dgamma, dbeta, dy, x, mean, invStd, gamma, y];
  checkNoOverlap(BACKWARD_NAMES, arrays, 3, 0, 3);
  checkAllFixed(BACKWARD_NAMES, arrays);
  const relu = opts.activation === 'relu';
  const sig = signature(BACKWARD, shape.dims, [dtype === 'float64' ? 1 : 0, layoutCode(opts.layout), relu ? 1 : 0, gamma ? 1 : 0]);
  return { shape, dtype, dy, x, mean, invStd, gamma, y, dx, dgamma, dbeta, relu, sig };
}

/**
 * Backward of SyncBatchNorm (training), with the whole batch's sums: on every rank
 *   Σg = Σ_r Σ_{shard r} g, Σg·x̂ likewise (summed in rank order in float64, g = dy masked by
 *   y > 0 under 'relu', x̂ = (x − mean)·invStd with the saved mean/invStd of syncBatchNormTrain),
 *   dx = γ·invStd/M · (M·g − Σg − x̂·Σg·x̂) on this rank's shard, M the whole batch's count,
 *   dgamma = Σg·x̂, dbeta = Σg of the whole batch (bitwise the same on every rank: averaging them
 *   across ranks, as data-parallel training does with other gradients, leaves them as they are).
 * `inputs`, `options` and `out` as batchNormBackward's (training, without r/d or virtualBatchSize).
 * @throws (rejects) as {@link syncBatchNormTrain}; a rejected call has written nothing.
 */
export async function syncBatchNormBackward<T extends FloatArray>(
  inputs: BackwardInputs<T>,
  options: (BackwardOptions & FamilyOptions) | undefined,
  collective: Collective,
  out?: BackwardOut<T>,
): Promise<BackwardResult<T>> {
  const group = readCollective(collective);
  const b = getBackend();
  let p: PreparedSyncBackward;
  try {
    p = prepareBackward(inputs, options, out);
  } catch (e) {
    return failBeforeExchange(group, e);
  }
  const { shape, dtype } = p;
  const C = shape.geometry.channels;
  const local = shape.perChannel;
  const sumGX = allocateFloat(dtype, C, 'Σg·x̂', 'its channel dim');
  const sumG = allocateFloat(dtype, C, 'Σg', 'its channel dim');
  const body = new Float64Array(1 + 2 * C);
  body[0] = local;
  if (shape.elements > 0) {
    const n = descriptor(Phase.backward, p.x, shape, { relu: p.relu, training: true, sumsOnly: true });
    const t = n.tensors;
    t[Slot.dy] = p.dy;
    t[Slot.x] = p.x;
    t[Slot.mean] = p.mean;
    t[Slot.invStd] = p.invStd;
    t[Slot.gamma] = p.gamma;
    t[Slot.y] = p.y;
    t[Slot.dgamma] = sumGX;
    t[Slot.dbeta] = sumG;
    try {
      await runAsync(b, n);
    } catch (e) {
      return failBeforeExchange(group, e);
    } finally {
      releaseNorm(n);
    }
    for (let c = 0; c < C; c++) {
      body[1 + c] = sumG[c];
      body[1 + C + c] = sumGX[c];
    }
  }
  const all = await group.allGather(payload(p.sig, body, body.length));
  const parts = bodies(all, group.size, p.sig, BACKWARD_FIELDS, 'syncBatchNormBackward', body.length);
  // The whole batch's sums, in rank order.
  let M = 0;
  const g = new Float64Array(C);
  const gx = new Float64Array(C);
  for (const part of parts) {
    M += part[0];
    if (!(part[0] > 0)) continue;
    for (let c = 0; c < C; c++) {
      g[c] += part[1 + c];
      gx[c] += part[1 + C + c];
    }
  }
  for (let c = 0; c < C; c++) {
    sumG[c] = g[c];
    sumGX[c] = gx[c];
  }
  if (shape.elements > 0) {
    const n = descriptor(Phase.backward, p.x, shape, { relu: p.relu, training: true, givenSums: true, sumsCount: M });
    const t = n.tensors;
    t[Slot.dy] = p.dy;
    t[Slot.x] = p.x;
    t[Slot.mean] = p.mean;
    t[Slot.invStd] = p.invStd;
    t[Slot.gamma] = p.gamma;
    t[Slot.y] = p.y;
    t[Slot.dgamma] = sumGX;
    t[Slot.dbeta] = sumG;
    t[Slot.dx] = p.dx;
    try {
      await runAsync(b, n);
    } finally {
      releaseNorm(n);
    }
  }
  typedArraySet(p.dgamma, sumGX, 0);
  typedArraySet(p.dbeta, sumG, 0);
  return { dx: p.dx as T, dgamma: p.dgamma as T, dbeta: p.dbeta as T };
}
