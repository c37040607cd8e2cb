/**
 * The property cases under AddressSanitizer and UBSan: fast-check's generators of
 * test/reliability (random shapes, layouts, dtypes, options; ordinary data and data with NaN,
 * ±Inf, denormals, huge and tiny values) are written to a case file with the float64
 * reference's outputs, and replayed through the C ABI of wasm/abi.cpp (sn_run) built natively with the
 * kernels under both sanitizers (test/sanitize/abi_replay.cpp; one build with run-time
 * dispatch, one with the portable kernels only). Every case must return the expected code and
 * give the reference's outputs within lib/compare.ts's tolerance (the same NaN/Inf pattern);
 * any sanitizer report fails the run.
 *
 * Needs the sanitizer build; CI:
 *   CXX=clang++-14 cmake -S . -B build-sanitize -DSIMDNORM_BUILD_SANITIZE_TESTS=ON && cmake --build build-sanitize -j2
 *   SIMDNORM_SANITIZE_BUILD=build-sanitize npx vitest run test/sanitize
 * Without SIMDNORM_SANITIZE_BUILD it is skipped (the main test run comes before that build).
 * SIMDNORM_REPLAY_CASES changes the number of cases (default 1500).
 * SIMDNORM_SANITIZE_EMULATOR runs the binaries under an emulator (a command and its arguments,
 * e.g. `qemu-aarch64 -L /usr/aarch64-linux-gnu` for the aarch64 build of sanitize.cmake): then
 * only simdnorm_abi_replay is run (on aarch64 it is the addon's NEON kernels) and LeakSanitizer,
 * which does not work under qemu-user, is off.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { hugeMagnitude, specialCaseArb } from '../reliability/arbitraries.js';
import { describeSpecial, runSpecial, specialData, type SpecialCase } from '../reliability/special.js';
import { channelsOf, fcSeed, product } from '../reliability/support.js';

const buildDir = process.env.SIMDNORM_SANITIZE_BUILD;
const CASES = Number(process.env.SIMDNORM_REPLAY_CASES ?? 1500);
const SEED = fcSeed(3);
const emulator = (process.env.SIMDNORM_SANITIZE_EMULATOR ?? '').split(/\s+/).filter(Boolean);

/** Little-endian binary writer. */
class Writer {
  private chunks: Buffer[] = [];
  u8(v: number) { this.chunks.push(Buffer.from([v])); }
  i32(v: number) { const b = Buffer.alloc(4); b.writeInt32LE(v); this.chunks.push(b); }
  u32(v: number) { const b = Buffer.alloc(4); b.writeUInt32LE(v); this.chunks.push(b); }
  f64(v: number) { const b = Buffer.alloc(8); b.writeDoubleLE(v); this.chunks.push(b); }
  raw(b: Buffer) { this.chunks.push(b); }
  f64s(values: ArrayLike<number>) {
    const b = Buffer.alloc(values.length * 8);
    for (let i = 0; i < values.length; i++) b.writeDoubleLE(values[i]!, i * 8);
    this.chunks.push(b);
  }
  bytes(): Buffer { return Buffer.concat(this.chunks); }
}

interface AbiArray {
  present: boolean;
  output: boolean;
  aliasOf?: number;
  length: number;
  initial?: ArrayLike<number>;
  expected?: ArrayLike<number>;
  minScale?: number;
}

const OPS = { train: 0, infer: 1, backward: 2, moments: 3, update: 4 } as const;

/** One case: its arrays in abi_replay.cpp's order (kSlots: the old per-op argument order), with the reference's outputs. */
function encode(w: Writer, c: SpecialCase, inPlace: boolean): void {
  const data = specialData(c);
  const run = runSpecial('js', c); // .expected: the float64 reference on the same values
  const n = product(c.dims);
  const C = channelsOf(c.dims, c.layout);
  const outer = c.layout === 'channels-first' ? c.dims[0]! : n / C;
  const inner = c.layout === 'channels-first' ? product(c.dims.slice(2)) : 1;
  const M = outer * inner;
  const round = (a: ArrayLike<number>) => (c.dtype === 'float32' ? Array.from(a, Math.fround) : Array.from(a));
  const input = (values: ArrayLike<number> | null): AbiArray => (values ? { present: true, output: false, length: values.length, initial: values } : { present: false, output: false, length: 0 });
  const output = (length: number, expected: ArrayLike<number>, extra: Partial<AbiArray> = {}): AbiArray => ({
    present: true, output: true, length, initial: new Float64Array(length).fill(7), expected: round(expected), ...extra,
  });
  const inout = (values: ArrayLike<number>, expected: ArrayLike<number>): AbiArray => ({ present: true, output: true, length: values.length, initial: values, expected: round(expected) });
  const e = run.expected;
  const affine = c.affine;
  let arrays: AbiArray[];
  let rc = 0;
  let factor = c.momentum === null ? 1 / 4 : 1 - c.momentum; // numBatchesTracked 3 (special.ts)
  let varScale = c.unbiasedRunningVar ? M / (M - 1) : 1;
  switch (c.op) {
    case 'train':
      arrays = [
        input(data.x), input(affine ? data.gamma : null), input(affine ? data.beta : null),
        output(n, e.y!, inPlace ? { aliasOf: 0, initial: undefined } : {}), output(C, e.mean!, { minScale: run.scales.mean }), output(C, e.invStd!),
        { ...inout(data.runningMean, e.runningMean!), minScale: run.scales.runningMean }, inout(data.runningVar, e.runningVar!),
      ];
      rc = (run.expectedResult as { updated: boolean }).updated ? 1 : 0;
      break;
    case 'infer':
      arrays = [
        input(data.x), input(data.runningMean), input(data.runningVar), input(affine ? data.gamma : null), input(affine ? data.beta : null),
        output(n, e.y!, inPlace ? { aliasOf: 0, initial: undefined } : {}),
      ];
      break;
    case 'backward': {
      const fwd = run.saved!;
      arrays = [
        input(data.dy), input(data.x), input(fwd.mean!), input(fwd.invStd!), input(affine ? data.gamma : null), input(c.relu ? fwd.y! : null),
        output(n, e.dx!, { minScale: run.scales.dx, ...(inPlace ? { aliasOf: 0, initial: undefined } : {}) }), output(C, e.dgamma!, { minScale: run.scales.dgamma }), output(C, e.dbeta!, { minScale: run.scales.dbeta }),
      ];
      break;
    }
    case 'moments':
      arrays = [input(data.x), output(C, e.mean!, { minScale: run.scales.mean }), output(C, e.variance!)];
      break;
    case 'update': {
      const count = n / C;
      varScale = c.unbiasedRunningVar ? count / (count - 1) : 1;
      arrays = [inout(data.runningMean, e.runningMean!), inout(data.runningVar, e.runningVar!), input(data.x.slice(0, C)), input(data.dy.slice(0, C).map(Math.abs))];
      rc = (run.expectedResult as { updated: boolean }).updated ? 1 : 0;
      break;
    }
  }
  if (c.op !== 'train' && c.op !== 'update') factor = 0;
  w.u8(OPS[c.op]);
  w.u8(c.dtype === 'float32' ? 4 : 8);
  w.u8(c.relu ? 1 : 0);
  w.u8(c.training ? 1 : 0);
  w.u8(c.skipNonFiniteUpdate ? 1 : 0);
  w.i32(outer);
  w.i32(C);
  w.i32(inner);
  w.i32(rc);
  w.f64(c.eps);
  w.f64(factor);
  w.f64(varScale);
  const label = Buffer.from(`${describeSpecial(c)}${inPlace ? ' in place' : ''}`);
  w.u32(label.length);
  w.raw(label);
  w.u8(arrays.length);
  for (const a of arrays) {
    const flags = (a.present ? 1 : 0) | (a.output ? 2 : 0) | (a.aliasOf !== undefined ? 4 : 0) | (a.expected ? 8 : 0);
    w.u8(flags);
    if (a.aliasOf !== undefined) w.u8(a.aliasOf);
    w.u32(a.length);
    w.f64(a.minScale ?? 0);
    if (a.present && a.aliasOf === undefined) w.f64s(a.initial!);
    if (a.expected) w.f64s(a.expected);
  }
}

describe.skipIf(!buildDir)('the property cases through the C ABI under ASan + UBSan', () => {
  const names = emulator.length > 0 ? ['simdnorm_abi_replay'] : ['simdnorm_abi_replay', 'simdnorm_abi_replay_base'];
  const binaries = names.map((b) => resolve(buildDir ?? '.', b));

  it(`${CASES} cases replay with the expected codes and outputs and no sanitizer report`, () => {
    for (const b of binaries) expect(existsSync(b), `${b} (build it: see this file's comment)`).toBe(true);
    const arb = fc.oneof(
      specialCaseArb(), // special values injected
      specialCaseArb().map((c) => ({ ...c, injections: [] })), // ordinary data
      specialCaseArb().chain((c) => hugeMagnitude(c.dtype).map(([scale, offset]) => ({ ...c, scale, offset, injections: [] }))),
    );
    const cases = fc.sample(arb, { numRuns: CASES, seed: SEED });
    const w = new Writer();
    w.u32(0x43524e53); // "SNRC"
    w.u32(cases.length);
    cases.forEach((c, i) => encode(w, c, i % 4 === 3));
    const dir = mkdtempSync(join(tmpdir(), 'simdnorm-replay-'));
    const file = join(dir, 'cases.bin');
    writeFileSync(file, w.bytes());
    try {
      for (const binary of binaries) {
        const command = emulator.length > 0 ? [...emulator, binary] : [binary];
        const leaks = emulator.length > 0 ? 0 : 1;
        const r = spawnSync(command[0]!, [...command.slice(1), file], {
          encoding: 'utf8',
          env: { ...process.env, SIMDNORM_REPLAY_TRACE: '1', ASAN_OPTIONS: `detect_leaks=${leaks}:abort_on_error=0:halt_on_error=1`, UBSAN_OPTIONS: 'print_stacktrace=1:halt_on_error=1' },
          maxBuffer: 1 << 26,
        });
        const summary = r.stdout.trim().split('\n').pop() ?? '';
        console.log(`${binary.split('/').pop()}: ${summary}`);
        const lastCase = [...r.stderr.matchAll(/^case \d+: .*$/gm)].pop()?.[0];
        const report = r.stderr.split('\n').filter((l) => !/^case \d+: /.test(l)).join('\n');
        expect(r.status, `${binary} exited with ${r.status} in ${lastCase}:\n${r.stdout.slice(-4000)}\n${report.slice(-8000)}`).toBe(0);
        expect(summary).toMatch(new RegExp(`^replayed ${cases.length} cases \\(\\d+ elements compared\\), 0 failures$`));
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 600_000);
});

if (!buildDir) {
  it.skip('needs the sanitizer build (SIMDNORM_SANITIZE_BUILD): see this file', () => {});
}
