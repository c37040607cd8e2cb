/**
 * The async variants (trainAsync, inferAsync, backwardAsync) against the sync ones: bitwise the
 * same outputs and return values, several calls in flight at once, and arrays that only the
 * pending call still references survive garbage collection until it settles.
 */
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { expect, it } from 'vitest';
import {
  binding,
  bytesOf,
  describeNative,
  FLOAT_TYPES,
  randomArray,
  sameBits,
  untypedBinding,
  type FloatCtor,
} from './helpers.js';

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

interface Shape {
  outer: number;
  channels: number;
  inner: number;
}

const SHAPES: Shape[] = [
  { outer: 2, channels: 3, inner: 5 }, // tiny: runs on the calling thread, its Promise settled at once
  { outer: 8, channels: 16, inner: 32 * 32 }, // NCHW, enough for the thread pool
  { outer: 4096, channels: 24, inner: 1 }, // channels-last
];

/** Everything one training step reads and writes, built from a seed. */
function problem(T: FloatCtor, s: Shape, seed: number) {
  const n = s.outer * s.channels * s.inner;
  const c = s.channels;
  return {
    x: randomArray(T, n, seed, 2, 0.5),
    dy: randomArray(T, n, seed + 1),
    gamma: randomArray(T, c, seed + 2, 0.5, 1),
    beta: randomArray(T, c, seed + 3),
    runningMean: randomArray(T, c, seed + 4),
    runningVar: randomArray(T, c, seed + 5, 0.5, 1),
    y: new T(n),
    mean: new T(c),
    invStd: new T(c),
    dx: new T(n),
    dgamma: new T(c),
    dbeta: new T(c),
  };
}
type Problem = ReturnType<typeof problem>;

const trainArgs = (p: Problem, s: Shape, relu: boolean) =>
  [p.x, s.outer, s.channels, s.inner, p.gamma, p.beta, 1e-5, relu, p.y, p.mean, p.invStd,
    p.runningMean, p.runningVar, 0.1, (s.outer * s.inner) / (s.outer * s.inner - 1), true] as const;
const inferArgs = (p: Problem, s: Shape, relu: boolean) =>
  [p.x, s.outer, s.channels, s.inner, p.runningMean, p.runningVar, p.gamma, p.beta, 1e-5, relu, p.y] as const;
const backwardArgs = (p: Problem, s: Shape, relu: boolean, training: boolean) =>
  [p.dy, p.x, s.outer, s.channels, s.inner, p.mean, p.invStd, p.gamma, relu ? p.y : null, training,
    p.dx, p.dgamma, p.dbeta] as const;

function expectSameProblem(a: Problem, b: Problem): void {
  for (const key of Object.keys(a) as (keyof Problem)[]) {
    expect(sameBits(a[key], b[key]), `${key} differs`).toBe(true);
  }
}

describeNative('native binding: async variants', () => {
  for (const T of FLOAT_TYPES) {
    for (const s of SHAPES) {
      for (const relu of [false, true]) {
        const label = `${T.name} [${s.outer}, ${s.channels}, ${s.inner}]${relu ? ' relu' : ''}`;
        it(`${label}: train, infer, backward async == sync, bit for bit`, async () => {
          const b = binding();
          const sync = problem(T, s, 11);
          const viaAsync = problem(T, s, 11);

          const r1 = b.train(...trainArgs(sync, s, relu));
          const r2 = await b.trainAsync(...trainArgs(viaAsync, s, relu));
          expect(r2).toBe(r1);
          expect(r1).toBe(true);
          expectSameProblem(sync, viaAsync);

          for (const training of [true, false]) {
            b.backward(...backwardArgs(sync, s, relu, training));
            expect(await b.backwardAsync(...backwardArgs(viaAsync, s, relu, training))).toBeUndefined();
            expectSameProblem(sync, viaAsync);
          }

          b.infer(...inferArgs(sync, s, relu));
          expect(await b.inferAsync(...inferArgs(viaAsync, s, relu))).toBeUndefined();
          expectSameProblem(sync, viaAsync);
        });
      }
    }

    it(`${T.name}: eight calls in flight at once each match the sync result`, async () => {
      const b = binding();
      const s = SHAPES[1]!;
      const expected = Array.from({ length: 8 }, (_, i) => problem(T, s, 100 + i));
      const actual = Array.from({ length: 8 }, (_, i) => problem(T, s, 100 + i));
      for (const p of expected) b.train(...trainArgs(p, s, false));
      const results = await Promise.all(actual.map((p) => b.trainAsync(...trainArgs(p, s, false))));
      expect(results).toEqual(new Array(8).fill(true));
      expected.forEach((p, i) => expectSameProblem(p, actual[i]!));
    });

    it(`${T.name}: a skipped running-stats update resolves false, as the sync call returns`, async () => {
      const b = binding();
      const s = SHAPES[0]!;
      const sync = problem(T, s, 5);
      const viaAsync = problem(T, s, 5);
      sync.x[3] = NaN;
      viaAsync.x[3] = NaN;
      expect(b.train(...trainArgs(sync, s, false))).toBe(false);
      expect(await b.trainAsync(...trainArgs(viaAsync, s, false))).toBe(false);
      expectSameProblem(sync, viaAsync);
    });
  }

  it('arrays referenced only by a pending call survive garbage collection', async () => {
    const b = binding();
    const s: Shape = { outer: 16, channels: 32, inner: 64 * 64 };
    const expected = problem(Float32Array, s, 42);
    b.train(...trainArgs(expected, s, true));

    // Only y, mean and invStd stay reachable from here; x, gamma, beta and the running stats
    // are reachable only through the pending call.
    const outputs = { y: new Float32Array(expected.y.length), mean: new Float32Array(32), invStd: new Float32Array(32) };
    let collected = 0;
    const registry = new FinalizationRegistry(() => collected++);
    const start = (): Promise<boolean> => {
      const p = problem(Float32Array, s, 42);
      registry.register(p.x, 'x');
      return b.trainAsync(p.x, s.outer, s.channels, s.inner, p.gamma, p.beta, 1e-5, true, outputs.y,
        outputs.mean, outputs.invStd, p.runningMean, p.runningVar, 0.1, (s.outer * s.inner) / (s.outer * s.inner - 1), true);
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
    expect(await pending).toBe(true);
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

  it('SharedArrayBuffer-backed subarrays (a growable one too) work in async calls', async () => {
    const b = binding();
    const s = SHAPES[1]!;
    const plain = problem(Float32Array, s, 8);
    const shared = problem(Float32Array, s, 8);
    const Growable = SharedArrayBuffer as unknown as new (bytes: number, options?: { maxByteLength: number }) => ArrayBuffer;
    for (const key of Object.keys(shared) as (keyof Problem)[]) {
      const src = shared[key];
      const buffer = new Growable((src.length + 1) * 4, { maxByteLength: (src.length + 64) * 4 });
      const view = new Float32Array(buffer, 4, src.length);
      view.set(src);
      (shared as Record<string, Float32Array | Float64Array>)[key] = view;
    }
    expect(await b.trainAsync(...trainArgs(shared, s, true))).toBe(b.train(...trainArgs(plain, s, true)));
    expectSameProblem(plain, shared);
  });

  it('a resizable ArrayBuffer is refused by async calls (it could shrink mid-call)', async () => {
    const b = binding();
    const s = SHAPES[0]!;
    const p = problem(Float32Array, s, 3);
    const n = p.x.length;
    // (ES2024's resizable ArrayBuffer: not in this project's TypeScript lib yet)
    const Resizable = ArrayBuffer as unknown as new (bytes: number, options: { maxByteLength: number }) => ArrayBuffer;
    const resizable = new Resizable(n * 4, { maxByteLength: n * 8 });
    const x = new Float32Array(resizable, 0, n);
    x.set(p.x);
    const before = bytesOf(p.y);
    const args: unknown[] = [...inferArgs(p, s, false)];
    args[0] = x;
    const f = untypedBinding();
    await expect(f.inferAsync!(...args) as Promise<void>).rejects.toThrow(TypeError);
    await expect(f.inferAsync!(...args) as Promise<void>).rejects.toThrow(/resizable/);
    expect(sameBits(p.y, before)).toBe(true);
    // the sync call takes it: no JS runs while it does
    expect(() => f.infer!(...args)).not.toThrow();
  });
});
