/**
 * Out of memory in the wasm backend: a kernel's scratch request that the module cannot serve
 * makes sn_run return noMemory before anything is written, and Backend.run throws abiError's
 * RangeError naming the phase, with the caller's outputs (copied or zero-copy) and running statistics as they
 * were. Module memory cannot be made to run out from a test, so the ABI's testing hook
 * sn_set_scratch_limit makes every scratch request above a size fail, as the native addon's
 * setScratchLimit does (test/native/out-of-memory.test.ts).
 */
import { afterEach, describe, expect, it } from 'vitest';
import type { Backend, FloatArray } from '../../lib/backend.js';
import type { WasmBackend, WasmVariant } from '../../lib/backends/wasm.js';
import { loadWasmBackendSync } from '../../lib/backends/wasm-node.js';
import { ops, random, randomArray } from './helpers.js';

const variants: WasmVariant[] = ['simd128', 'scalar'];

/** The raw export behind the hook (the backend keeps its exports private). */
function setScratchLimit(backend: WasmBackend, bytes: number): void {
  const abi = backend.abi.exports;
  if (!abi.sn_set_scratch_limit) throw new Error('the wasm module does not export sn_set_scratch_limit');
  abi.sn_set_scratch_limit(bytes);
}

/** An array of n elements, read through a getter: a module-memory view is detached when the
 * memory grows, and WasmArray.array gives a fresh one. */
type Make = (n: number) => () => FloatArray;

interface Call {
  name: string;
  /** the phase abiError names */
  phase: string;
  outputs: (() => FloatArray)[];
  run: (b: Backend) => unknown;
}

/** One call of each kernel with fresh arguments from make (plain arrays or module memory). */
function calls(make: Make, rand: () => number): Call[] {
  const geometry = { outer: 3, channels: 40, inner: 21 };
  const n = 3 * 40 * 21;
  const C = 40;
  const filled = (len: number, scale: number, offset: number) => {
    const a = make(len);
    a().set(randomArray(Float32Array, len, rand, offset, scale));
    return a;
  };
  const x = filled(n, 2, 1);
  const dy = filled(n, 1, 0);
  const gamma = filled(C, 0.5, 1);
  const beta = filled(C, 0.5, 0);
  const runningMean = filled(C, 1, 0);
  const runningVar = filled(C, 0.5, 2);
  const mean = filled(C, 1, 0);
  const invStd = filled(C, 0.5, 2);
  const y = filled(n, 1, 7);
  const dx = filled(n, 1, 7);
  const out = () => filled(C, 1, 7);
  const [meanOut, invStdOut, dgamma, dbeta, varianceOut] = [out(), out(), out(), out(), out()];
  return [
    {
      name: 'train',
      phase: 'train',
      outputs: [y, meanOut, invStdOut, runningMean, runningVar],
      run: (b) => ops(b).train({ x: x(), geometry, gamma: gamma(), beta: beta(), eps: 1e-5, relu: true, y: y(), mean: meanOut(),
        invStd: invStdOut(), running: { runningMean: runningMean(), runningVar: runningVar(), factor: 0.1, varScale: 1,
          skipNonFinite: false } }),
    },
    {
      name: 'infer',
      phase: 'infer',
      outputs: [y],
      run: (b) => ops(b).infer({ x: x(), geometry, runningMean: runningMean(), runningVar: runningVar(), gamma: gamma(),
        beta: beta(), eps: 1e-5, relu: false, y: y() }),
    },
    {
      name: 'backward',
      phase: 'backward',
      outputs: [dx, dgamma, dbeta],
      run: (b) => ops(b).backward({ dy: dy(), x: x(), geometry, mean: mean(), invStd: invStd(), gamma: gamma(), y: null,
        training: true, dx: dx(), dgamma: dgamma(), dbeta: dbeta() }),
    },
    {
      name: 'moments',
      phase: 'moments',
      outputs: [meanOut, varianceOut],
      run: (b) => ops(b).moments({ x: x(), geometry, mean: meanOut(), variance: varianceOut() }),
    },
  ];
}

describe.each(variants)('out of memory (%s)', (variant) => {
  const backend = loadWasmBackendSync(variant);
  afterEach(() => setScratchLimit(backend, 0));

  const makers: [string, Make][] = [
    ['arrays copied in and out', (n) => {
      const a = new Float32Array(n);
      return () => a;
    }],
    ['zero-copy arrays in module memory', (n) => {
      const block = backend.memory.alloc(Float32Array, n);
      return () => block.array;
    }],
  ];
  for (const [label, make] of makers) {
    it(`every phase throws a RangeError naming the call and writes nothing (${label}); the next call works`, () => {
      for (const call of calls(make, random(11))) {
        const before = call.outputs.map((a) => Array.from(a()));
        setScratchLimit(backend, 1);
        expect(() => call.run(backend), call.name).toThrow(
          new RangeError(`${call.phase}: out of memory: the kernels' scratch memory could not be allocated; nothing was written`),
        );
        setScratchLimit(backend, 0);
        call.outputs.forEach((a, i) => expect(Array.from(a()), `${call.name}: output ${i} was written`).toEqual(before[i]));
        call.run(backend); // memory back: the same call succeeds and writes its outputs
        expect(call.outputs.some((a, i) => Array.from(a()).some((v, k) => !Object.is(v, before[i][k]))), call.name).toBe(true);
      }
    });
  }
});
