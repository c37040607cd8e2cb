/**
 * Re-estimating a BatchNorm's running statistics on a stream of batches (AdaBN; PyTorch's
 * torch.optim.swa_utils.update_bn), README "BatchNorm variants". Each batch's per-channel mean and
 * biased variance come from the public {@link moments} (every backend); they are combined in
 * float64 and written to the target once, at the end, so a stream that throws (a bad batch, an
 * iterator that fails) leaves the target as it was.
 *
 * Modes, per channel, with batch b holding n_b values per channel, mean m_b, biased variance v_b:
 *   'cumulative' (PyTorch's update_bn: reset, momentum None, one training forward per batch):
 *     runningMean = Σ m_b / B, runningVar = Σ v_b·n_b/(n_b − 1) / B — the cumulative average,
 *     evaluated as PyTorch does, running ← running + (batch − running)·… with factor 1/k;
 *   'exact': the population mean and unbiased variance of every value seen, whatever the batch
 *     sizes: Chan's merge of (count, mean, M2 = v_b·n_b) in float64,
 *     δ = m_b − mean, mean += δ·n_b/n, M2 += M2_b + δ²·n·n_b/(n + n_b); runningVar = M2/(n − 1).
 */
import type { FloatArray } from '../core/descriptor.js';
import { floatKind, typedArrayLength } from '../intrinsics.js';
import { checkFloatArray, checkObject, describe, readShape, shapeOf, type Layout } from '../validate.js';
import { moments } from './batchnorm.js';

export type RecomputeMode = 'cumulative' | 'exact';

/** A batch: `{ x, shape }`, or just `x` when `options.shape` gives every batch's shape. */
export type RecomputeBatch<T extends FloatArray = FloatArray> = T | { x: T; shape: readonly number[] };

/** The running statistics to re-estimate (a BatchNorm layer is one). */
export interface RecomputeTarget<T extends FloatArray = FloatArray> {
  runningMean: T | null;
  runningVar: T | null;
  numBatchesTracked?: number;
  /** a layer's layout (used when options.layout is not given) */
  layout?: Layout;
}

export interface RecomputeOptions {
  /** 'cumulative' (default, PyTorch's update_bn) or 'exact' (population statistics, Chan merges) */
  mode?: RecomputeMode;
  /** the batches' layout (default: the layer's, else 'channels-first') */
  layout?: Layout;
  /** every batch's shape, for batches given as bare arrays */
  shape?: readonly number[];
  /** called after each batch with the batches and the values per channel seen so far */
  onProgress?: (batchesSeen: number, valuesSeen: number) => void;
}

export interface RecomputeSummary {
  mode: RecomputeMode;
  /** batches that held values (an empty batch, N = 0, is skipped and not counted) */
  batches: number;
  /** values per channel seen (Σ n_b) */
  values: number;
  /** the target's numBatchesTracked now (cumulative: `batches`, as PyTorch; exact: `batches` too) */
  numBatchesTracked: number;
  /** whether the running statistics were written (false for 'exact' with no values) */
  updated: boolean;
}

/** The per-channel accumulator of either mode, in float64. */
class Accumulator {
  readonly mean: Float64Array;
  readonly second: Float64Array;
  batches = 0;
  values = 0;
  constructor(
    readonly mode: RecomputeMode,
    channels: number,
  ) {
    this.mean = new Float64Array(channels);
    // cumulative: the running variance (PyTorch's reset value 1); exact: M2
    this.second = new Float64Array(channels).fill(mode === 'cumulative' ? 1 : 0);
  }

  add(mean: FloatArray, variance: FloatArray, n: number, where: string): void {
    const C = this.mean.length;
    if (this.mode === 'cumulative') {
      if (n === 1) {
        throw new RangeError(`${where}: x must have more than 1 value per channel for the unbiased batch variance (mode 'cumulative', as PyTorch's training forward), received 1`);
      }
      this.batches++;
      const factor = 1 / this.batches;
      for (let c = 0; c < C; c++) {
        // PyTorch's running update with momentum None: running = (1 − f)·running + f·batch
        this.mean[c] = (1 - factor) * this.mean[c] + factor * mean[c];
        this.second[c] = (1 - factor) * this.second[c] + factor * variance[c] * (n / (n - 1));
      }
    } else {
      const seen = this.values;
      const total = seen + n;
      for (let c = 0; c < C; c++) {
        const delta = mean[c] - this.mean[c];
        this.mean[c] += (delta * n) / total;
        this.second[c] += variance[c] * n + ((delta * delta * seen) / total) * n;
      }
      this.batches++;
    }
    this.values += n;
  }
}

interface ReadTarget {
  runningMean: FloatArray;
  runningVar: FloatArray;
  layout: Layout;
  setCount: ((n: number) => void) | null;
}

function readTarget(target: unknown, layoutOption: Layout | undefined): ReadTarget {
  const t = checkObject(target, 'target');
  const runningMeanValue = t.runningMean;
  const runningVarValue = t.runningVar;
  const layoutValue = t.layout;
  if (runningMeanValue === null || runningVarValue === null) {
    throw new TypeError('target must have running statistics (runningMean and runningVar; a BatchNorm layer with trackRunningStats), received null');
  }
  const runningMean = checkFloatArray(runningMeanValue, 'target.runningMean');
  const runningVar = checkFloatArray(runningVarValue, 'target.runningVar', floatKind(runningMean), typedArrayLength(runningMean));
  const layout = layoutOption ?? (layoutValue === 'channels-last' ? 'channels-last' : 'channels-first');
  // a BatchNorm layer's numBatchesTracked is an own property too
  const hasCount = Object.prototype.hasOwnProperty.call(t, 'numBatchesTracked');
  return { runningMean, runningVar, layout, setCount: hasCount ? (n) => ((t as { numBatchesTracked: number }).numBatchesTracked = n) : null };
}

function readOptions(options: unknown): { mode: RecomputeMode; layout: Layout | undefined; shape: number[] | null; onProgress: RecomputeOptions['onProgress'] | null } {
  if (options === undefined || options === null) return { mode: 'cumulative', layout: undefined, shape: null, onProgress: null };
  const o = checkObject(options, 'options');
  const known = ['mode', 'layout', 'shape', 'onProgress'];
  for (const key of Object.keys(o)) {
    if (!known.includes(key)) {
      throw new RangeError(`options.${key} is not an option of recomputeRunningStats (options: ${known.join(', ')})`);
    }
  }
  const mode = o.mode ?? 'cumulative';
  const layout = o.layout;
  const shape = o.shape;
  const onProgress = o.onProgress ?? null;
  if (mode !== 'cumulative' && mode !== 'exact') {
    if (typeof mode !== 'string') throw new TypeError(`options.mode must be a string, received ${describe(mode)}`);
    throw new RangeError(`options.mode must be 'cumulative' or 'exact', received '${mode}'`);
  }
  if (layout !== undefined && layout !== 'channels-first' && layout !== 'channels-last') {
    if (typeof layout !== 'string') throw new TypeError(`options.layout must be a string, received ${describe(layout)}`);
    throw new RangeError(`options.layout must be 'channels-first' or 'channels-last', received '${layout}'`);
  }
  if (onProgress !== null && typeof onProgress !== 'function') {
    throw new TypeError(`options.onProgress must be a function, received ${describe(onProgress)}`);
  }
  return {
    mode,
    layout: layout as Layout | undefined,
    shape: shape === undefined || shape === null ? null : readShape(shape, 'options.shape'),
    onProgress: onProgress as RecomputeOptions['onProgress'] | null,
  };
}

/** The statistics of one batch, with errors prefixed by the batch's index. */
function batchMoments(batch: unknown, index: number, target: ReadTarget, shape: number[] | null, acc: Accumulator): void {
  const where = `batch ${index}`;
  try {
    let x: unknown;
    let dims: number[];
    if (floatKind(batch) !== undefined) {
      if (shape === null) throw new TypeError('a batch given as a bare array needs options.shape, received none');
      x = batch;
      dims = shape;
    } else {
      const b = checkObject(batch, 'the batch');
      x = b.x;
      dims = readShape(b.shape);
    }
    const s = shapeOf(dims, target.layout);
    const C = typedArrayLength(target.runningMean);
    if (s.geometry.channels !== C) {
      throw new RangeError(`shape [${dims.join(', ')}] must have ${C} channels (target.runningMean's length) in its ${target.layout} channel dim, received ${s.geometry.channels}`);
    }
    const dtype = floatKind(target.runningMean);
    if (floatKind(x) !== undefined && floatKind(x) !== dtype) {
      throw new TypeError(`x must be a ${dtype === 'float32' ? 'Float32Array' : 'Float64Array'} like target.runningMean, received ${describe(x)}`);
    }
    if (s.elements === 0) return; // an empty batch adds nothing
    const m = moments({ x: x as FloatArray, shape: dims }, { layout: target.layout });
    acc.add(m.mean, m.variance, s.perChannel, where);
  } catch (e) {
    if (e instanceof TypeError) throw new TypeError(`${where}: ${(e as Error).message}`);
    if (e instanceof RangeError && !(e as Error).message.startsWith(where)) throw new RangeError(`${where}: ${(e as Error).message}`);
    throw e;
  }
}

function finish(acc: Accumulator, target: ReadTarget): RecomputeSummary {
  const C = acc.mean.length;
  let updated = true;
  if (acc.mode === 'cumulative') {
    // PyTorch resets first: no batch leaves mean 0, variance 1, count 0
    for (let c = 0; c < C; c++) {
      target.runningMean[c] = acc.mean[c];
      target.runningVar[c] = acc.second[c];
    }
  } else if (acc.values > 0) {
    for (let c = 0; c < C; c++) {
      target.runningMean[c] = acc.mean[c];
      target.runningVar[c] = acc.values > 1 ? acc.second[c] / (acc.values - 1) : NaN;
    }
  } else {
    updated = false;
  }
  const numBatchesTracked = acc.batches;
  if (updated && target.setCount) target.setCount(numBatchesTracked);
  return { mode: acc.mode, batches: acc.batches, values: acc.values, numBatchesTracked, updated };
}

/**
 * Recomputes the running statistics of `target` (a BatchNorm layer, or `{ runningMean, runningVar }`)
 * from `batches` (an iterable or async iterable of `{ x, shape }`, or of bare arrays with
 * `options.shape`), in the layer's layout (or `options.layout`). Mode 'cumulative' (default) is
 * PyTorch's update_bn: the average of the batch means and of the unbiased batch variances,
 * numBatchesTracked = the number of batches; 'exact' gives the population mean and unbiased
 * variance of all values seen (Chan merges in float64). Nothing is written until the stream ends;
 * the target's numBatchesTracked (a layer's, or an own property of a plain object) is set to the
 * batches seen. An empty batch (N = 0) is skipped.
 * @throws TypeError / RangeError naming the batch (`batch 3: x must have length …`) or the option;
 *   the target is then untouched.
 */
export async function recomputeRunningStats(
  target: RecomputeTarget,
  batches: Iterable<RecomputeBatch> | AsyncIterable<RecomputeBatch>,
  options?: RecomputeOptions,
): Promise<RecomputeSummary> {
  const o = readOptions(options);
  const t = readTarget(target, o.layout);
  const acc = new Accumulator(o.mode, typedArrayLength(t.runningMean));
  const source = batches as Partial<AsyncIterable<unknown> & Iterable<unknown>> | null;
  if (source === null || typeof source !== 'object' || (typeof source[Symbol.asyncIterator] !== 'function' && typeof source[Symbol.iterator] !== 'function')) {
    throw new TypeError(`batches must be an iterable or async iterable of { x, shape }, received ${describe(batches)}`);
  }
  let index = 0;
  for await (const batch of source as AsyncIterable<unknown>) {
    batchMoments(batch, index++, t, o.shape, acc);
    o.onProgress?.(acc.batches, acc.values);
  }
  return finish(acc, t);
}

/** {@link recomputeRunningStats} over a synchronous iterable, returning the summary directly. */
export function recomputeRunningStatsSync(target: RecomputeTarget, batches: Iterable<RecomputeBatch>, options?: RecomputeOptions): RecomputeSummary {
  const o = readOptions(options);
  const t = readTarget(target, o.layout);
  const acc = new Accumulator(o.mode, typedArrayLength(t.runningMean));
  const source = batches as Partial<Iterable<unknown>> | null;
  if (source === null || typeof source !== 'object' || typeof source[Symbol.iterator] !== 'function') {
    throw new TypeError(`batches must be an iterable of { x, shape }, received ${describe(batches)}`);
  }
  let index = 0;
  for (const batch of source as Iterable<unknown>) {
    batchMoments(batch, index++, t, o.shape, acc);
    o.onProgress?.(acc.batches, acc.values);
  }
  return finish(acc, t);
}
