/**
 * Golden outputs: every backend and variant reachable in Node gives, for the cases of
 * test/golden/cases.ts, bit for bit the outputs recorded in test/golden/golden.json from the
 * kernels of the commit named there (the native addon once per SIMD level, at 1 and 2 threads,
 * which must agree, and through the Async variants too; wasm SIMD128 and scalar; js). Per backend and case the fixture holds one
 * SHA-256 over every output (its name, length and the SHA-256 of its bytes; wasm: NaNs canonical,
 * see canonicalNaNs) and the first 12 hex
 * digits of each output's SHA-256, which name the first differing output of a failing case
 * (full per-output hashes would make the fixture ~350 kB; this keeps it near 100 kB).
 *
 * Re-record (node test/golden/record.mjs, or SIMDNORM_GOLDEN_RECORD=1 npx vitest run test/golden)
 * only when a change of results is intended and explained in its commit (a numeric change), or to
 * add a native SIMD level recorded from the same kernels on another machine (recording keeps the
 * levels it does not see here). A refactor must pass it unchanged.
 *
 * A native SIMD level with no recording is a loud skip on a developer's machine and a failure in
 * CI (the portable kernels cannot be forced from JS: usePortableKernels is only reachable from
 * C++, so an sse2/neon level needs a recording from such a machine).
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { execSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import * as api from '../../lib/index.js';
import type { Backend } from '../../lib/backend.js';
import type { FloatArray } from '../../lib/api.js';
import { jsBackend, jsProvider } from '../../lib/backends/js.js';
import { loadNativeBinding, nativeBackend, nativeProvider } from '../../lib/backends/native.js';
import { loadWasmBackendSync, wasmNodeProvider } from '../../lib/backends/wasm-node.js';
import { digest, goldenCases, runCase, type CaseDigest, type GoldenCase } from './cases.js';

const FIXTURE = fileURLToPath(new URL('./golden.json', import.meta.url));
const RECORD = process.env.SIMDNORM_GOLDEN_RECORD === '1';

/** case name -> "all each0 each1 ..." */
type Digests = Record<string, string>;
interface Fixture {
  about: string;
  recordedFrom: string;
  /** case name -> "name length" of each output, in order (the same on every backend) */
  outputs: Record<string, string[]>;
  backends: Record<string, Digests>;
}

const fixture: Fixture = existsSync(FIXTURE)
  ? (JSON.parse(readFileSync(FIXTURE, 'utf8')) as Fixture)
  : { about: '', recordedFrom: '', outputs: {}, backends: {} };
const outputsSeen: Record<string, string[]> = {};
const recorded: Record<string, Digests> = {};
const cases = goldenCases();

interface Target {
  /** the fixture key: 'native avx2-fma', 'wasm simd128', 'wasm scalar', 'js' */
  key: string;
  backend: () => Backend;
  threads?: number[];
  reason?: string;
}

function targets(): Target[] {
  const list: Target[] = [];
  try {
    const native = nativeBackend(loadNativeBinding());
    list.push({ key: `native ${native.details().simd}`, backend: () => native, threads: [1, 2] });
  } catch (e) {
    list.push({ key: 'native', backend: () => { throw e; }, reason: (e as Error).message });
  }
  for (const variant of ['simd128', 'scalar'] as const) {
    let b: Backend | undefined;
    list.push({ key: `wasm ${variant}`, backend: () => (b ??= loadWasmBackendSync(variant)) });
  }
  list.push({ key: 'js', backend: () => jsBackend });
  return list;
}

/** Runs a case on `backend`, registered and made the current backend for the call. */
async function runOn(backend: Backend, c: GoldenCase, viaAsync = false): Promise<CaseDigest> {
  api.registerBackend({ name: backend.name, priority: 0, loadSync: () => backend, load: async () => backend });
  api.useBackend(backend.name);
  try {
    const outputs = await runCase(api, c, viaAsync);
    return digest(backend.name === 'wasm' ? canonicalNaNs(outputs) : outputs);
  } finally {
    api.useBackend('auto');
  }
}

/**
 * WebAssembly leaves the sign (and payload) of a NaN that an instruction produces or passes on
 * nondeterministic, and V8 differs in it between its tiers: a kernel gives +NaN in one place when
 * Liftoff runs it and -NaN when TurboFan's code, installed in the background after enough calls,
 * does (seen: the non-finite cases' backward.dx). So the wasm digests are of the outputs with
 * every NaN written as the canonical quiet NaN; every other bit, and where the NaNs are, still count.
 */
function canonicalNaNs(outputs: Record<string, FloatArray>): Record<string, FloatArray> {
  const out: Record<string, FloatArray> = {};
  for (const [k, v] of Object.entries(outputs)) out[k] = v.map((e) => (Number.isNaN(e) ? NaN : e)) as FloatArray;
  return out;
}

const pack = (d: CaseDigest): string => [d.all, ...d.each].join(' ');

/** How `got` differs from the recording (`outputs`, `packed`), worded for the failure message. */
function firstDifference(got: CaseDigest, outputs: string[] | undefined, packed: string | undefined): string | undefined {
  if (!outputs || !packed) return 'not in the fixture (re-record?)';
  if (got.outputs.join() !== outputs.join()) return `outputs ${got.outputs.join(', ')}; recorded ${outputs.join(', ')}`;
  const [all, ...each] = packed.split(' ');
  if (got.all === all) return undefined;
  const i = each.findIndex((h, k) => got.each[k] !== h);
  return i < 0
    ? 'the outputs differ (beyond the 12-digit prefixes)'
    : `output ${outputs[i].split(' ')[0]} differs (SHA-256 ${got.each[i]}..., recorded ${each[i]}...)`;
}

afterAll(() => {
  for (const p of [nativeProvider, wasmNodeProvider, jsProvider]) api.registerBackend(p);
  api.setThreads(0);
  api.useBackend('auto');
  if (!RECORD) return;
  let commit = 'unknown';
  try {
    commit = execSync('git rev-parse HEAD', { encoding: 'utf8' }).trim();
    if (execSync('git status --porcelain -- native wasm/abi.cpp wasm/bin', { encoding: 'utf8' }).trim()) commit += ' (kernels modified)';
  } catch {
    // not a git checkout
  }
  const backends = { ...fixture.backends, ...recorded };
  const out: Fixture = {
    about:
      'outputs: per case of test/golden/cases.ts, "name length" of each output. backends: per backend/variant and case, ' +
      'the SHA-256 over all outputs, then the first 12 hex digits of each output\'s SHA-256. ' +
      'Written by test/golden/record.mjs, checked by test/golden/golden.test.ts (see there when re-recording is legitimate).',
    recordedFrom: commit,
    outputs: { ...fixture.outputs, ...outputsSeen },
    backends: Object.fromEntries(Object.keys(backends).sort().map((k) => [k, backends[k]])),
  };
  // one line per case
  const section = (o: Record<string, unknown>): string =>
    `{\n${Object.entries(o).map(([k, v]) => `    ${JSON.stringify(k)}: ${JSON.stringify(v)}`).join(',\n')}\n  }`;
  const backendsText = Object.entries(out.backends).map(([k, v]) => `  ${JSON.stringify(k)}: ${section(v)}`).join(',\n');
  writeFileSync(
    FIXTURE,
    `{\n "about": ${JSON.stringify(out.about)},\n "recordedFrom": ${JSON.stringify(out.recordedFrom)},\n` +
      ` "outputs": ${section(out.outputs).replace(/\n  \}$/, '\n }')},\n "backends": {\n${backendsText}\n }\n}\n`,
  );
});

for (const t of targets()) {
  describe(`golden outputs: ${t.key}`, () => {
    if (t.reason !== undefined || (!RECORD && !fixture.backends[t.key])) {
      const why = t.reason ?? `no recording for ${t.key} in test/golden/golden.json (recorded: ${Object.keys(fixture.backends).join(', ')})`;
      if (process.env.CI) {
        it(`${t.key} has golden outputs (CI never skips)`, () => {
          throw new Error(why);
        });
      } else {
        console.warn(`\n*** SKIPPING golden outputs of ${t.key}: ${why}\n`);
        it.skip(why, () => {});
      }
      return;
    }
    const expected = fixture.backends[t.key];
    for (const threads of t.threads ?? [undefined]) {
      it(`every case bit for bit${threads ? ` at ${threads} thread${threads > 1 ? 's' : ''}` : ''}`, async () => {
        const backend = t.backend();
        if (threads) backend.setThreads!(threads);
        try {
          const mine: Digests = {};
          for (const c of cases) {
            const got = await runOn(backend, c);
            if (RECORD) {
              const first = recorded[t.key]?.[c.name];
              const diff = first && firstDifference(got, outputsSeen[c.name], first);
              if (diff) throw new Error(`${t.key} at ${threads} threads differs from 1 thread: ${c.name}: ${diff}`);
              const seen = (outputsSeen[c.name] ??= got.outputs);
              if (seen.join() !== got.outputs.join()) throw new Error(`${c.name}: outputs differ between backends`);
              mine[c.name] = pack(got);
              continue;
            }
            const diff = firstDifference(got, fixture.outputs[c.name], expected[c.name]);
            if (diff) throw new Error(`${t.key}${threads ? ` at ${threads} threads` : ''}: case ${c.name}: ${diff}`);
          }
          if (RECORD) recorded[t.key] ??= mine;
          else expect(Object.keys(expected).sort()).toEqual(cases.map((c) => c.name).sort());
        } finally {
          if (threads) backend.setThreads!(0);
        }
      }, 300_000);
    }
    if (t.threads) {
      it('every case bit for bit through the Async variants (train, infer, backward) at 2 threads', async () => {
        if (RECORD) return; // recorded through the synchronous functions
        const backend = t.backend();
        backend.setThreads!(2);
        try {
          for (const c of cases) {
            const diff = firstDifference(await runOn(backend, c, true), fixture.outputs[c.name], expected[c.name]);
            if (diff) throw new Error(`${t.key} async: case ${c.name}: ${diff}`);
          }
        } finally {
          backend.setThreads!(0);
        }
      }, 300_000);
    }
  });
}
