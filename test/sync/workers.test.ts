/**
 * SyncBatchNorm with real workers, on every backend: 1, 2, 4 and 8 worker_threads ranks over the
 * SharedArrayBuffer collective, 2 and 4 over the channel collective (parentPort, hub on the main
 * thread) and 3 child_process ranks over IPC. Each rank runs every case (both dtypes and layouts,
 * uneven shards, a rank without samples) twice, the second time with random delays before each
 * call: results equal one batchNormTrain/batchNormBackward over the concatenated batch (float32 ≤
 * 1e-5, float64 ≤ 1e-11) and are bitwise the same on every rank and in both runs. A killed, a
 * stalled and a throwing rank make the others reject naming it, within the timeout, with their
 * running statistics untouched. Workers run dist/ (built when older than lib/).
 */
import { fork, type ChildProcess } from 'node:child_process';
import { Worker } from 'node:worker_threads';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as api from '../../lib/index.js';
import type { BackendName } from '../../lib/backend.js';
import { ensureDist } from '../reliability/dist.js';
import { checkRanks, makeBatch, optionsOf, reference, sameBits, shardDims, shardOf, syncCases, type RankResult, type SyncCase } from './support.js';

ensureDist();
await api.ready();
const status = api.backends();
const only = process.env.SIMDNORM_TEST_BACKENDS?.split(',').map((b) => b.trim()).filter(Boolean);

const threadUrl = new URL('./workers/thread-rank.mjs', import.meta.url);
const processPath = new URL('./workers/process-rank.mjs', import.meta.url).pathname;

type Behaviour = 'normal' | 'stall' | 'exit' | 'throw';
interface Outcome {
  results?: (RankResult[] | { error: string; ranks: number[] | null; runningMean: ArrayLike<number>; runningVar: ArrayLike<number>; before: ArrayLike<number>[] })[];
  exit?: number;
}

/** Each rank's configuration: its shard of every case. */
function rankConfig(cases: readonly SyncCase[], r: number, extra: Record<string, unknown>) {
  return {
    ...extra,
    rank: r,
    size: cases[0].shards.length,
    repeats: 2,
    maxDelay: 8,
    cases: cases.map((c) => {
      const b = makeBatch(c);
      return {
        x: shardOf(b.x, c, r), dy: shardOf(b.dy, c, r), shape: shardDims(c, r), gamma: b.gamma, beta: b.beta,
        runningMean: b.runningMean, runningVar: b.runningVar, options: optionsOf(c), relu: c.relu,
      };
    }),
  };
}

/** Runs `size` worker_threads ranks; kind 'shared' (SharedArrayBuffer) or 'port' (hub over the Worker objects). */
async function threadRanks(kind: 'shared' | 'port', backend: BackendName, cases: readonly SyncCase[], behaviour: Record<number, Behaviour> = {}, timeout = 30_000, terminate = true): Promise<Outcome[]> {
  const size = cases[0].shards.length;
  const group = kind === 'shared' ? api.createSharedCollectiveGroup(size) : undefined;
  const workers = Array.from({ length: size }, (_, r) =>
    new Worker(threadUrl, { workerData: rankConfig(cases, r, { backend, group, timeout, behaviour: behaviour[r] ?? 'normal' }) }),
  );
  const hub = kind === 'port' ? api.createCollectiveHub(workers, { timeout: timeout / 2 }) : undefined;
  try {
    return await Promise.all(
      workers.map(
        (w, r) =>
          new Promise<Outcome>((resolve, reject) => {
            let outcome: Outcome = {};
            w.on('message', (m) => {
              if (m && 'results' in m) {
                outcome = { results: m.results };
                if (behaviour[r] !== 'stall' && terminate) void w.terminate();
              }
            });
            w.on('error', reject);
            w.on('exit', (code) => {
              if (group && code !== 0 && !outcome.results) api.markRankFailed(group, r);
              resolve(outcome.results ? outcome : { exit: code });
            });
          }),
      ).map((p, r) => (behaviour[r] === 'stall' ? Promise.race([p, othersDone(workers, r)]) : p)),
    );
  } finally {
    hub?.close();
    if (terminate) for (const w of workers) void w.terminate();
  }
}

// A stalled rank's outcome: settled once the others are done (then it is terminated).
function othersDone(workers: readonly Worker[], stalled: number): Promise<Outcome> {
  return new Promise((resolve) => {
    let left = workers.length - 1;
    workers.forEach((w, r) => {
      if (r === stalled) return;
      w.once('exit', () => {
        if (--left === 0) {
          void workers[stalled].terminate();
          resolve({ exit: -1 });
        }
      });
    });
  });
}

/** Runs `size` child processes over IPC with the hub on this process. */
async function processRanks(backend: BackendName, cases: readonly SyncCase[], behaviour: Record<number, Behaviour> = {}, hubTimeout = 15_000): Promise<Outcome[]> {
  const size = cases[0].shards.length;
  const children: ChildProcess[] = Array.from({ length: size }, () => fork(processPath, [], { serialization: 'advanced', stdio: ['ignore', 'inherit', 'inherit', 'ipc'] }));
  const hub = api.createCollectiveHub(children, { timeout: hubTimeout });
  try {
    return await Promise.all(
      children.map(
        (child, r) =>
          new Promise<Outcome>((resolve) => {
            let outcome: Outcome = {};
            child.on('message', (m: { results?: Outcome['results'] }) => {
              if (m && m.results) outcome = { results: m.results };
            });
            child.on('exit', (code) => resolve(outcome.results ? outcome : { exit: code ?? -1 }));
            child.send(rankConfig(cases, r, { backend, timeout: hubTimeout * 2, behaviour: behaviour[r] ?? 'normal' }));
            if (behaviour[r] === 'stall') {
              // killed once every other rank has settled
              const others = children.filter((_, k) => k !== r);
              let left = others.length;
              for (const o of others) o.once('exit', () => --left === 0 && child.kill('SIGKILL'));
            }
          }),
      ),
    );
  } finally {
    hub.close();
    for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
  }
}

/** The normal outcome of every rank against the reference, and run 2 (shuffled) bitwise run 1. */
function checkOutcomes(cases: readonly SyncCase[], outcomes: readonly Outcome[]): void {
  outcomes.forEach((o, r) => expect(o.results, `rank ${r} exited with ${o.exit}`).toBeDefined());
  cases.forEach((c, i) => {
    const perRank = outcomes.map((o) => o.results![i] as RankResult[]);
    checkRanks(c, perRank.map((runs) => runs[0]), reference(api, c, makeBatch(c), optionsOf(c)));
    perRank.forEach((runs, r) => {
      for (const key of ['y', 'mean', 'invStd', 'runningMean', 'runningVar', 'dx', 'dgamma', 'dbeta'] as const) {
        expect(sameBits(runs[1][key], runs[0][key]), `${c.name}: rank ${r} ${key} the same with shuffled arrival`).toBe(true);
      }
    });
  });
}

/** The ranks that ran: rejected with a message matching `pattern`, running statistics untouched. */
function checkRejected(outcomes: readonly Outcome[], ranks: readonly number[], pattern: RegExp, named: number): void {
  for (const r of ranks) {
    const first = outcomes[r].results?.[0] as { error?: string; ranks: number[] | null; runningMean: ArrayLike<number>; runningVar: ArrayLike<number>; before: ArrayLike<number>[] };
    expect(first?.error, `rank ${r}`).toMatch(pattern);
    expect(first.ranks).toEqual([named]);
    expect(sameBits(first.runningMean, first.before[0])).toBe(true);
    expect(sameBits(first.runningVar, first.before[1])).toBe(true);
  }
}

for (const name of ['native', 'wasm', 'js'] as BackendName[]) {
  const s = status.find((b) => b.name === name);
  const reason = only && !only.includes(name) ? `not in SIMDNORM_TEST_BACKENDS=${only.join(',')}` : !s ? 'not registered' : s.available ? undefined : s.reason;
  describe(`SyncBatchNorm across workers: ${name}`, () => {
    if (reason !== undefined) {
      if (process.env.CI) {
        it(`${name} backend is available (CI never skips)`, () => {
          throw new Error(`the ${name} backend is unavailable in CI: ${reason}`);
        });
      } else {
        console.warn(`\n*** SKIPPING the ${name} SyncBatchNorm workers suite: ${reason} ***\n`);
        it.skip(`${name} unavailable: ${reason}`, () => {});
      }
      return;
    }
    beforeAll(() => api.useBackend(name));
    afterAll(() => api.useBackend('auto'));
    for (const size of [1, 2, 4, 8]) {
      it(`${size} worker_threads ranks, SharedArrayBuffer collective`, async () => {
        const cases = syncCases(size);
        checkOutcomes(cases, await threadRanks('shared', name, cases));
      }, 120_000);
    }
    for (const size of [2, 4]) {
      it(`${size} worker_threads ranks, channel collective over parentPort`, async () => {
        const cases = syncCases(size);
        checkOutcomes(cases, await threadRanks('port', name, cases));
      }, 120_000);
    }
    it('3 child_process ranks over IPC', async () => {
      const cases = syncCases(3);
      checkOutcomes(cases, await processRanks(name, cases));
    }, 120_000);
  });
}

describe('SyncBatchNorm across workers: failures', () => {
  beforeAll(() => api.useBackend('native'));
  afterAll(() => api.useBackend('auto'));
  const cases = syncCases(4).slice(0, 1);
  const cases3 = syncCases(3).slice(0, 1);

  it('an idle collective keeps nothing alive: ranks exit on their own (code 0) after their steps', async () => {
    for (const kind of ['shared', 'port'] as const) {
      const outcomes = await threadRanks(kind, 'native', syncCases(2).slice(0, 1), {}, 30_000, false);
      outcomes.forEach((o, r) => expect(o.results, `${kind}: rank ${r} exited with ${o.exit}`).toBeDefined());
    }
  }, 60_000);

  it('SharedArrayBuffer: a killed rank (its worker exits) makes the others reject at once naming it', async () => {
    const t0 = performance.now();
    const outcomes = await threadRanks('shared', 'native', cases, { 2: 'exit' }, 20_000);
    expect(outcomes[2].exit).toBe(3);
    checkRejected(outcomes, [0, 1, 3], /CollectiveError: SyncBatchNorm: rank 2 of 4 failed before exchange 0/, 2);
    expect(performance.now() - t0).toBeLessThan(20_000);
  }, 60_000);

  it('SharedArrayBuffer: a stalled rank makes the others reject within the timeout naming it', async () => {
    const outcomes = await threadRanks('shared', 'native', cases, { 1: 'stall' }, 1500);
    checkRejected(outcomes, [0, 2, 3], /CollectiveError: SyncBatchNorm: rank 1 of 4 did not arrive at exchange 0 within 1500 ms/, 1);
  }, 60_000);

  it('SharedArrayBuffer: a rank whose call throws makes the others reject naming it', async () => {
    const outcomes = await threadRanks('shared', 'native', cases, { 3: 'throw' });
    checkRejected(outcomes, [0, 1, 2], /CollectiveError: syncBatchNormTrain: rank 3 failed before the exchange: TypeError: gamma must be/, 3);
  }, 60_000);

  it('channel collective (worker_threads): a killed rank and a stalled rank', async () => {
    const killed = await threadRanks('port', 'native', cases, { 0: 'exit' }, 20_000);
    checkRejected(killed, [1, 2, 3], /CollectiveError: SyncBatchNorm: rank 0 exited with code 3/, 0);
    const stalled = await threadRanks('port', 'native', cases, { 3: 'stall' }, 3000);
    checkRejected(stalled, [0, 1, 2], /CollectiveError: SyncBatchNorm: rank 3 of 4 did not arrive at exchange 0 within 1500 ms/, 3);
  }, 60_000);

  it('child_process over IPC: a killed rank and a stalled rank', async () => {
    const killed = await processRanks('native', cases3, { 1: 'exit' });
    checkRejected(killed, [0, 2], /CollectiveError: SyncBatchNorm: rank 1 exited with code 3/, 1);
    const stalled = await processRanks('native', cases3, { 2: 'stall' }, 1500);
    checkRejected(stalled, [0, 1], /CollectiveError: SyncBatchNorm: rank 2 of 3 did not arrive at exchange 0 within 1500 ms/, 2);
  }, 60_000);
});
