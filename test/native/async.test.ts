/**
 * runAsync against run: bitwise the same outputs and results for every phase, several calls in
 * flight at once, and tensors that only the pending call still references survive garbage
 * collection until it settles.
 */
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { expect, it } from 'vitest';
import {
  bnProblem,
  bnStep,
  bytesOf,
  describeNative,
  FLOAT_TYPES,
  PHASES,
  run,
  runAsync,
  sameBits,
  type Problem,
  type Shape,
} from './helpers.js';

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

const SHAPES: Shape[] = [
  { outer: 2, channels: 3, inner: 5 }, // tiny: runs on the calling thread, its Promise settled at once
  { outer: 8, channels: 16, inner: 32 * 32 }, // NCHW, enough for the thread pool
  { outer: 4096, channels: 24, inner: 1 }, // channels-last
];

function expectSameProblem(a: Problem, b: Problem): void {
  for (const key of Object.keys(a) as (keyof Problem)[]) {
    expect(sameBits(a[key], b[key]), `${key} differs`).toBe(true);
  }
}

describeNative('native binding: runAsync', () => {
  for (const T of FLOAT_TYPES) {
    for (const s of SHAPES) {
      for (const relu of [false, true]) {
        const label = `${T.name} [${s.outer}, ${s.channels}, ${s.inner}]${relu ? ' relu' : ''}`;
        it(`${label}: every phase async == sync, bit for bit`, async () => {
          const sync = bnProblem(T, s, 11);
          const viaAsync = bnProblem(T, s, 11);
          for (const phase of ['train', 'backward', 'infer', 'moments', 'update'] as const) {
            for (const training of phase === 'backward' ? [true, false] : [true]) {
              const r1 = run(bnStep(phase, T, s, sync, { relu, training }));
              const r2 = await runAsync(bnStep(phase, T, s, viaAsync, { relu, training }));
              expect(r2, phase).toBe(r1);
              if (phase === 'train' || phase === 'update') expect(r1, phase).toBe(1);
              expectSameProblem(sync, viaAsync);
            }
          }
        });
      }
    }

    it(`${T.name}: eight calls in flight at once each match the sync result`, async () => {
      const s = SHAPES[1]!;
      const expected = Array.from({ length: 8 }, (_, i) => bnProblem(T, s, 100 + i));
      const actual = Array.from({ length: 8 }, (_, i) => bnProblem(T, s, 100 + i));
      for (const p of expected) run(bnStep('train', T, s, p));
      const results = await Promise.all(actual.map((p) => runAsync(bnStep('train', T, s, p))));
      expect(results).toEqual(new Array(8).fill(1));
      expected.forEach((p, i) => expectSameProblem(p, actual[i]!));
    });

    it(`${T.name}: a skipped running-stats update resolves 0, as run returns`, async () => {
      const s = SHAPES[0]!;
      const sync = bnProblem(T, s, 5);
      const viaAsync = bnProblem(T, s, 5);
      sync.x[3] = NaN;
      viaAsync.x[3] = NaN;
      expect(run(bnStep('train', T, s, sync))).toBe(0);
      expect(await runAsync(bnStep('train', T, s, viaAsync))).toBe(0);
      expectSameProblem(sync, viaAsync);
    });
  }

  it('tensors referenced only by a pending call survive garbage collection', async () => {
    const s: Shape = { outer: 16, channels: 32, inner: 64 * 64 };
    const expected = bnProblem(Float32Array, s, 42);
    run(bnStep('train', Float32Array, s, expected, { relu: true }));

    // Only y, mean and invStd stay reachable from here; x, gamma, beta and the running stats
    // are reachable only through the pending call.
    const outputs = { y: new Float32Array(expected.y.length), mean: new Float32Array(32), invStd: new Float32Array(32) };
    let collected = 0;
    const registry = new FinalizationRegistry(() => collected++);
    const start = (): Promise<number> => {
      const p = { ...bnProblem(Float32Array, s, 42), ...outputs };
      registry.register(p.x, 'x');
      return runAsync(bnStep('train', Float32Array, s, p, { relu: true }));
    };
    const pending = start();
    let settled = false;
    void pending.finally(() => (settled = true));
    let rounds = 0;
    while (!settled && rounds < 1000) {
      gc();
      new Float32Array(1 << 20).fill(1); // pressure
      await new Promise((r) => setImmediate(r));
      rounds++;
    }
    expect(await pending).toBe(1);
    expect(collected, 'x was finalized while the call was pending').toBe(0);
    expect(sameBits(outputs.y, expected.y)).toBe(true);
    expect(sameBits(outputs.mean, expected.mean)).toBe(true);
    expect(sameBits(outputs.invStd, expected.invStd)).toBe(true);
    // after settling, the call's References are gone and x can be collected
    for (let i = 0; i < 20 && collected === 0; i++) {
      gc();
      await new Promise((r) => setTimeout(r, 10));
    }
    expect(collected).toBe(1);
  });

  it('SharedArrayBuffer-backed subarrays (growable ones too) work in async calls', async () => {
    const s = SHAPES[1]!;
    const plain = bnProblem(Float32Array, s, 8);
    const shared = bnProblem(Float32Array, s, 8);
    const Growable = SharedArrayBuffer as unknown as new (bytes: number, options?: { maxByteLength: number }) => ArrayBuffer;
    for (const key of Object.keys(shared) as (keyof Problem)[]) {
      const src = shared[key];
      const buffer = new Growable((src.length + 1) * 4, { maxByteLength: (src.length + 64) * 4 });
      const view = new Float32Array(buffer, 4, src.length);
      view.set(src);
      (shared as Record<string, Float32Array | Float64Array>)[key] = view;
    }
    expect(await runAsync(bnStep('train', Float32Array, s, shared, { relu: true })))
      .toBe(run(bnStep('train', Float32Array, s, plain, { relu: true })));
    expectSameProblem(plain, shared);
  });

  it('a resizable ArrayBuffer is refused by runAsync (it could shrink mid-call); run takes it', async () => {
    const s = SHAPES[0]!;
    const p = bnProblem(Float32Array, s, 3);
    const n = p.x.length;
    // (ES2024's resizable ArrayBuffer: not in this project's TypeScript lib yet)
    const Resizable = ArrayBuffer as unknown as new (bytes: number, options: { maxByteLength: number }) => ArrayBuffer;
    const x = new Float32Array(new Resizable(n * 4, { maxByteLength: n * 8 }), 0, n);
    x.set(p.x);
    const before = bytesOf(p.y);
    const norm = bnStep('infer', Float32Array, s, { ...p, x });
    await expect(runAsync(norm)).rejects.toThrow(TypeError);
    await expect(runAsync(norm)).rejects.toThrow(/tensor x .*resizable/);
    expect(sameBits(p.y, before)).toBe(true);
    expect(() => run(norm)).not.toThrow();
  });
});
