/**
 * Out of memory: a kernel needs a little scratch memory per call (a few bytes per channel, kept
 * per thread). When it cannot be allocated the kernel returns before writing anything and the
 * binding reports it (a RangeError naming the call, as V8's own allocation failures are), sync
 * and async, instead of aborting the process. The binding's testing hook setScratchLimit makes
 * every scratch request above a size fail as a failed malloc would.
 */
import { afterEach, expect, it } from 'vitest';
import * as api from '../../lib/index.js';
import { NATIVE_SPECS as SPECS, nativeValidArgs as validArgs } from '../reliability/bad-inputs.js';
import { bytesOf, describeNative, FLOAT_TYPES, sameBits, untypedBinding } from './helpers.js';

describeNative('out of memory', () => {
  const raw = () => untypedBinding();
  afterEach(() => raw().setScratchLimit!(0));

  for (const spec of SPECS.filter((s) => s.name !== 'updateRunningStats')) {
    for (const Ctor of FLOAT_TYPES) {
      it(`${spec.name} (${Ctor.name}): a failed scratch allocation throws a RangeError and writes nothing; the next call works`, async () => {
        const variants = [spec.name, ...(spec.name === 'moments' ? [] : [`${spec.name}Async`])];
        for (const fn of variants) {
          const args = validArgs(spec, Ctor);
          const before = args.map((a) => (ArrayBuffer.isView(a) ? bytesOf(a) : undefined));
          raw().setScratchLimit!(1);
          let error: unknown;
          try {
            await raw()[fn]!(...args);
          } catch (e) {
            error = e;
          }
          raw().setScratchLimit!(0);
          expect(error, fn).toBeInstanceOf(RangeError);
          expect((error as Error).message).toMatch(new RegExp(`^${fn}: out of memory: .*nothing was written$`));
          args.forEach((a, i) => {
            if (before[i]) expect(sameBits(a as ArrayBufferView, before[i]!), `${fn}: argument ${i + 1} was written`).toBe(true);
          });
          await raw()[fn]!(...args); // memory back: the same call succeeds
        }
      });
    }
  }

  it('an async call large enough for the thread pool rejects with the same RangeError and writes nothing', async () => {
    const [outer, channels, inner] = [4, 16, 1024]; // 65536 elements: past the binding's inline size
    const x = new Float32Array(outer * channels * inner).map((_, i) => Math.sin(i));
    const y = new Float32Array(x.length).fill(7);
    const mean = new Float32Array(channels).fill(7);
    const invStd = new Float32Array(channels).fill(7);
    const b = raw();
    raw().setScratchLimit!(1);
    const pending = b.trainAsync!(x, outer, channels, inner, null, null, 1e-5, false, y, mean, invStd, null, null, 0, 1, false) as Promise<boolean>;
    const error = await pending.then(() => undefined, (e: unknown) => e);
    expect(error).toBeInstanceOf(RangeError);
    expect((error as Error).message).toMatch(/^trainAsync: out of memory: .*nothing was written$/);
    raw().setScratchLimit!(0);
    expect(y.every((v) => v === 7) && mean.every((v) => v === 7) && invStd.every((v) => v === 7)).toBe(true);
    await b.trainAsync!(x, outer, channels, inner, null, null, 1e-5, false, y, mean, invStd, null, null, 0, 1, false);
    expect(y.some((v) => v !== 7)).toBe(true);
  });

  it('through the façade: batchNormTrain throws, y and the running statistics stay as they were', () => {
    const x = new Float32Array(2 * 8 * 16).map((_, i) => Math.sin(i));
    const runningMean = new Float32Array(8).fill(0.5);
    const runningVar = new Float32Array(8).fill(2);
    const y = new Float32Array(x.length).fill(7);
    raw().setScratchLimit!(1);
    expect(() =>
      api.withBackend('native', () => api.batchNormTrain({ x, shape: [2, 8, 16], runningMean, runningVar }, {}, { y })),
    ).toThrow(/out of memory/);
    raw().setScratchLimit!(0);
    expect(Array.from(y)).toEqual(new Array(x.length).fill(7));
    expect(Array.from(runningMean)).toEqual(new Array(8).fill(0.5));
    expect(Array.from(runningVar)).toEqual(new Array(8).fill(2));
    const r = api.withBackend('native', () => api.batchNormTrain({ x, shape: [2, 8, 16], runningMean, runningVar }));
    expect(r.updated).toBe(true);
  });
});
