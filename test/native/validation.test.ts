/**
 * The raw addon called directly with garbage (test/native/bad-calls.ts): every phase and dtype
 * gets a valid descriptor with exactly one thing spoiled; run must throw, runAsync must reject
 * (never throw), the process must survive, and no array may change (a refused call has written
 * nothing). The addon guards memory only: its errors are `internal error: …` (the façade words
 * what users see), a TypeError for a value of the wrong type.
 */
import { expect, it } from 'vitest';
import { badCalls, SHAPE, validCall } from './bad-calls.js';
import {
  binding,
  bnNorm,
  bnProblem,
  bnStep,
  bytesOf,
  describeNative,
  FLOAT_TYPES,
  Phase,
  PHASES,
  run,
  runArgs,
  sameBits,
  SLOT_NAMES,
  untypedBinding,
  type FloatArray,
} from './helpers.js';

/** Copies of every typed array's bytes among the arguments. */
function snapshot(args: unknown[]): (Uint8Array | undefined)[] {
  return args.map((a) => (ArrayBuffer.isView(a) && a.buffer.byteLength > 0 ? bytesOf(a) : undefined));
}

function expectUntouched(args: unknown[], before: (Uint8Array | undefined)[], what: string): void {
  args.forEach((a, i) => {
    if (before[i]) expect(sameBits(a as ArrayBufferView, before[i]!), `${what}: argument ${i + 1} was written`).toBe(true);
  });
}

function expectRefusal(error: unknown, type: boolean, what: string): void {
  expect(error, `${what}: not refused`).toBeInstanceOf(Error);
  expect((error as Error).constructor, `${what}: ${String(error)}`).toBe(type ? TypeError : Error);
  expect((error as Error).message, what).toMatch(new RegExp(`^internal error: |^run(Async)?: expected ${SLOT_NAMES.length + 2} arguments`));
}

describeNative('native binding: garbage in, errors out', () => {
  let total = 0;
  for (const T of FLOAT_TYPES) {
    for (const phase of PHASES) {
      const label = `${phase} (${T.name})`;

      it(`${label}: the valid call is accepted, sync and async`, async () => {
        const f = untypedBinding();
        expect(f.run!(...validCall(phase, T))).toBeGreaterThanOrEqual(0);
        expect(await f.runAsync!(...validCall(phase, T))).toBeGreaterThanOrEqual(0);
      });

      it(`${label}: every spoiled call throws and writes nothing`, () => {
        const f = untypedBinding().run!;
        const cases = badCalls(phase, T);
        total += cases.length;
        for (const c of cases) {
          const before = snapshot(c.args);
          let error: unknown;
          try {
            f(...c.args);
          } catch (e) {
            error = e;
          }
          expectRefusal(error, c.type, c.what);
          expectUntouched(c.args, before, c.what);
        }
      });

      it(`${label}: every spoiled call rejects (never throws) and writes nothing, async`, async () => {
        const f = untypedBinding().runAsync!;
        for (const c of badCalls(phase, T)) {
          const before = snapshot(c.args);
          let promise: unknown;
          expect(() => (promise = f(...c.args)), `${c.what}: runAsync threw`).not.toThrow();
          expect(promise).toBeInstanceOf(Promise);
          const error = await (promise as Promise<unknown>).then(() => undefined, (e: unknown) => e);
          expectRefusal(error, c.type, c.what);
          expectUntouched(c.args, before, c.what);
        }
      });
    }
  }

  it('the matrix is large (printed)', () => {
    console.log(`native binding bad-input matrix: ${total} spoiled calls, each sync and async`);
    expect(total).toBeGreaterThan(500);
  });

  it('a huge geometry with a zero dimension is empty and returns at once', () => {
    const none = new Float64Array(0);
    const start = performance.now();
    // no element at all: neither outer nor inner may be looped over
    for (const phase of PHASES) {
      const n = bnNorm(Phase[phase], Float64Array, { outer: 2 ** 52, channels: 0, inner: 2 ** 52 }, {}, { eps: 1e-5 });
      expect(run(n), phase).toBeGreaterThanOrEqual(0);
    }
    const mean = new Float64Array(3);
    const variance = new Float64Array(3);
    run(bnNorm(Phase.moments, Float64Array, { outer: 0, channels: 3, inner: 2 ** 52 }, { x: none, mean, variance }));
    expect(performance.now() - start).toBeLessThan(1000);
  });

  it('setThreads, copyBytes and readFloats check their arguments too', () => {
    const f = untypedBinding();
    const threads = f.getThreads!();
    for (const [bad, kind] of [
      [-1, RangeError], [1.5, RangeError], [NaN, RangeError], [257, RangeError], [1e12, RangeError],
      ['2', TypeError], [null, TypeError], [undefined, TypeError],
    ] as const) {
      expect(() => f.setThreads!(bad)).toThrow(kind);
      expect(() => f.setThreads!(bad)).toThrow(/'n'/);
    }
    expect(() => f.setThreads!()).toThrow(TypeError);
    expect(f.getThreads!()).toBe(threads);
    expect(() => f.getThreads!(1)).toThrow(TypeError);
    expect(() => f.info!(1)).toThrow(TypeError);

    const dst = new Uint8Array(16);
    expect(() => f.copyBytes!(dst, new Uint8Array(15), 1)).toThrow(RangeError);
    expect(() => f.copyBytes!(dst, [1, 2], 1)).toThrow(TypeError);
    expect(() => f.copyBytes!(new DataView(dst.buffer), dst, 1)).toThrow(TypeError);
    expect(() => f.copyBytes!(dst, new Uint8Array(16), -1)).toThrow(RangeError);
    expect(() => f.copyBytes!(dst, new Uint8Array(16))).toThrow(TypeError);
    expect(() => f.copyBytes!(dst.subarray(0, 8), dst.subarray(4, 12), 1)).toThrow(RangeError);
    expect([...dst]).toEqual(new Array(16).fill(0));
    expect(() => f.readFloats!(new Float64Array(4), 1)).toThrow(TypeError);
    expect(() => f.readFloats!(new Float32Array(4), 0.5)).toThrow(RangeError);
    expect(() => f.readFloats!({ length: 4 }, 1)).toThrow(TypeError);
  });
});

describeNative('native binding: what it accepts', () => {
  for (const T of FLOAT_TYPES) {
    it(`train (${T.name}): γ, β and the running pair may be null; the result says whether the running stats were written`, () => {
      const p = bnProblem(T, SHAPE, 3);
      const n = bnStep('train', T, SHAPE, p, { running: false });
      n.tensors[4] = null;
      n.tensors[5] = null;
      const before = bytesOf(p.runningMean);
      expect(run(n)).toBe(0);
      expect(sameBits(p.runningMean, before)).toBe(true);
      expect(run(bnStep('train', T, SHAPE, p))).toBe(1);
    });

    it(`every phase (${T.name}): views at odd element offsets of SharedArrayBuffers give the bits of plain arrays`, () => {
      for (const phase of PHASES) {
        const plain = validCall(phase, T);
        const moved = plain.map((a, i) => {
          if (i === 0 || !a) return a;
          const src = a as FloatArray;
          // an odd element offset inside a larger SharedArrayBuffer (a Float32Array 4 bytes into
          // an 8-aligned buffer: aligned for its dtype)
          const sab = new SharedArrayBuffer((src.length + 3) * T.BYTES_PER_ELEMENT);
          const view = new T(sab as unknown as ArrayBuffer, 3 * T.BYTES_PER_ELEMENT, src.length);
          view.set(src);
          return view;
        });
        const b = binding();
        expect(b.run(...(moved as Parameters<typeof b.run>))).toBe(b.run(...(plain as Parameters<typeof b.run>)));
        plain.forEach((a, i) => {
          if (i > 0 && a) expect(sameBits(a as FloatArray, moved[i] as FloatArray), `${phase} argument ${i + 1}`).toBe(true);
        });
      }
    });

    it(`infer and backward (${T.name}): y may be exactly x, dx exactly dy (in place)`, () => {
      const p = bnProblem(T, SHAPE, 4);
      run(bnStep('infer', T, SHAPE, p));
      const x = p.x.slice();
      run(bnStep('infer', T, SHAPE, { ...p, y: x, x }));
      expect(sameBits(x, p.y)).toBe(true);
      run(bnStep('backward', T, SHAPE, p));
      const dy = p.dy.slice();
      run(bnStep('backward', T, SHAPE, { ...p, dx: dy, dy }));
      expect(sameBits(dy, p.dx)).toBe(true);
    });

    it(`moments (${T.name}): zero elements with statistics are accepted; empty tensors may be null`, () => {
      const mean = new T(3);
      const variance = new T(3);
      expect(run(bnNorm(Phase.moments, T, { outer: 0, channels: 3, inner: 5 }, { x: new T(0), mean, variance }))).toBe(0);
      expect(run(bnNorm(Phase.moments, T, { outer: 4, channels: 3, inner: 0 }, { x: null, mean, variance }))).toBe(0);
      expect(() => runArgs(bnNorm(Phase.moments, T, SHAPE, { mean, variance }))).not.toThrow();
    });
  }

  it('info() describes the build; copyBytes and readFloats work', () => {
    const b = untypedBinding();
    const info = b.info!() as Record<string, unknown>;
    expect(info.napiVersion).toBe(8);
    expect(['node-gyp', 'cmake-js']).toContain(info.build);
    expect(typeof info.simd).toBe('string');
    expect(info.maxThreads).toBeGreaterThanOrEqual(1);
    expect(info.threads).toBe(b.getThreads!());

    const src = new Uint8Array(1 << 20).map((_, i) => (i * 7) & 255);
    const dst = new Uint8Array(1 << 20);
    b.copyBytes!(dst, src, 0);
    expect(sameBits(dst, src)).toBe(true);
    const f32 = new Float32Array(1 << 18).map((_, i) => i % 16);
    const expected = f32.reduce((s, v) => s + v, 0);
    expect(b.readFloats!(f32, 0)).toBe(expected);
    expect(b.readFloats!(f32.subarray(1, 17), 1)).toBe(120);
  });
});
