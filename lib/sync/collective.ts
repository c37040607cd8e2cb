/**
 * The seam between SyncBatchNorm and whatever moves bytes between workers: a `Collective` is a
 * rank, a size and an all-gather of a small Float64Array (README "SyncBatchNorm"). Anything that
 * can deliver every rank's array to every rank in rank order implements it in a few lines; the
 * package ships three: ranks inside one thread (createLocalCollectives, here), worker_threads or
 * Web Workers over a SharedArrayBuffer (lib/sync/shared.ts) and any MessagePort-like channel
 * through a hub (lib/sync/channel.ts).
 */
import { describe } from '../validate.js';

/** One rank of a group of `size` ranks that exchange small arrays (README "SyncBatchNorm"). */
export interface Collective {
  /** this rank, 0 <= rank < size */
  readonly rank: number;
  /** ranks in the group, >= 1 */
  readonly size: number;
  /**
   * Every rank's `data` in rank order (element `rank` is this rank's own), the same on every rank.
   * Each rank calls it the same number of times, in the same order; the arrays may differ in
   * length. Rejects when a rank fails or does not arrive in time (a CollectiveError naming it).
   */
  allGather(data: Float64Array): Promise<Float64Array[]>;
}

/** A failed exchange: `ranks` are the ranks that failed or did not arrive (empty when unknown). */
export class CollectiveError extends Error {
  readonly ranks: readonly number[];
  constructor(message: string, ranks: readonly number[] = []) {
    super(message);
    this.name = 'CollectiveError';
    this.ranks = ranks;
  }
}

/** Default wait for the other ranks, in milliseconds. */
export const DEFAULT_TIMEOUT = 60_000;

/** `timeout` checked: a number of milliseconds > 0 (Infinity: wait forever). RangeError naming `name`. */
export function checkTimeout(value: unknown, name: string): number {
  if (value === undefined) return DEFAULT_TIMEOUT;
  if (typeof value !== 'number' || !(value > 0)) {
    throw new RangeError(`${name} must be a number of milliseconds > 0 (Infinity: no limit), received ${describe(value)}`);
  }
  return value;
}

/** A rank and size checked. */
export function checkRankSize(rank: unknown, size: unknown, what: string): { rank: number; size: number } {
  if (typeof size !== 'number' || !Number.isSafeInteger(size) || size < 1) {
    throw new RangeError(`${what}.size must be an integer >= 1, received ${describe(size)}`);
  }
  if (typeof rank !== 'number' || !Number.isSafeInteger(rank) || rank < 0 || rank >= size) {
    throw new RangeError(`${what}.rank must be an integer in [0, ${size - 1}], received ${describe(rank)}`);
  }
  return { rank, size };
}

/**
 * Reads a collective given by a caller once (rank, size and allGather), checked: TypeError or
 * RangeError naming `name`.
 */
export function readCollective(value: unknown, name = 'collective'): Collective {
  if (typeof value !== 'object' || value === null) {
    throw new TypeError(`${name} must be a Collective ({ rank, size, allGather }), received ${describe(value)}`);
  }
  const c = value as Record<string, unknown>;
  const rank = c.rank;
  const size = c.size;
  const allGather = c.allGather;
  if (typeof allGather !== 'function') {
    throw new TypeError(`${name}.allGather must be a function, received ${describe(allGather)}`);
  }
  checkRankSize(rank, size, name);
  return { rank: rank as number, size: size as number, allGather: (data) => Reflect.apply(allGather, value, [data]) as Promise<Float64Array[]> };
}

/** Missing ranks listed for a message: "rank 2" or "ranks 1, 3". */
export function rankList(ranks: readonly number[]): string {
  return ranks.length === 1 ? `rank ${ranks[0]}` : `ranks ${ranks.join(', ')}`;
}

/**
 * A timer for a pending exchange: rejects after `timeout` ms and keeps the event loop alive while
 * the exchange is pending (an Atomics.waitAsync or a message listener alone may not); cleared by
 * `clear`. Infinity: keeps the loop alive without a deadline.
 */
export function pendingTimer(timeout: number, onTimeout: () => void): { clear(): void } {
  const id = Number.isFinite(timeout) ? setTimeout(onTimeout, timeout) : setInterval(() => {}, 1 << 30);
  return { clear: () => (Number.isFinite(timeout) ? clearTimeout(id) : clearInterval(id)) };
}

export interface LocalCollectiveOptions {
  /** milliseconds a rank waits for the others (default 60000) */
  timeout?: number;
}

/**
 * `size` ranks inside one thread (each rank a separate async task, e.g. one per shard of a batch
 * split across async calls; also the collective for tests). A step completes when every rank has
 * called allGather; a rank waiting longer than `timeout` rejects naming the ranks that did not
 * arrive, and the group is then broken: every later call rejects.
 */
export function createLocalCollectives(size: number, options?: LocalCollectiveOptions): Collective[] {
  if (typeof size !== 'number' || !Number.isSafeInteger(size) || size < 1) {
    throw new RangeError(`size must be an integer >= 1, received ${describe(size)}`);
  }
  if (options !== undefined && (typeof options !== 'object' || options === null)) {
    throw new TypeError(`options must be an object, received ${describe(options)}`);
  }
  const timeout = checkTimeout(options?.timeout, 'options.timeout');
  interface Step {
    arrived: (Float64Array | undefined)[];
    count: number;
    waiters: { resolve(all: Float64Array[]): void; reject(e: Error): void }[];
  }
  const steps = new Map<number, Step>();
  let broken: CollectiveError | null = null;
  const breakAll = (e: CollectiveError) => {
    broken = e;
    for (const step of steps.values()) for (const w of step.waiters) w.reject(e);
    steps.clear();
  };
  const ranks: Collective[] = [];
  for (let rank = 0; rank < size; rank++) {
    let next = 0;
    ranks.push({
      rank,
      size,
      allGather(data: Float64Array): Promise<Float64Array[]> {
        if (!(data instanceof Float64Array)) {
          return Promise.reject(new TypeError(`data must be a Float64Array, received ${describe(data)}`));
        }
        if (broken) return Promise.reject(broken);
        const at = next++;
        let step = steps.get(at);
        if (!step) {
          step = { arrived: new Array(size).fill(undefined), count: 0, waiters: [] };
          steps.set(at, step);
        }
        step.arrived[rank] = data.slice();
        step.count++;
        if (step.count === size) {
          steps.delete(at);
          const all = step.arrived as Float64Array[];
          for (const w of step.waiters) w.resolve(all.map((a) => a.slice()));
          return Promise.resolve(all);
        }
        const s = step;
        return new Promise<Float64Array[]>((resolve, reject) => {
          const timer = pendingTimer(timeout, () => {
            const missing = s.arrived.flatMap((a, r) => (a === undefined ? [r] : []));
            breakAll(new CollectiveError(`SyncBatchNorm: ${rankList(missing)} of ${size} did not arrive at exchange ${at} within ${timeout} ms`, missing));
          });
          s.waiters.push({
            resolve: (all) => {
              timer.clear();
              resolve(all);
            },
            reject: (e) => {
              timer.clear();
              reject(e);
            },
          });
        });
      },
    });
  }
  return ranks;
}
