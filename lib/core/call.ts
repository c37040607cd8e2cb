/**
 * What every op's façade shares around building its descriptor: outputs the caller gave or that
 * are allocated, the running-update scalars, and the async rules (lib/ops/*.ts).
 */
import type { Backend } from '../backend.js';
import { getBackend } from '../registry.js';
import { Slot, type SlotName } from './abi.js';
import { releaseNorm, type FloatArray, type Norm } from './descriptor.js';
import { allocateFloat, checkFloatArray, checkNotResizable, checkObject, type DType } from '../validate.js';

/**
 * The caller's `out[name]` value (already read) checked, or a new array of `length`; `per` says
 * what the length follows in the error when it cannot be allocated (BatchNorm: 'its channel dim'
 * or 'its product').
 */
export function output(given: unknown, name: string, dtype: DType, length: number, dims: readonly number[], per: string): FloatArray {
  return given === undefined || given === null
    ? allocateFloat(dtype, length, name, `shape [${dims.join(', ')}] (${per})`)
    : checkFloatArray(given, name, dtype, length);
}

/** The `out` argument as an object to read once, or undefined. */
export function checkOut(out: unknown): Record<string, unknown> | undefined {
  return out === undefined || out === null ? undefined : checkObject(out, 'out');
}

/** The running update's weight of the new batch: 1 − momentum, or 1/(n + 1) for the cumulative average. */
export function momentumFactor(momentum: number | null, numBatchesTracked: number): number {
  return momentum === null ? 1 / (numBatchesTracked + 1) : 1 - momentum;
}

/** M/(M − 1) for the unbiased running variance, else 1. */
export function unbiasedScale(unbiased: boolean, count: number): number {
  return unbiased ? count / (count - 1) : 1;
}

/** numBatchesTracked after a call: one more when updated, saturating at 2^53 - 1 (README). */
export function nextCount(numBatchesTracked: number, updated: boolean): number {
  return updated && numBatchesTracked < Number.MAX_SAFE_INTEGER ? numBatchesTracked + 1 : numBatchesTracked;
}

/** Async variants refuse arrays over resizable ArrayBuffers (checkNotResizable). */
export function checkAllFixed(names: readonly string[], arrays: readonly (FloatArray | null)[]): void {
  for (let i = 0; i < arrays.length; i++) checkNotResizable(arrays[i], names[i]);
}

/** Runs a descriptor on the backend, off the calling thread when `async` and the backend can. */
export function run(b: Backend, n: Norm): number {
  return b.run(n);
}
export async function runAsync(b: Backend, n: Norm): Promise<number> {
  return b.runAsync ? b.runAsync(n) : b.run(n);
}

/** The product of dims[from, to). */
export function product(dims: readonly number[], from = 0, to = dims.length): number {
  let p = 1;
  for (let i = from; i < to; i++) p *= dims[i];
  return p;
}

/**
 * A call read and checked: the descriptor to run (null: nothing to compute, e.g. no elements)
 * and the result, which `settle` may complete from what the run returned.
 */
export interface Prepared<R> {
  norm: Norm | null;
  result: R;
  settle?: (ran: number) => void;
}

type Prepare<R> = (inputs: unknown, options: unknown, out: unknown, async: boolean) => Prepared<R>;

/** An op's sync function: choose the backend, read and check (prepare), run, return. */
export function callSync<R>(prepare: Prepare<R>, inputs: unknown, options: unknown, out: unknown): R {
  const b = getBackend();
  const p = prepare(inputs, options, out, false);
  let ran = 0;
  if (p.norm) {
    ran = b.run(p.norm);
    releaseNorm(p.norm);
  }
  p.settle?.(ran);
  return p.result;
}

/** An op's async function: the same, the run off the calling thread where the backend can. */
export async function callAsync<R>(prepare: Prepare<R>, inputs: unknown, options: unknown, out: unknown): Promise<R> {
  const b = getBackend();
  const p = prepare(inputs, options, out, true);
  let ran = 0;
  if (p.norm) {
    ran = await runAsync(b, p.norm);
    releaseNorm(p.norm);
  }
  p.settle?.(ran);
  return p.result;
}

/** Puts each named tensor into the descriptor's table (null: absent). */
export function bind(n: Norm, tensors: Partial<Record<SlotName, FloatArray | null>>): Norm {
  for (const name in tensors) n.tensors[Slot[name as SlotName]] = tensors[name as SlotName] ?? null;
  return n;
}
