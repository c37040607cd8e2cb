/**
 * The BatchNorm layer's step on the fast path (issue 17): the layer reuses the shape it derived
 * for dims it has seen (lib/layer.ts, shapeFor) and its ordinary arrays skip the module-memory
 * check while no wasm block exists (lib/layers/home.ts). Neither changes a result or an error:
 * every step gives bitwise what the public functions give, over changing shapes and layouts, and
 * a bad x of a seen shape is still a typed error that writes nothing.
 */
import { afterAll, describe, expect, it } from 'vitest';
import * as api from '../../lib/index.js';
import { Random } from '../../lib/random.js';

await api.ready();
afterAll(() => api.useBackend('auto'));

function filled(n: number, rng: Random, scale = 1, offset = 0): Float32Array {
  return Float32Array.from({ length: n }, () => offset + scale * (rng.next() - 0.5));
}

/** One training step of `bn` on x of `shape`, checked bit for bit against the public functions. */
function stepMatches(bn: InstanceType<typeof api.BatchNorm>, shape: number[], layout: api.Layout, rng: Random): void {
  const n = shape.reduce((a, b) => a * b, 1);
  const x = filled(n, rng, 4, 1);
  const dy = filled(n, rng);
  const runningMean = bn.runningMean!.slice();
  const runningVar = bn.runningVar!.slice();
  const count = bn.numBatchesTracked;
  const options = { layout, eps: bn.eps, momentum: bn.momentum };
  const want = api.batchNormTrain({ x, shape, gamma: bn.gamma, beta: bn.beta, runningMean, runningVar, numBatchesTracked: count }, options);
  const y = bn.forward(x, shape);
  expect(Array.from(y)).toEqual(Array.from(want.y));
  expect(Array.from(bn.runningMean!)).toEqual(Array.from(runningMean));
  expect(Array.from(bn.runningVar!)).toEqual(Array.from(runningVar));
  const back = api.batchNormBackward({ dy, x, shape, mean: want.mean, invStd: want.invStd, gamma: bn.gamma }, options);
  const dx = bn.backward(dy);
  expect(Array.from(dx)).toEqual(Array.from(back.dx));
  expect(Array.from(bn.dgamma!)).toEqual(Array.from(back.dgamma));
  expect(Array.from(bn.dbeta!)).toEqual(Array.from(back.dbeta));
}

const backendsToRun = api.backends().filter((b) => b.available).map((b) => b.name);

describe.each(backendsToRun)('BatchNorm layer steps on %s', (backend) => {
  it('shapes that change and come back: each step bitwise the public functions (channels-first and channels-last)', () => {
    api.useBackend(backend);
    const rng = new Random(17);
    for (const layout of ['channels-first', 'channels-last'] as const) {
      const bn = new api.BatchNorm(3, { layout });
      const at = (s: number[]) => (layout === 'channels-first' ? s : [s[0], ...s.slice(2), s[1]]);
      for (const shape of [[4, 3], [4, 3], [2, 3], [4, 3, 5], [4, 3, 5], [4, 3], [6, 3, 2, 2]]) stepMatches(bn, at(shape), layout, rng);
    }
  });

  it('a seen shape with an x of the wrong length: RangeError naming x, nothing written', () => {
    api.useBackend(backend);
    const rng = new Random(3);
    const bn = new api.BatchNorm(3);
    bn.forward(filled(12, rng), [4, 3]);
    const before = [bn.runningMean!.slice(), bn.runningVar!.slice(), bn.numBatchesTracked] as const;
    const y = new Float32Array(12).fill(7);
    expect(() => bn.forward(filled(9, rng), [4, 3], { y })).toThrow(RangeError);
    expect(() => bn.forward(filled(9, rng), [4, 3], { y })).toThrow(/^x must have length 12/);
    expect(() => bn.forward(new Float64Array(12) as unknown as Float32Array, [4, 3], { y })).toThrow(TypeError);
    expect(Array.from(y)).toEqual(new Array(12).fill(7));
    expect([bn.runningMean!.slice(), bn.runningVar!.slice(), bn.numBatchesTracked]).toEqual(before);
    stepMatches(bn, [4, 3], 'channels-first', rng); // and the layer goes on as before
  });
});

// The wasm backend is always there (the package ships its modules): no skip.
describe('a layer of ordinary arrays fed views of module memory', () => {
  it('after wasmMemory.alloc made a block, a module view as x is pinned and gives the ordinary array results', () => {
    api.useBackend('auto');
    const rng = new Random(5);
    const plain = new api.BatchNorm(3);
    const reference = new api.BatchNorm(3);
    const block = api.wasmMemory.alloc(Float32Array, 24);
    try {
      const x = filled(24, rng, 2, 1);
      block.array.set(x);
      const dy = filled(24, rng);
      const y = plain.forward(block.array, [4, 3, 2]);
      const want = reference.forward(x, [4, 3, 2]);
      expect(Array.from(y)).toEqual(Array.from(want));
      expect(Array.from(plain.backward(dy))).toEqual(Array.from(reference.backward(dy)));
    } finally {
      block.free();
    }
  });
});
