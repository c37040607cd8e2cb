/**
 * A Collective over one SharedArrayBuffer (worker_threads, or Web Workers on a cross-origin
 * isolated page): the group is created on the main thread, handed to every worker (postMessage
 * or workerData), and each worker takes its rank with sharedCollective. No thread blocks and no
 * loop polls: a rank writes its array into its slot, bumps a shared counter and notifies;
 * waiting ranks sleep in Atomics.waitAsync on that counter. Two banks of slots alternate by step,
 * so a rank may start step s + 1 while another still reads step s.
 *
 * Layout (Int32 words, then Float64 banks 8-byte aligned):
 *   [0] bell: bumped on every arrival and failure; [1] maxLength;
 *   [2 + r] the step count rank r has arrived at (step + 1); [2 + size + r] nonzero: rank r failed
 *   banks[step % 2][r]: [length, data (maxLength)] in float64.
 */
import { describe } from '../validate.js';
import { checkRankSize, checkTimeout, CollectiveError, pendingTimer, rankList, type Collective } from './collective.js';

/** What the main thread hands to its workers; structured-clonable. */
export interface SharedCollectiveGroup {
  readonly buffer: SharedArrayBuffer;
  readonly size: number;
  /** the longest array a rank may send (float64 values) */
  readonly maxLength: number;
}

// Atomics.waitAsync (ES2024; Node 16+, Chromium 87+), typed here for older lib settings.
type WaitAsync = (array: Int32Array, index: number, value: number, timeout?: number) => { async: false; value: string } | { async: true; value: Promise<string> };
const waitAsync = (Atomics as unknown as { waitAsync?: WaitAsync }).waitAsync;

const BELL = 0;
const HEADER = 2;

function wordsOf(size: number): number {
  const words = HEADER + 2 * size;
  return words + (words % 2); // the banks 8-byte aligned
}

/**
 * A group of `size` ranks for sharedCollective. maxLength: the longest array any rank sends, in
 * float64 values (SyncBatchNorm sends about 2·C + 20 for C channels; default 16384).
 */
export function createSharedCollectiveGroup(size: number, options?: { maxLength?: number }): SharedCollectiveGroup {
  if (typeof size !== 'number' || !Number.isSafeInteger(size) || size < 1 || size > 4096) {
    throw new RangeError(`size must be an integer in [1, 4096], received ${describe(size)}`);
  }
  if (options !== undefined && (typeof options !== 'object' || options === null)) {
    throw new TypeError(`options must be an object, received ${describe(options)}`);
  }
  const maxLength = options?.maxLength ?? 16384;
  if (typeof maxLength !== 'number' || !Number.isSafeInteger(maxLength) || maxLength < 1 || maxLength > 1 << 24) {
    throw new RangeError(`options.maxLength must be an integer in [1, 2^24], received ${describe(maxLength)}`);
  }
  if (typeof SharedArrayBuffer !== 'function') {
    throw new TypeError('SharedArrayBuffer is not available (in a browser: serve the page cross-origin isolated, or use channelCollective)');
  }
  const bytes = wordsOf(size) * 4 + 2 * size * (1 + maxLength) * 8;
  const buffer = new SharedArrayBuffer(bytes);
  new Int32Array(buffer)[1] = maxLength;
  return { buffer, size, maxLength };
}

/**
 * Marks a rank failed (e.g. from the main thread when its worker exits): every rank waiting for
 * it rejects at once, naming it, and later exchanges of the group reject.
 */
export function markRankFailed(group: SharedCollectiveGroup, rank: number): void {
  const { buffer, size } = readGroup(group);
  checkRankSize(rank, size, 'rank');
  const words = new Int32Array(buffer, 0, wordsOf(size));
  Atomics.store(words, HEADER + size + rank, 1);
  Atomics.add(words, BELL, 1);
  Atomics.notify(words, BELL);
}

function readGroup(group: unknown): SharedCollectiveGroup {
  if (typeof group !== 'object' || group === null) {
    throw new TypeError(`group must be what createSharedCollectiveGroup returned, received ${describe(group)}`);
  }
  const g = group as Record<string, unknown>;
  const buffer = g.buffer;
  const size = g.size;
  const maxLength = g.maxLength;
  if (!(buffer instanceof SharedArrayBuffer)) throw new TypeError(`group.buffer must be a SharedArrayBuffer, received ${describe(buffer)}`);
  if (typeof size !== 'number' || !Number.isSafeInteger(size) || size < 1) throw new RangeError(`group.size must be an integer >= 1, received ${describe(size)}`);
  if (typeof maxLength !== 'number' || !Number.isSafeInteger(maxLength) || maxLength < 1) throw new RangeError(`group.maxLength must be an integer >= 1, received ${describe(maxLength)}`);
  if (buffer.byteLength !== wordsOf(size) * 4 + 2 * size * (1 + maxLength) * 8 || new Int32Array(buffer)[1] !== maxLength) {
    throw new RangeError('group.buffer does not match group.size and group.maxLength (use createSharedCollectiveGroup)');
  }
  return { buffer, size, maxLength };
}

/**
 * Rank `rank` of a shared group (call once per rank, in its worker). timeout: milliseconds a rank
 * waits for the others before rejecting with a CollectiveError naming the ranks that did not
 * arrive (default 60000). A pending exchange keeps its thread's event loop alive; an idle
 * collective holds nothing. After a failed exchange the collective rejects every call.
 */
export function sharedCollective(group: SharedCollectiveGroup, rank: number, options?: { timeout?: number }): Collective {
  const { buffer, size, maxLength } = readGroup(group);
  checkRankSize(rank, size, 'sharedCollective');
  const timeout = checkTimeout(options?.timeout, 'options.timeout');
  if (typeof waitAsync !== 'function') {
    throw new TypeError('Atomics.waitAsync is not available in this JavaScript engine (use channelCollective)');
  }
  const wait: WaitAsync = waitAsync;
  const words = new Int32Array(buffer, 0, wordsOf(size));
  const slots = new Float64Array(buffer, wordsOf(size) * 4);
  const slot = (step: number, r: number) => ((step % 2) * size + r) * (1 + maxLength);
  let step = 0;
  let broken: Error | null = null;
  const fail = (e: Error): Error => {
    broken = e;
    return e;
  };

  async function allGather(data: Float64Array): Promise<Float64Array[]> {
    if (!(data instanceof Float64Array)) throw new TypeError(`data must be a Float64Array, received ${describe(data)}`);
    if (broken) throw broken;
    const at = step++;
    if (data.length > maxLength) {
      markRankFailed(group, rank);
      throw fail(new RangeError(`data must hold at most ${maxLength} values (the group's maxLength), received ${data.length}`));
    }
    const mine = slot(at, rank);
    slots[mine] = data.length;
    slots.set(data, mine + 1);
    Atomics.store(words, HEADER + rank, at + 1);
    Atomics.add(words, BELL, 1);
    Atomics.notify(words, BELL);
    let timedOut = false;
    let wake: (() => void) | null = null;
    const timer = pendingTimer(timeout, () => {
      timedOut = true;
      wake?.();
    });
    try {
      for (;;) {
        const bell = Atomics.load(words, BELL);
        const missing: number[] = [];
        const failed: number[] = [];
        for (let r = 0; r < size; r++) {
          if (Atomics.load(words, HEADER + r) < at + 1) {
            missing.push(r);
            if (Atomics.load(words, HEADER + size + r) !== 0) failed.push(r);
          }
        }
        if (missing.length === 0) break;
        if (failed.length > 0) {
          throw fail(new CollectiveError(`SyncBatchNorm: ${rankList(failed)} of ${size} failed before exchange ${at}`, failed));
        }
        if (timedOut) {
          throw fail(new CollectiveError(`SyncBatchNorm: ${rankList(missing)} of ${size} did not arrive at exchange ${at} within ${timeout} ms`, missing));
        }
        const waiting = wait.call(Atomics, words, BELL, bell, Number.isFinite(timeout) ? timeout : undefined);
        if (waiting.async) {
          await new Promise<void>((resolve) => {
            wake = resolve;
            void waiting.value.then(() => resolve());
          });
          wake = null;
        }
      }
    } finally {
      timer.clear();
    }
    const all: Float64Array[] = [];
    for (let r = 0; r < size; r++) {
      const at2 = slot(at, r);
      all.push(slots.slice(at2 + 1, at2 + 1 + slots[at2]));
    }
    return all;
  }
  return { rank, size, allGather };
}
