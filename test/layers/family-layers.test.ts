/**
 * The family's layers (lib/layers/: LayerNorm, RMSNorm, GroupNorm, InstanceNorm) against the
 * functional ops they wrap: the same outputs and gradients bit for bit on the same backend, state
 * round trips under PyTorch's names, all-or-nothing loadState, InstanceNorm's train/eval switch,
 * strict constructor options, and a few SGD steps of a tiny model reducing its loss.
 *
 * Runs on every backend that loads; one that does not run the family's ops yet (native and wasm
 * while they are being ported) is a loud skip.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as api from '../../lib/index.js';
import { Random } from '../../lib/random.js';
import { BACKENDS, describeBackend, type DType, type FloatArray } from '../reliability/support.js';

type Ctor = Float32ArrayConstructor | Float64ArrayConstructor;
const ctor = (dtype: DType): Ctor => (dtype === 'float32' ? Float32Array : Float64Array);

function data(dtype: DType, n: number, seed: number): FloatArray {
  const rng = new Random(seed);
  const a = new (ctor(dtype))(n);
  for (let i = 0; i < n; i++) a[i] = rng.normal() * 2 + 0.5;
  return a;
}

/** Bitwise equality (NaN payloads included). */
function same(actual: FloatArray | null | undefined, expected: FloatArray | null | undefined, what = ''): void {
  expect(actual === null || actual === undefined, what).toBe(expected === null || expected === undefined);
  if (!actual || !expected) return;
  expect(actual.constructor, what).toBe(expected.constructor);
  expect(Array.from(new Uint8Array(actual.buffer, actual.byteOffset, actual.byteLength)), what).toEqual(
    Array.from(new Uint8Array(expected.buffer, expected.byteOffset, expected.byteLength)),
  );
}

const size = (dims: readonly number[]) => dims.reduce((a, b) => a * b, 1);

/** Whether `backend` runs the family's ops (the port to native and wasm is in progress). */
function familyReason(backend: api.BackendName): string | undefined {
  try {
    api.withBackend(backend, () => api.layerNorm({ x: new Float32Array(4), shape: [2, 2], normalizedShape: [2] }));
    return undefined;
  } catch (e) {
    return `the family's ops do not run there yet (${(e as Error).message})`;
  }
}

await api.ready();

/** SIMDNORM_LAYER_BACKENDS=js,wasm: only these (e.g. while another backend's addon is mid-rebuild). */
const only = process.env.SIMDNORM_LAYER_BACKENDS?.split(',').map((b) => b.trim());

/** Per backend; skipped loudly where the family's ops do not run yet. */
function forEachBackend(title: string, body: () => void): void {
  for (const backend of BACKENDS) {
    describeBackend(backend, title, () => {
      const reason = only && !only.includes(backend) ? 'not in SIMDNORM_LAYER_BACKENDS' : familyReason(backend);
      if (reason !== undefined) {
        console.warn(`\n*** SKIPPING ${title} on ${backend}: ${reason} ***\n`);
        it.skip(`${backend}: ${reason}`, () => {});
        return;
      }
      beforeAll(() => api.useBackend(backend));
      afterAll(() => api.useBackend('auto'));
      body();
    });
  }
}

forEachBackend('layers = functional ops, bit for bit', () => {
  for (const dtype of ['float32', 'float64'] as const) {
    describe(dtype, () => {
      for (const [normalizedShape, shape] of [
        [4, [3, 4]],
        [[2, 5], [2, 3, 2, 5]],
      ] as [number | number[], number[]][]) {
        for (const config of [{}, { elementwiseAffine: false }, { bias: false }, { activation: 'relu' as const, eps: 1e-3 }]) {
          it(`LayerNorm(${JSON.stringify(normalizedShape)}, ${JSON.stringify(config)}) on [${shape}]`, () => {
            const ln = new api.LayerNorm<FloatArray>(normalizedShape, { ...config, dtype });
            const ns = typeof normalizedShape === 'number' ? [normalizedShape] : normalizedShape;
            // parameters that are not ones and zeros
            if (ln.weight) ln.weight.set(data(dtype, ln.weight.length, 7));
            if (ln.bias) ln.bias.set(data(dtype, ln.bias.length, 8));
            const x = data(dtype, size(shape), 1);
            const dy = data(dtype, size(shape), 2);
            const y = ln.forward(x, shape);
            const dx = ln.backward(dy);
            const options = { eps: config.eps ?? 1e-5, activation: (config.activation ?? 'none') as 'none' | 'relu' };
            const f = api.layerNorm({ x, shape, normalizedShape: ns, weight: ln.weight, bias: ln.bias }, options);
            const b = api.layerNormBackward(
              { dy, x, shape, normalizedShape: ns, mean: f.mean, invStd: f.invStd, weight: ln.weight, y: options.activation === 'relu' ? f.y : null },
              { activation: options.activation },
            );
            same(y, f.y, 'y');
            same(dx, b.dx, 'dx');
            same(ln.dweight, ln.weight ? b.dweight : null, 'dweight');
            same(ln.dbias, ln.bias ? b.dbias : null, 'dbias');
          });

          if ('bias' in config) continue; // RMSNorm has no bias
          it(`RMSNorm(${JSON.stringify(normalizedShape)}, ${JSON.stringify(config)}) on [${shape}]`, () => {
            const rn = new api.RMSNorm<FloatArray>(normalizedShape, { ...config, dtype });
            expect(rn.eps).toBe(config.eps ?? (dtype === 'float32' ? 2 ** -23 : Number.EPSILON));
            const ns = typeof normalizedShape === 'number' ? [normalizedShape] : normalizedShape;
            if (rn.weight) rn.weight.set(data(dtype, rn.weight.length, 7));
            const x = data(dtype, size(shape), 3);
            const dy = data(dtype, size(shape), 4);
            const y = rn.forward(x, shape);
            const dx = rn.backward(dy);
            const activation = config.activation ?? 'none';
            // eps not given: the functional op's own default (the dtype's machine epsilon)
            const f = api.rmsNorm({ x, shape, normalizedShape: ns, weight: rn.weight }, { eps: config.eps, activation });
            const b = api.rmsNormBackward(
              { dy, x, shape, normalizedShape: ns, invRms: f.invRms, weight: rn.weight, y: activation === 'relu' ? f.y : null },
              { activation },
            );
            same(y, f.y, 'y');
            same(dx, b.dx, 'dx');
            same(rn.dweight, rn.weight ? b.dweight : null, 'dweight');
          });
        }
      }

      for (const layout of ['channels-first', 'channels-last'] as const) {
        const shape = layout === 'channels-first' ? [2, 6, 3, 2] : [2, 3, 2, 6];
        for (const config of [{}, { affine: false }, { activation: 'relu' as const }]) {
          it(`GroupNorm(3, 6, ${JSON.stringify(config)}) ${layout}`, () => {
            const gn = new api.GroupNorm<FloatArray>(3, 6, { ...config, layout, dtype });
            if (gn.gamma) gn.gamma.set(data(dtype, 6, 9));
            if (gn.beta) gn.beta.set(data(dtype, 6, 10));
            const x = data(dtype, size(shape), 5);
            const dy = data(dtype, size(shape), 6);
            const y = gn.forward(x, shape);
            const dx = gn.backward(dy);
            const activation = config.activation ?? 'none';
            const f = api.groupNorm({ x, shape, groups: 3, gamma: gn.gamma, beta: gn.beta }, { layout, activation });
            const b = api.groupNormBackward(
              { dy, x, shape, groups: 3, mean: f.mean, invStd: f.invStd, gamma: gn.gamma, y: activation === 'relu' ? f.y : null },
              { layout, activation },
            );
            same(y, f.y, 'y');
            same(dx, b.dx, 'dx');
            same(gn.dgamma, gn.gamma ? b.dgamma : null, 'dgamma');
            same(gn.dbeta, gn.gamma ? b.dbeta : null, 'dbeta');
          });
        }

        for (const config of [{}, { affine: true }, { trackRunningStats: true }, { affine: true, trackRunningStats: true, momentum: null, activation: 'relu' as const }]) {
          for (const mode of ['train', 'eval'] as const) {
            it(`InstanceNorm(6, ${JSON.stringify(config)}) ${layout} ${mode}`, () => {
              const inorm = new api.InstanceNorm<FloatArray>(6, { ...config, layout, dtype });
              if (inorm.gamma) inorm.gamma.set(data(dtype, 6, 11));
              if (inorm.beta) inorm.beta.set(data(dtype, 6, 12));
              if (inorm.runningMean) inorm.runningMean.set(data(dtype, 6, 13));
              if (inorm.runningVar) inorm.runningVar.set(data(dtype, 6, 14).map(Math.abs));
              if (inorm.trackRunningStats) inorm.numBatchesTracked = 3;
              inorm.train(mode === 'train');
              const runningMean = inorm.runningMean?.slice() ?? null;
              const runningVar = inorm.runningVar?.slice() ?? null;
              const x = data(dtype, size(shape), 15);
              const dy = data(dtype, size(shape), 16);
              const y = inorm.forward(x, shape);
              const dx = inorm.backward(dy);
              const activation = config.activation ?? 'none';
              const useInputStats = mode === 'train' || !inorm.trackRunningStats;
              const f = api.instanceNorm(
                { x, shape, gamma: inorm.gamma, beta: inorm.beta, runningMean, runningVar, numBatchesTracked: inorm.trackRunningStats ? 3 : 0 },
                { layout, activation, momentum: config.momentum === null ? null : 0.9, useInputStats },
              );
              const b = api.instanceNormBackward(
                { dy, x, shape, mean: f.mean, invStd: f.invStd, gamma: inorm.gamma, y: activation === 'relu' ? f.y : null },
                { layout, activation, training: useInputStats },
              );
              same(y, f.y, 'y');
              same(dx, b.dx, 'dx');
              same(inorm.dgamma, inorm.gamma ? b.dgamma : null, 'dgamma');
              same(inorm.dbeta, inorm.gamma ? b.dbeta : null, 'dbeta');
              same(inorm.runningMean, runningMean, 'runningMean');
              same(inorm.runningVar, runningVar, 'runningVar');
              expect(inorm.numBatchesTracked).toBe(inorm.trackRunningStats ? f.numBatchesTracked : 0);
              if (inorm.trackRunningStats) expect(inorm.numBatchesTracked).toBe(mode === 'train' ? 4 : 3);
            });
          }
        }
      }
    });
  }
});

forEachBackend('layers: forward keeps what backward needs', () => {
  it('backward before forward is a clear Error', () => {
    for (const layer of [new api.LayerNorm(3), new api.RMSNorm(3), new api.GroupNorm(1, 3), new api.InstanceNorm(3)]) {
      expect(() => layer.backward(new Float32Array(6))).toThrow(Error);
      expect(() => layer.backward(new Float32Array(6))).toThrow(`${layer.constructor.name}.backward needs a forward() first`);
    }
  });

  it('gradients are overwritten, not accumulated; a second forward of another batch size is what backward uses', () => {
    const layers = [
      [new api.LayerNorm([2, 3]), (n: number) => [n, 2, 3]],
      [new api.RMSNorm(3), (n: number) => [n, 2, 3]],
      [new api.GroupNorm(1, 2, { activation: 'relu' }), (n: number) => [n, 2, 3]],
      [new api.InstanceNorm(2, { affine: true, trackRunningStats: true }), (n: number) => [n, 2, 3]],
    ] as const;
    for (const [layer, shapeOf] of layers) {
      const name = layer.constructor.name;
      const big = data('float32', 24, 21) as Float32Array;
      const small = data('float32', 6, 22) as Float32Array;
      const dyBig = data('float32', 24, 23) as Float32Array;
      const dySmall = data('float32', 6, 24) as Float32Array;
      const fresh = () => {
        const l = new (layer.constructor as new (...a: unknown[]) => typeof layer)(
          ...(name === 'LayerNorm' ? [[2, 3]] : name === 'RMSNorm' ? [3] : name === 'GroupNorm' ? [1, 2, { activation: 'relu' }] : [2, { affine: true, trackRunningStats: true }]),
        );
        return l;
      };
      const grads = (l: typeof layer) => ('dweight' in l ? [l.dweight] : [l.dgamma, l.dbeta]).map((a) => Array.from(a!));
      layer.forward(big, shapeOf(4));
      const dx1 = Array.from(layer.backward(dyBig));
      const g1 = grads(layer);
      const dx2 = Array.from(layer.backward(dyBig));
      expect(dx2, name).toEqual(dx1);
      expect(grads(layer), name).toEqual(g1);
      // another batch size, then the big one again: the same as a fresh layer's
      layer.forward(small, shapeOf(1));
      const dxSmall = layer.backward(dySmall);
      expect(dxSmall.length).toBe(6);
      const other = fresh();
      if (other instanceof api.InstanceNorm) other.numBatchesTracked = 1;
      other.forward(small, shapeOf(1));
      expect(Array.from(dxSmall), name).toEqual(Array.from(other.backward(dySmall)));
      expect(grads(layer), name).toEqual(grads(other));
    }
  });

  it('out.y and out.dx are written and returned', () => {
    const ln = new api.LayerNorm(3, { dtype: 'float64' });
    const x = data('float64', 6, 31) as Float64Array;
    const y = new Float64Array(6);
    expect(ln.forward(x, [2, 3], { y })).toBe(y);
    const dx = new Float64Array(6);
    expect(ln.backward(data('float64', 6, 32) as Float64Array, { dx })).toBe(dx);
  });
});

forEachBackend('InstanceNorm train/eval', () => {
  const shape = [2, 3, 4];
  const x = data('float32', 24, 41) as Float32Array;

  it('with trackRunningStats: train updates the running statistics, eval normalises with them and leaves them', () => {
    const inorm = new api.InstanceNorm(3, { trackRunningStats: true });
    expect(inorm.training).toBe(true);
    inorm.forward(x, shape);
    expect(inorm.numBatchesTracked).toBe(1);
    const mean = inorm.runningMean!.slice();
    const variance = inorm.runningVar!.slice();
    expect(Array.from(mean).some((v) => v !== 0)).toBe(true);
    expect(inorm.eval()).toBe(inorm);
    expect(inorm.training).toBe(false);
    const y = inorm.forward(x, shape);
    expect(inorm.numBatchesTracked).toBe(1);
    expect(Array.from(inorm.runningMean!)).toEqual(Array.from(mean));
    expect(Array.from(inorm.runningVar!)).toEqual(Array.from(variance));
    const want = api.instanceNorm({ x, shape, runningMean: mean, runningVar: variance }, { useInputStats: false });
    same(y, want.y);
    // eval-mode backward treats the running statistics as constants: dx = dy·invStd per channel
    const dy = new Float32Array(24).fill(1);
    const dx = inorm.backward(dy);
    for (let i = 0; i < 24; i++) {
      const c = Math.floor(i / 4) % 3;
      expect(dx[i]).toBeCloseTo(1 / Math.sqrt(variance[c] + 1e-5), 4);
    }
    inorm.train();
    inorm.forward(x, shape);
    expect(inorm.numBatchesTracked).toBe(2);
  });

  it('without trackRunningStats: eval still uses the input statistics (PyTorch)', () => {
    const inorm = new api.InstanceNorm(3);
    expect(inorm.runningMean).toBeNull();
    const yTrain = inorm.forward(x, shape).slice();
    const dxTrain = inorm.backward(new Float32Array(24).fill(1)).slice();
    inorm.eval();
    same(inorm.forward(x, shape), yTrain);
    same(inorm.backward(new Float32Array(24).fill(1)), dxTrain);
    expect(inorm.numBatchesTracked).toBe(0);
  });

  it('train/eval on the other layers changes nothing', () => {
    for (const make of [() => new api.LayerNorm(4), () => new api.RMSNorm(4), () => new api.GroupNorm(3, 3)]) {
      const a = make();
      const b = make().eval();
      expect(b.training).toBe(false);
      same(b.forward(x, shape), a.forward(x, shape));
    }
  });
});

forEachBackend('a tiny model learns', () => {
  /** GroupNorm → InstanceNorm → LayerNorm → RMSNorm over x [4, 4, 3], float64. */
  function model() {
    const N = 4;
    const shape = [N, 4, 3];
    const gn = new api.GroupNorm(2, 4, { dtype: 'float64' });
    const inorm = new api.InstanceNorm(4, { affine: true, trackRunningStats: true, dtype: 'float64' });
    const ln = new api.LayerNorm([4, 3], { dtype: 'float64' });
    const rn = new api.RMSNorm(3, { dtype: 'float64' });
    const x = data('float64', 48, 51) as Float64Array;
    const target = data('float64', 48, 52) as Float64Array;
    const params: [string, Float64Array, Float64Array][] = [
      ['gn.gamma', gn.gamma!, gn.dgamma!],
      ['gn.beta', gn.beta!, gn.dbeta!],
      ['inorm.gamma', inorm.gamma!, inorm.dgamma!],
      ['inorm.beta', inorm.beta!, inorm.dbeta!],
      ['ln.weight', ln.weight!, ln.dweight!],
      ['ln.bias', ln.bias!, ln.dbias!],
      ['rn.weight', rn.weight!, rn.dweight!],
    ];
    /** Forward and the loss Σ(y − target)²/2; with `backward`, the gradients into params. */
    const step = (backward: boolean): number => {
      const y = rn.forward(ln.forward(inorm.forward(gn.forward(x, shape), shape), shape), [N * 4, 3]);
      let loss = 0;
      const dy = new Float64Array(48);
      for (let i = 0; i < 48; i++) {
        dy[i] = y[i] - target[i];
        loss += 0.5 * dy[i] * dy[i];
      }
      if (backward) gn.backward(inorm.backward(ln.backward(rn.backward(dy))));
      return loss;
    };
    return { params, step, inorm };
  }

  it('GroupNorm → InstanceNorm → LayerNorm → RMSNorm: the chained gradients are the loss’s (central differences)', () => {
    const { params, step } = model();
    const rng = new Random(53);
    for (const [, p] of params) for (let i = 0; i < p.length; i++) p[i] += 0.3 * rng.normal();
    step(true);
    for (const [name, p, g] of params) {
      const analytic = g.slice();
      for (let i = 0; i < p.length; i++) {
        const h = 1e-6;
        const old = p[i];
        p[i] = old + h;
        const up = step(false);
        p[i] = old - h;
        const down = step(false);
        p[i] = old;
        expect(Math.abs(analytic[i] - (up - down) / (2 * h)), `${name}[${i}]`).toBeLessThan(1e-5 * Math.max(1, Math.abs(analytic[i])));
      }
    }
  });

  it('GroupNorm → InstanceNorm → LayerNorm → RMSNorm: SGD steps reduce the loss', () => {
    const { params, step, inorm } = model();
    const losses: number[] = [];
    for (let k = 0; k < 40; k++) {
      losses.push(step(true));
      for (const [, p, g] of params) for (let i = 0; i < p.length; i++) p[i] -= 0.01 * g[i];
    }
    expect(losses.every(Number.isFinite)).toBe(true);
    expect(losses[1]).toBeLessThan(losses[0]);
    expect(losses[losses.length - 1]).toBeLessThan(0.7 * losses[0]);
    expect(inorm.numBatchesTracked).toBe(40);
  });
});

// ---------------------------------------------------------------------------------------------
// No op runs below: construction, options, state.

describe('layers: construction', () => {
  it('parameters by PyTorch’s defaults, typed by dtype', () => {
    const ln = new api.LayerNorm([2, 3]);
    expect(ln.weight).toBeInstanceOf(Float32Array);
    expect(Array.from(ln.weight!)).toEqual([1, 1, 1, 1, 1, 1]);
    expect(Array.from(ln.bias!)).toEqual([0, 0, 0, 0, 0, 0]);
    expect(ln.normalizedShape).toEqual([2, 3]);
    expect(ln.eps).toBe(1e-5);
    expect(new api.LayerNorm(3, { bias: false }).bias).toBeNull();
    const noAffine = new api.LayerNorm(3, { elementwiseAffine: false });
    expect([noAffine.weight, noAffine.bias, noAffine.dweight, noAffine.dbias]).toEqual([null, null, null, null]);
    const rn = new api.RMSNorm(4, { dtype: 'float64' });
    expect(rn.weight).toBeInstanceOf(Float64Array);
    expect(rn.eps).toBe(Number.EPSILON);
    expect(new api.RMSNorm(4).eps).toBe(2 ** -23);
    expect(new api.RMSNorm(4, { eps: 1e-6 }).eps).toBe(1e-6);
    const gn = new api.GroupNorm(2, 6);
    expect([gn.numGroups, gn.numChannels, gn.gamma!.length, gn.affine]).toEqual([2, 6, 6, true]);
    expect(new api.GroupNorm(2, 6, { affine: false }).gamma).toBeNull();
    const inorm = new api.InstanceNorm(3);
    expect([inorm.gamma, inorm.runningMean, inorm.momentum, inorm.affine, inorm.trackRunningStats]).toEqual([null, null, 0.9, false, false]);
    const tracked = new api.InstanceNorm(3, { trackRunningStats: true, affine: true, dtype: 'float64' });
    expect(Array.from(tracked.runningVar!)).toEqual([1, 1, 1]);
    expect(tracked.gamma).toBeInstanceOf(Float64Array);
    for (const [layer, name] of [[ln, 'LayerNorm'], [rn, 'RMSNorm'], [gn, 'GroupNorm'], [inorm, 'InstanceNorm']] as const) {
      expect(layer.constructor.name).toBe(name);
      expect(layer.dtype).toBe((layer as unknown) === rn ? 'float64' : 'float32');
    }
    expect(ln instanceof api.LayerNorm && gn instanceof api.GroupNorm && inorm instanceof api.InstanceNorm && rn instanceof api.RMSNorm).toBe(true);
    expect((ln as unknown) instanceof api.GroupNorm).toBe(false);
  });

  it('misspelt options: RangeError with "did you mean"', () => {
    const cases: [() => unknown, RegExp][] = [
      [() => new api.LayerNorm(3, { epsilon: 1e-3 } as never), /options\.epsilon is not an option of LayerNorm; did you mean eps\?/],
      [() => new api.LayerNorm(3, { elementwise_affine: false } as never), /did you mean elementwiseAffine\?/],
      [() => new api.RMSNorm(3, { elementwiseAfine: false } as never), /options\.elementwiseAfine is not an option of RMSNorm; did you mean elementwiseAffine\?/],
      [() => new api.RMSNorm(3, { bias: false } as never), /options\.bias is not an option of RMSNorm/],
      [() => new api.GroupNorm(2, 4, { afine: false } as never), /did you mean affine\?/],
      [() => new api.GroupNorm(2, 4, { layuot: 'channels-last' } as never), /did you mean layout\?/],
      [() => new api.InstanceNorm(3, { trackRunningStat: true } as never), /did you mean trackRunningStats\?/],
      [() => new api.InstanceNorm(3, { momentom: 0.5 } as never), /did you mean momentum\?/],
      [() => new api.InstanceNorm(3, { dtpye: 'float64' } as never), /did you mean dtype\?/],
    ];
    for (const [make, message] of cases) {
      expect(make).toThrow(RangeError);
      expect(make).toThrow(message);
    }
  });

  it('bad values: typed errors naming the argument', () => {
    const cases: [() => unknown, typeof TypeError | typeof RangeError, RegExp][] = [
      [() => new api.GroupNorm(4, 6), RangeError, /numGroups must divide numChannels = 6, received numGroups = 4/],
      [() => new api.GroupNorm(0, 6), RangeError, /numGroups must be an integer >= 1/],
      [() => new api.GroupNorm(2, '6' as never), TypeError, /numChannels must be a number/],
      [() => new api.LayerNorm([2, 0]), RangeError, /normalizedShape\[1\] must be an integer >= 1/],
      [() => new api.LayerNorm('3' as never), TypeError, /normalizedShape must be a number or an array/],
      [() => new api.LayerNorm(0), RangeError, /normalizedShape must be an integer >= 1/],
      [() => new api.RMSNorm([]), RangeError, /normalizedShape must have rank >= 1/],
      [() => new api.InstanceNorm(3, { affine: 1 } as never), TypeError, /options\.affine must be a boolean, received number 1/],
      [() => new api.LayerNorm(3, { dtype: 'float16' } as never), RangeError, /options\.dtype must be 'float32' or 'float64'/],
      [() => new api.InstanceNorm(3, { momentum: 2 }), RangeError, /options\.momentum must be in \[0, 1\]/],
      [() => new api.GroupNorm(1, 3, { eps: -1 }), RangeError, /options\.eps must be a finite number > 0/],
      [() => new api.LayerNorm(3, null as never), TypeError, /options must be an object/],
      [() => new api.InstanceNorm(2 ** 40, { affine: true }), RangeError, /numFeatures: cannot allocate/],
    ];
    for (const [make, error, message] of cases) {
      expect(make, String(message)).toThrow(error);
      expect(make).toThrow(message);
    }
  });

  it('inputs of the wrong dtype or shape: TypeError / RangeError before anything runs', () => {
    const ln = new api.LayerNorm(3);
    expect(() => ln.forward(new Float64Array(6) as never, [2, 3])).toThrow(/x must be a Float32Array \(the LayerNorm's dtype is float32\), received Float64Array\(6\)/);
    const gn = new api.GroupNorm(1, 3, { dtype: 'float64' });
    expect(() => gn.forward(new Float32Array(6) as never, [2, 3])).toThrow(TypeError);
    expect(() => gn.forward(new Float64Array(8), [2, 4])).toThrow(/shape's channel dim must be numChannels = 3, received 4 in \[2, 4\]/);
    const inorm = new api.InstanceNorm(3, { layout: 'channels-last' });
    expect(() => inorm.forward(new Float32Array(8), [2, 2, 2])).toThrow(/shape's channel dim must be numFeatures = 3/);
  });
});

/** A layer's numbers, for "nothing changed". */
function snapshot(layer: object): string {
  return JSON.stringify(
    Object.entries(layer)
      .filter(([k, v]) => ArrayBuffer.isView(v) || k === 'numBatchesTracked')
      .map(([k, v]) => [k, ArrayBuffer.isView(v) ? Array.from(v as FloatArray) : v]),
  );
}

describe('layers: state() and loadState()', () => {
  const makers = {
    LayerNorm: () => new api.LayerNorm([2, 2], { dtype: 'float64' }),
    'LayerNorm(bias: false)': () => new api.LayerNorm(4, { bias: false }),
    'LayerNorm(elementwiseAffine: false)': () => new api.LayerNorm(4, { elementwiseAffine: false }),
    RMSNorm: () => new api.RMSNorm(4),
    GroupNorm: () => new api.GroupNorm(2, 4, { dtype: 'float64' }),
    'GroupNorm(affine: false)': () => new api.GroupNorm(2, 4, { affine: false }),
    InstanceNorm: () => new api.InstanceNorm(4),
    'InstanceNorm(affine)': () => new api.InstanceNorm(4, { affine: true }),
    'InstanceNorm(trackRunningStats)': () => new api.InstanceNorm(4, { trackRunningStats: true }),
    'InstanceNorm(affine, trackRunningStats)': () => new api.InstanceNorm(4, { affine: true, trackRunningStats: true, dtype: 'float64' }),
  };
  const keys: Record<keyof typeof makers, string[]> = {
    LayerNorm: ['weight', 'bias'],
    'LayerNorm(bias: false)': ['weight'],
    'LayerNorm(elementwiseAffine: false)': [],
    RMSNorm: ['weight'],
    GroupNorm: ['weight', 'bias'],
    'GroupNorm(affine: false)': [],
    InstanceNorm: [],
    'InstanceNorm(affine)': ['weight', 'bias'],
    'InstanceNorm(trackRunningStats)': ['running_mean', 'running_var', 'num_batches_tracked'],
    'InstanceNorm(affine, trackRunningStats)': ['weight', 'bias', 'running_mean', 'running_var', 'num_batches_tracked'],
  };
  /** A full, valid state of 4 numbers per entry, unlike the defaults. */
  const good = () => ({ weight: [1.5, 2.5, 3.5, 4.5], bias: [-1, -2, -3, -4], running_mean: [0.25, 0.5, 0.75, 1], running_var: [2, 3, 4, 5], num_batches_tracked: 7 });

  for (const [name, make] of Object.entries(makers) as [keyof typeof makers, () => api.LayerNorm<FloatArray>][]) {
    it(`${name}: PyTorch's names, copies, a round trip`, () => {
      const a = make();
      const s0 = a.state() as Record<string, unknown>;
      expect(Object.keys(s0)).toEqual(keys[name]);
      a.loadState(good());
      const s = a.state() as Record<string, FloatArray | number>;
      expect(Object.keys(s)).toEqual(keys[name]);
      for (const key of keys[name]) {
        const want = good()[key as keyof ReturnType<typeof good>];
        if (key === 'num_batches_tracked') expect(s[key]).toBe(7);
        else {
          expect(s[key]).toBeInstanceOf(ctor(a.dtype));
          expect(Array.from(s[key] as FloatArray)).toEqual(want);
          (s[key] as FloatArray)[0] = 99; // a copy
        }
      }
      expect(snapshot(a)).not.toContain('99');
      const b = make();
      b.loadState(a.state());
      expect(snapshot(b)).toBe(snapshot(a));
      // a PyTorch state_dict: typed arrays of another kind, a bigint count, extra keys ignored
      const c = make();
      c.loadState({
        weight: Float32Array.from(good().weight),
        bias: Int8Array.from(good().bias),
        running_mean: good().running_mean,
        running_var: Float64Array.from(good().running_var),
        num_batches_tracked: 7n,
      } as never);
      expect(snapshot(c)).toBe(snapshot(a));
    });

    if (keys[name].length === 0) continue;
    const spoilers: [string, Record<string, unknown>, typeof TypeError | typeof RangeError, RegExp][] = [];
    for (const key of keys[name]) {
      if (key === 'num_batches_tracked') {
        spoilers.push(['a negative count', { [key]: -1 }, RangeError, /state\.num_batches_tracked/]);
        spoilers.push(['a string count', { [key]: '7' }, TypeError, /state\.num_batches_tracked/]);
        continue;
      }
      spoilers.push([`${key} too short`, { [key]: [1, 2, 3] }, RangeError, new RegExp(`state\\.${key} must have length 4, received length 3`)]);
      spoilers.push([`${key} missing`, { [key]: undefined }, TypeError, new RegExp(`state\\.${key} must be an array of 4 numbers, received undefined`)]);
      spoilers.push([`a string in ${key}`, { [key]: [1, 2, 'x', 4] }, TypeError, new RegExp(`state\\.${key}\\[2\\] must be a number, received string 'x'`)]);
      spoilers.push([`${key} a BigInt64Array`, { [key]: new BigInt64Array(4) }, TypeError, new RegExp(`state\\.${key} must hold numbers`)]);
    }
    for (const [what, spoil, error, message] of spoilers) {
      it(`${name}: loadState refuses ${what}, naming it, and changes nothing`, () => {
        const a = make();
        a.loadState({ weight: [9, 8, 7, 6], bias: [6, 7, 8, 9], running_mean: [1, 1, 1, 1], running_var: [3, 3, 3, 3], num_batches_tracked: 2 } as never);
        const before = snapshot(a);
        const bad = { ...good(), ...spoil };
        expect(() => a.loadState(bad as never)).toThrow(error);
        expect(() => a.loadState(bad as never)).toThrow(message);
        expect(snapshot(a)).toBe(before);
      });
    }
  }

  it('loadState of a non-object: TypeError naming state', () => {
    expect(() => new api.LayerNorm(2).loadState(null as never)).toThrow(/^state must be an object/);
    expect(() => new api.GroupNorm(1, 2).loadState([] as never)).toThrow(TypeError);
  });

  it('reads each entry once; a getter detaching a layer array: TypeError, nothing loaded', () => {
    const gn = new api.GroupNorm(2, 4);
    let reads = 0;
    gn.loadState({
      get weight() {
        reads++;
        return [1, 2, 3, 4];
      },
      bias: [0, 0, 0, 0],
    });
    expect(reads).toBe(1);
    expect(Array.from(gn.gamma!)).toEqual([1, 2, 3, 4]);
    const ln = new api.LayerNorm(4);
    const weight = ln.weight!;
    ln.bias!.set([4, 3, 2, 1]);
    expect(() =>
      ln.loadState({
        weight: [5, 5, 5, 5],
        get bias() {
          structuredClone(weight.buffer, { transfer: [weight.buffer] });
          return [1, 1, 1, 1];
        },
      }),
    ).toThrow(/the layer's weight no longer has 4 elements/);
    expect(Array.from(ln.bias!)).toEqual([4, 3, 2, 1]); // nothing loaded
  });
});
