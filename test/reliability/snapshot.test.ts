/**
 * Issue 12, "arguments read twice": the read-once table of test/reliability/attacks.ts on every
 * backend. At every read point of every operation (each property of inputs / options / out /
 * state, each dim of the shape) a getter detaches or shrinks another argument, defines lying own
 * properties on it (length, buffer, byteLength, a `set` that calls simdnorm again), or calls
 * simdnorm again; and each op's holders are also swapped for Proxies that answer a second read
 * differently. Required: the documented TypeError/RangeError with every array's bytes unchanged,
 * or exactly the clean call's result; each getter runs once, the own accessors never.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import * as api from '../../lib/index.js';
import {
  arm,
  bytesOf,
  otherValue,
  readPoints,
  reenter,
  sameBytes,
  SPECS,
  trap,
  twoFaced,
  VICTIM_ATTACKS,
  type Api,
  type Instance,
  type Spec,
} from './attacks.js';
import { BACKENDS, describeBackend } from './support.js';

const lib = api as unknown as Api;

interface Outcome {
  error?: unknown;
  summary?: string;
  bytes: Record<string, Uint8Array>;
  extra?: unknown;
}

/** The scalar part of a result (numBatchesTracked, updated), for comparison with the clean call. */
function summary(result: unknown): string {
  if (result === undefined || result === null || typeof result !== 'object') return String(result);
  const scalars: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(result)) if (!ArrayBuffer.isView(v)) scalars[k] = v;
  return JSON.stringify(scalars);
}

async function settle(run: () => unknown): Promise<{ result?: unknown; error?: unknown }> {
  try {
    return { result: await run() };
  } catch (error) {
    return { error };
  }
}

function bytesOfAll(inst: Instance, skip?: string): Record<string, Uint8Array> {
  const r: Record<string, Uint8Array> = {};
  for (const [k, a] of Object.entries(inst.arrays)) if (k !== skip) r[k] = bytesOf(a);
  return r;
}

async function clean(spec: Spec): Promise<Outcome> {
  const inst = spec.make(lib, new Set());
  const { result, error } = await settle(() => inst.run(inst.holders));
  if (error) throw error;
  return { summary: summary(result), bytes: bytesOfAll(inst), extra: inst.extra?.() };
}

function typed(error: unknown): boolean {
  return error instanceof TypeError || error instanceof RangeError;
}

/** Compares an attacked call's end state with the clean one; returns what differs. */
function sameAsClean(inst: Instance, result: unknown, want: Outcome): string | null {
  if (summary(result) !== want.summary) return `result ${summary(result)} != clean ${want.summary}`;
  for (const [k, a] of Object.entries(inst.arrays)) {
    if (!sameBytes(bytesOf(a), want.bytes[k]!)) return `${k} differs from the clean call`;
  }
  if (inst.extra && inst.extra() !== want.extra) return `layer state ${String(inst.extra())} != ${String(want.extra)}`;
  return null;
}

async function victimCases(spec: Spec, want: Outcome, failures: string[]): Promise<number> {
  let count = 0;
  const probe = spec.make(lib, new Set());
  const points = readPoints(probe);
  const victims = probe.victims ?? Object.keys(probe.arrays);
  for (const [holder, key] of points) {
    for (const attack of VICTIM_ATTACKS) {
      for (const victim of victims) {
        count++;
        const label = `${spec.op}: ${holder}.${key} getter, ${attack} ${victim}`;
        const inst = spec.make(lib, new Set(attack === 'shrink' ? [victim] : []));
        const before = bytesOfAll(inst);
        const armed = arm(lib, attack, inst.arrays[victim]!);
        const runs = trap(inst.holders[holder]!, key, () => armed.fire());
        const { result, error } = await settle(() => inst.run(inst.holders));
        const ownReads = armed.ownReads();
        armed.cleanup();
        if (runs() !== 1) failures.push(`${label}: the getter ran ${runs()} times`);
        if (ownReads !== 0) failures.push(`${label}: an own property of ${victim} was read ${ownReads} times`);
        if (attack === 'detach' || attack === 'shrink') {
          if (!typed(error)) {
            failures.push(`${label}: expected a TypeError/RangeError, got ${error ? String(error) : 'success'}`);
            continue;
          }
          for (const [k, b] of Object.entries(before)) {
            const now = k === victim ? armed.victimBytes() : bytesOf(inst.arrays[k]!);
            if (now !== null && !sameBytes(now, b)) failures.push(`${label}: ${k} was written before the ${(error as Error).name}`);
          }
        } else {
          if (error) {
            failures.push(`${label}: threw ${String(error)}`);
            continue;
          }
          const diff = sameAsClean(inst, result, want);
          if (diff) failures.push(`${label}: ${diff}`);
        }
      }
    }
    // a re-entrant call from the getter
    count++;
    const inst = spec.make(lib, new Set());
    const runs = trap(inst.holders[holder]!, key, () => reenter(lib));
    const { result, error } = await settle(() => inst.run(inst.holders));
    const label = `${spec.op}: ${holder}.${key} getter calls simdnorm again`;
    if (runs() !== 1) failures.push(`${label}: the getter ran ${runs()} times`);
    if (error) failures.push(`${label}: threw ${String(error)}`);
    else {
      const diff = sameAsClean(inst, result, want);
      if (diff) failures.push(`${label}: ${diff}`);
    }
  }
  return count;
}

async function proxyCase(spec: Spec, want: Outcome, failures: string[]): Promise<void> {
  const inst = spec.make(lib, new Set());
  const reads = new Map<string, Map<string, number>>();
  const holders: Record<string, object> = {};
  for (const [name, holder] of Object.entries(inst.holders)) {
    const counts = new Map<string, number>();
    reads.set(name, counts);
    holders[name] = twoFaced(holder, otherValue, counts);
  }
  // the shape inside inputs is the Proxy too
  const inputs = inst.holders.inputs as Record<string, unknown> | undefined;
  if (inputs && 'shape' in inputs) (inputs as Record<string, unknown>).shape = holders.shape;
  const { result, error } = await settle(() => inst.run(holders));
  const label = `${spec.op}: two-faced Proxies`;
  if (error) failures.push(`${label}: threw ${String(error)}`);
  else {
    const diff = sameAsClean(inst, result, want);
    if (diff) failures.push(`${label}: ${diff}`);
  }
  for (const [name, counts] of reads) {
    for (const [key, n] of counts) if (n > 1) failures.push(`${label}: ${name}.${key} read ${n} times`);
  }
}

for (const name of BACKENDS) {
  describeBackend(name, 'read once, then check, then compute', () => {
    beforeAll(() => api.useBackend(name));
    afterAll(() => api.useBackend('auto'));
    for (const spec of SPECS) {
      it(`${spec.op}: every read point × every attack`, async () => {
        const want = await clean(spec);
        const failures: string[] = [];
        const count = await victimCases(spec, want, failures);
        await proxyCase(spec, want, failures);
        expect(count).toBeGreaterThan(20);
        expect(failures.slice(0, 20), `${failures.length} failures in ${count + 1} cases`).toEqual([]);
      }, 120_000);
    }
  });
}
