/**
 * The raw addon called directly with garbage (README "Errors": the binding validates what it is
 * given). Every function gets a valid argument list with exactly one argument spoiled; each call
 * must throw a TypeError (wrong type) or RangeError (wrong value) whose message names the
 * argument, the process must survive, and no array may change (a call that throws has written
 * nothing). The async variants reject with the same errors instead of throwing.
 */
import { expect, it } from 'vitest';
import {
  NATIVE_SPECS as SPECS,
  nativeBadCallCount,
  nativeSpoils as spoils,
  nativeValidArgs as validArgs,
} from '../reliability/bad-inputs.js';
import { bytesOf, describeNative, FLOAT_TYPES, sameBits, untypedBinding, type FloatArray } from './helpers.js';

// The spoiled argument lists come from the one bad-input matrix (test/reliability/bad-inputs.ts),
// which also drives the façade on every backend and the raw WASM C ABI.
const counts = nativeBadCallCount();
console.log(`native binding bad-input matrix: ${counts.sync} spoiled sync calls, ${counts.async} spoiled async calls`);

/** Copies of every typed array's bytes among the arguments. */
function snapshot(args: unknown[]): (Uint8Array | undefined)[] {
  return args.map((a) => (ArrayBuffer.isView(a) && a.buffer.byteLength > 0 ? bytesOf(a) : undefined));
}

function expectUntouched(args: unknown[], before: (Uint8Array | undefined)[]): void {
  args.forEach((a, i) => {
    if (before[i]) expect(sameBits(a as ArrayBufferView, before[i]!), `argument ${i + 1} was written`).toBe(true);
  });
}

function expectNamed(error: unknown, kind: typeof TypeError | typeof RangeError, blame: string | RegExp): void {
  expect(error).toBeInstanceOf(kind);
  // RangeError and TypeError are siblings: make sure it is not the other one
  expect((error as Error).constructor).toBe(kind);
  const message = (error as Error).message;
  if (typeof blame === 'string') expect(message).toContain(`'${blame}'`);
  else expect(message).toMatch(blame);
  expect(message).toMatch(/received/);
}

describeNative('native binding: garbage in, errors out', () => {
  for (const T of FLOAT_TYPES) {
    for (const spec of SPECS) {
      const label = `${spec.name} (${T.name})`;

      it(`${label}: the valid argument list is accepted`, () => {
        const f = untypedBinding()[spec.name]!;
        expect(() => f(...validArgs(spec, T))).not.toThrow();
      });

      it(`${label}: a wrong argument count throws TypeError`, () => {
        const f = untypedBinding()[spec.name]!;
        const args = validArgs(spec, T);
        for (const bad of [[], args.slice(0, -1), [...args, 0], args.slice(0, 1)]) {
          const before = snapshot(bad);
          let error: unknown;
          try {
            f(...bad);
          } catch (e) {
            error = e;
          }
          expect(error).toBeInstanceOf(TypeError);
          expect((error as Error).message).toMatch(new RegExp(`${spec.name}: expected ${args.length} arguments; received ${bad.length}`));
          expectUntouched(bad, before);
        }
      });

      spec.args.forEach(([name, role], index) => {
        const cases = spoils(spec, name, role, T, validArgs(spec, T)[index]);
        it(`${label}: argument ${index + 1} '${name}' spoiled ${cases.length} ways throws and writes nothing`, () => {
          const f = untypedBinding()[spec.name]!;
          for (const c of cases) {
            const args = validArgs(spec, T);
            args[index] = c.value;
            const before = snapshot(args);
            let error: unknown;
            try {
              f(...args);
            } catch (e) {
              error = e;
            }
            expect(error, `${name} = ${c.what} did not throw`).toBeDefined();
            expectNamed(error, c.error, c.blame ?? name);
            expectUntouched(args, before);
          }
        });

        if (spec.async) {
          it(`${label}Async: argument ${index + 1} '${name}' spoiled rejects and writes nothing`, async () => {
            const f = untypedBinding()[`${spec.name}Async`]!;
            for (const c of cases) {
              const args = validArgs(spec, T);
              args[index] = c.value;
              const before = snapshot(args);
              let promise: unknown;
              expect(() => (promise = f(...args)), 'async variants reject, never throw').not.toThrow();
              expect(promise).toBeInstanceOf(Promise);
              const error = await (promise as Promise<unknown>).then(
                () => undefined,
                (e: unknown) => e,
              );
              expect(error, `${name} = ${c.what} did not reject`).toBeDefined();
              expectNamed(error, c.error, c.blame ?? name);
              expectUntouched(args, before);
            }
          });
        }
      });
    }

    it(`train (${T.name}): runningMean and runningVar must come as a pair`, () => {
      const f = untypedBinding().train!;
      const spec = SPECS[0]!;
      for (const nulled of [11, 12]) {
        const args = validArgs(spec, T);
        args[nulled] = null;
        const before = snapshot(args);
        expect(() => f(...args)).toThrow(TypeError);
        expect(() => f(...args)).toThrow(/'runningVar'/);
        expectUntouched(args, before);
      }
    });
  }

  it('geometry products that overflow throw RangeError naming the product', () => {
    const f = untypedBinding().infer!;
    const p = new Float32Array(1);
    const big = 2 ** 53 - 1;
    for (const [outer, channels, inner] of [
      [2 ** 40, 2 ** 30, 2 ** 20],
      [big, big, 1],
      [big, 2, 1],
      [2 ** 32, 2 ** 32, 2],
      [1, big, big],
    ]) {
      const x = new Float32Array(24);
      const y = new Float32Array(24);
      const before = bytesOf(y);
      expect(() => f(x, outer, channels, inner, p, p, null, null, 1e-5, false, y)).toThrow(RangeError);
      expect(() => f(x, outer, channels, inner, p, p, null, null, 1e-5, false, y)).toThrow(/outer \* channels \* inner/);
      expect(sameBits(y, before)).toBe(true);
    }
  });

  it('a huge geometry with a zero dimension is empty and returns at once', () => {
    const f = untypedBinding();
    const none = new Float64Array(0);
    const start = performance.now();
    // no element at all: neither outer nor inner may be looped over
    f.infer!(none, 2 ** 52, 0, 2 ** 52, none, none, null, null, 1e-5, false, none);
    f.moments!(none, 2 ** 53 - 1, 0, 1, none, none);
    f.backward!(none, none, 1, 0, 2 ** 53 - 1, none, none, null, null, true, none, none, none);
    const mean = new Float64Array(3);
    const variance = new Float64Array(3);
    f.moments!(none, 0, 3, 2 ** 52, mean, variance);
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
    expect([...dst]).toEqual(new Array(16).fill(0));
    expect(() => f.readFloats!(new Float64Array(4), 1)).toThrow(TypeError);
    expect(() => f.readFloats!(new Float32Array(4), 0.5)).toThrow(RangeError);
    expect(() => f.readFloats!({ length: 4 }, 1)).toThrow(TypeError);
  });
});

describeNative('native binding: what it accepts', () => {
  for (const T of FLOAT_TYPES) {
    it(`train (${T.name}): gamma, beta and the running pair may be null`, () => {
      const b = untypedBinding();
      const args = validArgs(SPECS[0]!, T);
      args[4] = null;
      args[5] = null;
      args[11] = null;
      args[12] = null;
      expect(b.train!(...args)).toBe(false); // no running stats, nothing written to them
      const withRunning = validArgs(SPECS[0]!, T);
      expect(b.train!(...withRunning)).toBe(true);
    });

    it(`infer and backward (${T.name}): subarrays (byteOffset) and SharedArrayBuffers give the same bits as plain arrays`, () => {
      const b = untypedBinding();
      for (const spec of [SPECS[1]!, SPECS[2]!, SPECS[0]!, SPECS[3]!]) {
        const plain = validArgs(spec, T);
        const moved = plain.map((a) => {
          if (!ArrayBuffer.isView(a)) return a;
          const src = a as FloatArray;
          // an odd element offset inside a larger SharedArrayBuffer
          const sab = new SharedArrayBuffer((src.length + 3) * T.BYTES_PER_ELEMENT);
          const view = new T(sab as unknown as ArrayBuffer, 3 * T.BYTES_PER_ELEMENT, src.length);
          view.set(src);
          return view;
        });
        const r1 = b[spec.name]!(...plain);
        const r2 = b[spec.name]!(...moved);
        expect(r2).toBe(r1);
        plain.forEach((a, i) => {
          if (ArrayBuffer.isView(a)) expect(sameBits(a, moved[i] as FloatArray), `${spec.name} argument ${i + 1}`).toBe(true);
        });
      }
    });

    it(`infer (${T.name}): y may alias x (in place)`, () => {
      const b = untypedBinding();
      const args = validArgs(SPECS[1]!, T);
      const x = args[0] as FloatArray;
      const y = args[10] as FloatArray;
      b.infer!(...args);
      args[10] = x;
      b.infer!(...args);
      expect(sameBits(x, y)).toBe(true);
    });

    it(`moments (${T.name}): zero elements with channels > 0 are accepted`, () => {
      const b = untypedBinding();
      const mean = new T(3);
      const variance = new T(3);
      expect(() => b.moments!(new T(0), 0, 3, 5, mean, variance)).not.toThrow();
      expect(() => b.moments!(new T(0), 4, 3, 0, mean, variance)).not.toThrow();
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
