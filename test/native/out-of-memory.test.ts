/**
 * Out of memory: a kernel needs a little scratch memory per call (a few bytes per statistic, kept
 * per thread). When it cannot be allocated the kernel returns before writing anything and the
 * addon reports it (a RangeError `<phase>: out of memory: …; nothing was written`, as V8's own
 * allocation failures are RangeErrors), run and runAsync, instead of aborting the process. The
 * addon's testing hook setScratchLimit makes every scratch request above a size fail as a failed
 * malloc would.
 */
import { afterEach, expect, it } from 'vitest';
import * as api from '../../lib/index.js';
import { validCall } from './bad-calls.js';
import { bnNorm, bytesOf, describeNative, FLOAT_TYPES, Phase, PHASES, sameBits, untypedBinding } from './helpers.js';

describeNative('out of memory', () => {
  const raw = () => untypedBinding();
  afterEach(() => raw().setScratchLimit!(0));

  for (const phase of PHASES) {
    for (const Ctor of FLOAT_TYPES) {
      it(`${phase} (${Ctor.name}): a failed scratch allocation is a RangeError and writes nothing; the next call works`, async () => {
        let refused = 0;
        for (const fn of ['run', 'runAsync']) {
          const args = validCall(phase, Ctor);
          const before = args.map((a) => (ArrayBuffer.isView(a) ? bytesOf(a) : undefined));
          raw().setScratchLimit!(1);
          let error: unknown;
          try {
            await raw()[fn]!(...args);
          } catch (e) {
            error = e;
          }
          raw().setScratchLimit!(0);
          if (error === undefined) continue; // this phase and dtype need no scratch memory
          refused++;
          expect(error, fn).toBeInstanceOf(RangeError);
          expect((error as Error).message).toMatch(new RegExp(`^${phase}: out of memory: .*nothing was written$`));
          args.forEach((a, i) => {
            if (before[i]) expect(sameBits(a as ArrayBufferView, before[i]!), `${fn}: argument ${i + 1} was written`).toBe(true);
          });
          await raw()[fn]!(...args); // memory back: the same call succeeds
        }
        // the statistics of every phase but backward (and update in float64) need scratch memory
        if (phase !== 'backward' && !(phase === 'update' && Ctor === Float64Array)) expect(refused).toBe(2);
      });
    }
  }

  it('a runAsync large enough for the thread pool rejects with the same RangeError and writes nothing', async () => {
    const s = { outer: 4, channels: 16, inner: 1024 }; // 65536 elements: past the addon's inline size
    const x = new Float32Array(s.outer * s.channels * s.inner).map((_, i) => Math.sin(i));
    const y = new Float32Array(x.length).fill(7);
    const mean = new Float32Array(s.channels).fill(7);
    const invStd = new Float32Array(s.channels).fill(7);
    const n = bnNorm(Phase.train, Float32Array, s, { x, y, mean, invStd }, { eps: 1e-5 });
    const args = [n.scalars, ...n.tensors];
    raw().setScratchLimit!(1);
    const error = await (raw().runAsync!(...args) as Promise<number>).then(() => undefined, (e: unknown) => e);
    expect(error).toBeInstanceOf(RangeError);
    expect((error as Error).message).toMatch(/^train: out of memory: .*nothing was written$/);
    raw().setScratchLimit!(0);
    expect(y.every((v) => v === 7) && mean.every((v) => v === 7) && invStd.every((v) => v === 7)).toBe(true);
    await raw().runAsync!(...args);
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
