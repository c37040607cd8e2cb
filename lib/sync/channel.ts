/**
 * A Collective over MessagePort-like channels, through a hub: each rank talks to one hub (the
 * thread or process that started the workers) over any channel that sends and receives messages —
 * a worker_threads Worker / parentPort or MessagePort, a Web Worker / `self`, a child_process
 * ChildProcess / `process` (IPC). The hub gathers a step's arrays from every rank and sends the
 * whole set back to each. It also watches its channels: a worker or child that exits, or a step
 * not complete within the hub's timeout, makes every waiting rank reject naming the rank.
 *
 * Channels with `send` (child_process IPC, JSON by default) carry arrays as base64 of their bytes
 * (NaN and ±Infinity survive); channels with `postMessage` carry Float64Arrays as they are.
 */
import { describe } from '../validate.js';
import { checkRankSize, checkTimeout, CollectiveError, pendingTimer, rankList, type Collective } from './collective.js';

/**
 * A channel: an object with `postMessage` or `send`, and `on`/`off` (Node) or
 * `addEventListener`/`removeEventListener` (browsers) for 'message'.
 */
export type MessageChannelLike = object;

const TAG = 'simdnorm.allGather';

interface Endpoint {
  post(message: unknown): void;
  listen(fn: (message: unknown) => void): () => void;
  /** the channel's end (worker or process exit, port close, worker error); null when it has none */
  watchEnd(fn: (why: string) => void): (() => void) | null;
  /** arrays as base64 (send: JSON by default) */
  text: boolean;
}

type Fn = (...args: unknown[]) => unknown;

function endpointOf(channel: unknown, name: string): Endpoint {
  if ((typeof channel !== 'object' && typeof channel !== 'function') || channel === null) {
    throw new TypeError(`${name} must be a MessagePort-like channel (postMessage or send, and on/off or addEventListener), received ${describe(channel)}`);
  }
  const c = channel as Record<string, unknown>;
  const send = c.send;
  const postMessage = c.postMessage;
  const on = c.on;
  const off = c.off ?? c.removeListener;
  const add = c.addEventListener;
  const remove = c.removeEventListener;
  const text = typeof send === 'function';
  if (!text && typeof postMessage !== 'function') {
    throw new TypeError(`${name} must have a postMessage or send method, received ${describe(channel)}`);
  }
  const emitter = typeof on === 'function' && typeof off === 'function';
  if (!emitter && !(typeof add === 'function' && typeof remove === 'function')) {
    throw new TypeError(`${name} must have on/off or addEventListener/removeEventListener methods, received ${describe(channel)}`);
  }
  const subscribe = (event: string, fn: (value: unknown) => void): (() => void) => {
    if (emitter) {
      Reflect.apply(on as Fn, channel, [event, fn]);
      return () => Reflect.apply(off as Fn, channel, [event, fn]);
    }
    const h = (e: unknown) => fn(event === 'message' ? (e as { data?: unknown }).data : e);
    Reflect.apply(add as Fn, channel, [event, h]);
    return () => Reflect.apply(remove as Fn, channel, [event, h]);
  };
  return {
    post: (m) => Reflect.apply((text ? send : postMessage) as Fn, channel, [m]),
    listen: (fn) => subscribe('message', fn),
    watchEnd: (fn) => {
      if (emitter) {
        const a = subscribe('exit', (code) => fn(`exited with code ${String(code)}`));
        const b = subscribe('close', () => fn('closed its channel'));
        return () => {
          a();
          b();
        };
      }
      return subscribe('error', (e) => fn(`failed: ${String((e as { message?: unknown }).message ?? e)}`));
    },
    text,
  };
}

type Wire = Float64Array | string;

function encode(data: Float64Array, text: boolean): Wire {
  if (!text) return data;
  const bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  const B = (globalThis as { Buffer?: { from(b: Uint8Array): { toString(e: string): string } } }).Buffer;
  if (B) return B.from(bytes).toString('base64');
  let s = '';
  for (let i = 0; i < bytes.length; i++) s += String.fromCharCode(bytes[i]);
  return btoa(s);
}

function decode(wire: unknown): Float64Array | null {
  if (wire instanceof Float64Array) return wire;
  if (typeof wire !== 'string') return null;
  const s = atob(wire);
  if (s.length % 8 !== 0) return null;
  const bytes = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) bytes[i] = s.charCodeAt(i);
  return new Float64Array(bytes.buffer);
}

interface Message {
  tag: typeof TAG;
  step: number;
  rank?: number;
  data?: Wire;
  all?: Wire[];
  error?: string;
  ranks?: number[];
}

function isMessage(m: unknown): m is Message {
  return typeof m === 'object' && m !== null && (m as Message).tag === TAG && typeof (m as Message).step === 'number';
}

export interface CollectiveHub {
  readonly size: number;
  /** Stops listening to the channels (pending exchanges are left to their ranks' timeouts). */
  close(): void;
}

/**
 * The hub of a channel collective: channels[r] reaches rank r (which calls channelCollective on
 * its end). timeout: milliseconds from a step's first arrival until the hub gives up on the ranks
 * that have not arrived (default 60000; give the ranks a longer one, so that the hub's error, which
 * names the missing ranks, is the one they see). After a failure every exchange is rejected.
 */
export function createCollectiveHub(channels: readonly MessageChannelLike[], options?: { timeout?: number }): CollectiveHub {
  if (!Array.isArray(channels) || channels.length < 1) {
    throw new TypeError(`channels must be a non-empty array of channels (one per rank), received ${describe(channels)}`);
  }
  const timeout = checkTimeout(options?.timeout, 'options.timeout');
  const size = channels.length;
  const ends = channels.map((c, r) => endpointOf(c, `channels[${r}]`));
  interface Step {
    arrived: (Float64Array | undefined)[];
    timer: { clear(): void };
  }
  const steps = new Map<number, Step>();
  let broken: { error: string; ranks: number[] } | null = null;
  const reply = (r: number, m: Omit<Message, 'tag'>) => {
    try {
      ends[r].post({ tag: TAG, ...m });
    } catch {
      // a rank whose channel is gone: its own exit is reported to the others
    }
  };
  const breakAll = (error: string, ranks: number[]) => {
    if (broken) return;
    broken = { error, ranks };
    for (const [step, s] of steps) {
      s.timer.clear();
      s.arrived.forEach((a, r) => a && reply(r, { step, error, ranks }));
    }
    steps.clear();
  };
  const unsubscribe: (() => void)[] = [];
  ends.forEach((end, r) => {
    unsubscribe.push(
      end.listen((m) => {
        if (!isMessage(m) || m.rank !== r) return;
        const step = m.step;
        if (broken) return reply(r, { step, error: broken.error, ranks: broken.ranks });
        const data = decode(m.data);
        if (!data) return breakAll(`SyncBatchNorm: rank ${r} sent an unreadable array at exchange ${step}`, [r]);
        let s = steps.get(step);
        if (!s) {
          const arrived: (Float64Array | undefined)[] = new Array(size).fill(undefined);
          s = {
            arrived,
            timer: pendingTimer(timeout, () => {
              const missing = arrived.flatMap((a, k) => (a ? [] : [k]));
              breakAll(`SyncBatchNorm: ${rankList(missing)} of ${size} did not arrive at exchange ${step} within ${timeout} ms`, missing);
            }),
          };
          steps.set(step, s);
        }
        s.arrived[r] = data;
        if (s.arrived.every((a) => a !== undefined)) {
          s.timer.clear();
          steps.delete(step);
          const all = s.arrived as Float64Array[];
          ends.forEach((e, k) => reply(k, { step, all: all.map((a) => encode(a, e.text)) }));
        }
      }),
    );
    const stop = end.watchEnd((why) => breakAll(`SyncBatchNorm: rank ${r} ${why}`, [r]));
    if (stop) unsubscribe.push(stop);
  });
  return {
    size,
    close() {
      for (const u of unsubscribe.splice(0)) u();
      for (const s of steps.values()) s.timer.clear();
      steps.clear();
    },
  };
}

/**
 * Rank `rank` of `size`, talking to the hub (createCollectiveHub) over `channel` — in a worker:
 * `parentPort` (worker_threads), `self` (Web Worker), `process` (a child_process with IPC).
 * timeout: milliseconds this rank waits for the hub's answer (default 60000); the hub's error,
 * naming the missing or failed rank, comes first when the hub's timeout is shorter. The channel is
 * listened to only while an exchange is pending, so an idle collective keeps nothing alive.
 */
export function channelCollective(channel: MessageChannelLike, options: { rank: number; size: number; timeout?: number }): Collective {
  const end = endpointOf(channel, 'channel');
  if (typeof options !== 'object' || options === null) {
    throw new TypeError(`options must be an object with rank and size, received ${describe(options)}`);
  }
  const { rank, size } = checkRankSize(options.rank, options.size, 'options');
  const timeout = checkTimeout(options.timeout, 'options.timeout');
  let next = 0;
  let broken: Error | null = null;
  return {
    rank,
    size,
    allGather(data: Float64Array): Promise<Float64Array[]> {
      if (!(data instanceof Float64Array)) return Promise.reject(new TypeError(`data must be a Float64Array, received ${describe(data)}`));
      if (broken) return Promise.reject(broken);
      const step = next++;
      return new Promise<Float64Array[]>((resolve, reject) => {
        const done = (e: Error | null, all?: Float64Array[]) => {
          stop();
          timer.clear();
          if (e) {
            broken = e;
            reject(e);
          } else resolve(all!);
        };
        const stop = end.listen((m) => {
          if (!isMessage(m) || m.step !== step) return;
          if (m.error !== undefined) return done(new CollectiveError(String(m.error), Array.isArray(m.ranks) ? m.ranks : []));
          const all = Array.isArray(m.all) ? m.all.map(decode) : [];
          if (all.length !== size || all.some((a) => a === null)) {
            return done(new CollectiveError(`SyncBatchNorm: the hub's answer to exchange ${step} is not ${size} arrays`));
          }
          done(null, all as Float64Array[]);
        });
        const timer = pendingTimer(timeout, () =>
          done(new CollectiveError(`SyncBatchNorm: rank ${rank} had no answer from the hub for exchange ${step} within ${timeout} ms (a rank did not arrive, or the hub is gone)`)),
        );
        try {
          end.post({ tag: TAG, step, rank, data: encode(data, end.text) });
        } catch (e) {
          done(e instanceof Error ? e : new Error(String(e)));
        }
      });
    },
  };
}
