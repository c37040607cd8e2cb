/**
 * lib/backends/native.ts: which addon file it loads, how it reports failures, and that the
 * Backend maps lib/backend.ts's argument objects onto the positional binding calls (bitwise
 * the same as calling the binding directly).
 */
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect, it } from 'vitest';
import type { Backend } from '../../lib/backend.js';
import { loadBindingFrom, nativeCandidates, nativeProvider, type NativeDetails } from '../../lib/backends/native.js';
import { binding, describeNative, loaded, randomArray, sameBits } from './helpers.js';

const root = fileURLToPath(new URL('../../', import.meta.url));

it('candidates: SIMDNORM_NATIVE_PATH first (resolved), then build/ and build-cmake/', () => {
  const saved = process.env.SIMDNORM_NATIVE_PATH;
  try {
    delete process.env.SIMDNORM_NATIVE_PATH;
    expect(nativeCandidates()).toEqual([
      resolve(root, 'build/Release/simdnorm.node'),
      resolve(root, 'build-cmake/Release/simdnorm.node'),
    ]);
    process.env.SIMDNORM_NATIVE_PATH = 'some/where.node';
    expect(nativeCandidates()[0]).toBe(resolve('some/where.node'));
    expect(nativeCandidates()).toHaveLength(3);
  } finally {
    if (saved === undefined) delete process.env.SIMDNORM_NATIVE_PATH;
    else process.env.SIMDNORM_NATIVE_PATH = saved;
  }
});

it('a failed load lists every attempt and its reason in one Error', () => {
  const missing = resolve(root, 'build/nowhere/simdnorm.node');
  const notAddon = resolve(root, 'package.json');
  let error: unknown;
  try {
    loadBindingFrom([missing, notAddon]);
  } catch (e) {
    error = e;
  }
  expect(error).toBeInstanceOf(Error);
  const message = (error as Error).message;
  expect(message).toContain(`${missing}: Cannot find module`);
  expect(message).toContain(`${notAddon}: it is not the simdnorm addon`);
  expect(message).toContain('npm run build:native');
});

describeNative('native backend (lib/backends/native.ts)', () => {
  it('loads the file SIMDNORM_NATIVE_PATH names when it is set (CI tests each build so)', () => {
    const fromEnv = process.env.SIMDNORM_NATIVE_PATH;
    if (fromEnv) expect(loaded!.path).toBe(resolve(fromEnv));
    const backend = nativeProvider.loadSync!();
    const details = backend.details() as NativeDetails;
    expect(backend.name).toBe('native');
    expect(nativeProvider.priority).toBe(30);
    expect(details.path).toBe(loaded!.path);
    const info = binding().info();
    expect(details).toEqual({
      simd: info.simd, threads: info.threads, maxThreads: info.maxThreads, build: info.build, path: loaded!.path,
    });
    if (fromEnv?.includes('build-cmake')) expect(details.build).toBe('cmake-js');
  });

  it('load() resolves to a working backend too', async () => {
    const backend = await nativeProvider.load();
    expect(backend.name).toBe('native');
  });

  for (const T of [Float32Array, Float64Array]) {
    it(`${T.name}: every Backend method gives the binding's bits`, async () => {
      const backend: Backend = nativeProvider.loadSync!();
      const b = binding();
      const [outer, channels, inner] = [3, 5, 7];
      const geometry = { outer, channels, inner };
      const n = outer * channels * inner;
      const m = outer * inner;
      const x = randomArray(T, n, 1, 2, 3);
      const dy = randomArray(T, n, 2);
      const gamma = randomArray(T, channels, 3, 0.5, 1);
      const beta = randomArray(T, channels, 4);
      const fresh = () => ({
        y: new T(n), mean: new T(channels), invStd: new T(channels),
        runningMean: randomArray(T, channels, 5), runningVar: randomArray(T, channels, 6, 0.5, 1),
        dx: new T(n), dgamma: new T(channels), dbeta: new T(channels),
      });
      type Out = ReturnType<typeof fresh>;
      const same = (a: Out, c: Out) => {
        for (const k of Object.keys(a) as (keyof Out)[]) expect(sameBits(a[k], c[k]), k).toBe(true);
      };

      for (const mode of ['sync', 'async'] as const) {
        const v = fresh(); // through the Backend
        const d = fresh(); // the binding directly
        const varScale = m / (m - 1);
        const running = {
          runningMean: v.runningMean, runningVar: v.runningVar, factor: 0.25, varScale, skipNonFinite: true,
        };
        const trainArgs = {
          x, geometry, gamma, beta, eps: 1e-3, relu: true, y: v.y, mean: v.mean, invStd: v.invStd, running,
        };
        const written = mode === 'sync' ? backend.train(trainArgs) : await backend.trainAsync!(trainArgs);
        expect(written).toBe(
          b.train(x, outer, channels, inner, gamma, beta, 1e-3, true, d.y, d.mean, d.invStd,
            d.runningMean, d.runningVar, 0.25, varScale, true),
        );

        const backwardArgs = {
          dy, x, geometry, mean: v.mean, invStd: v.invStd, gamma, y: v.y, training: true,
          dx: v.dx, dgamma: v.dgamma, dbeta: v.dbeta,
        };
        if (mode === 'sync') backend.backward(backwardArgs);
        else await backend.backwardAsync!(backwardArgs);
        b.backward(dy, x, outer, channels, inner, d.mean, d.invStd, gamma, d.y, true, d.dx, d.dgamma, d.dbeta);
        same(v, d);

        const inferArgs = {
          x, geometry, runningMean: v.runningMean, runningVar: v.runningVar, gamma: null, beta,
          eps: 1e-4, relu: false, y: v.y,
        };
        if (mode === 'sync') backend.infer(inferArgs);
        else await backend.inferAsync!(inferArgs);
        b.infer(x, outer, channels, inner, d.runningMean, d.runningVar, null, beta, 1e-4, false, d.y);
        same(v, d);
      }

      // train without running stats returns false and leaves them alone
      const n0 = fresh();
      const before = n0.runningMean.slice();
      const noRunning = {
        x, geometry, gamma: null, beta: null, eps: 1e-5, relu: false, y: n0.y, mean: n0.mean, invStd: n0.invStd,
        running: null,
      };
      expect(backend.train(noRunning)).toBe(false);
      expect(sameBits(n0.runningMean, before)).toBe(true);

      const mean = new T(channels);
      const variance = new T(channels);
      const mean2 = new T(channels);
      const variance2 = new T(channels);
      backend.moments({ x, geometry, mean, variance });
      b.moments(x, outer, channels, inner, mean2, variance2);
      expect(sameBits(mean, mean2) && sameBits(variance, variance2)).toBe(true);

      const r1 = fresh();
      const r2 = fresh();
      const update = {
        runningMean: r1.runningMean, runningVar: r1.runningVar, batchMean: mean, batchVar: variance,
        factor: 0.5, varScale: 2, skipNonFinite: false,
      };
      expect(backend.updateRunningStats(update)).toBe(true);
      expect(b.updateRunningStats(r2.runningMean, r2.runningVar, mean, variance, 0.5, 2, false)).toBe(true);
      same(r1, r2);
    });
  }

  it('setThreads goes to the binding', () => {
    const backend = nativeProvider.loadSync!();
    backend.setThreads!(1);
    expect(backend.details().threads).toBe(1);
    backend.setThreads!(0);
    expect(backend.details().threads).toBe(binding().info().maxThreads);
  });
});
