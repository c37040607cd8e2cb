/**
 * lib/backends/native.ts: which addon file it loads, how it reports failures, and that the
 * Backend passes a descriptor to the addon's run/runAsync (bitwise the same as calling the
 * binding directly); and the addon's results for BatchNorm descriptors against lib/reference.ts.
 */
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect, it } from 'vitest';
import type { Backend } from '../../lib/backend.js';
import { findPrebuild, loadBindingFrom, nativeCandidates, nativeProvider, refuseBinding, type NativeDetails } from '../../lib/backends/native.js';
import { ABI_VERSION } from '../../lib/core/abi.js';
import * as reference from '../../lib/reference.js';
import { binding, bnProblem, bnStep, describeNative, loaded, PHASES, run, sameBits, Slot, type FloatArray, type Problem } from './helpers.js';

const root = fileURLToPath(new URL('../../', import.meta.url));

it('candidates: SIMDNORM_NATIVE_PATH first (resolved), then build/, the prebuild that fits (if any) and build-cmake/', () => {
  const saved = process.env.SIMDNORM_NATIVE_PATH;
  try {
    delete process.env.SIMDNORM_NATIVE_PATH;
    const prebuild = findPrebuild(root).path;
    expect(nativeCandidates()).toEqual([
      resolve(root, 'build/Release/simdnorm.node'),
      ...(prebuild ? [prebuild] : []),
      resolve(root, 'build-cmake/Release/simdnorm.node'),
    ]);
    process.env.SIMDNORM_NATIVE_PATH = 'some/where.node';
    expect(nativeCandidates()[0]).toBe(resolve('some/where.node'));
    expect(nativeCandidates()).toHaveLength(prebuild ? 4 : 3);
  } finally {
    if (saved === undefined) delete process.env.SIMDNORM_NATIVE_PATH;
    else process.env.SIMDNORM_NATIVE_PATH = saved;
  }
});

it('the prebuild for this platform and Node ABI is found in prebuildify\'s layout, ignoring build/', () => {
  const dir = mkdtempSync(join(tmpdir(), 'simdnorm-prebuilds-'));
  try {
    writeFileSync(join(dir, 'package.json'), '{ "name": "simdnorm" }');
    const none = findPrebuild(dir);
    expect(none.path).toBeUndefined();
    expect(none.reason).toMatch(new RegExp(`^no prebuild for platform=${process.platform} arch=${process.arch} runtime=node abi=${process.versions.modules} `));
    const tuple = join(dir, 'prebuilds', `${process.platform}-${process.arch}`);
    mkdirSync(tuple, { recursive: true });
    mkdirSync(join(dir, 'build', 'Release'), { recursive: true });
    writeFileSync(join(dir, 'build', 'Release', 'simdnorm.node'), '');
    for (const abi of ['1', process.versions.modules]) writeFileSync(join(tuple, `node.abi${abi}.glibc.node`), '');
    writeFileSync(join(tuple, 'node.abi1.musl.node'), '');
    const found = findPrebuild(dir).path;
    if (process.platform === 'linux' && !existsSync('/etc/alpine-release')) {
      expect(found).toBe(join(tuple, `node.abi${process.versions.modules}.glibc.node`));
    }
    expect(process.env.PREBUILDS_ONLY).toBeUndefined();
  } finally {
    rmSync(dir, { recursive: true, force: true });
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

it('an addon of another C ABI version is refused as stale, and the next candidate is tried', () => {
  const dir = mkdtempSync(join(tmpdir(), 'simdnorm-abi-'));
  const module = (name: string, abi: string) => {
    const file = join(dir, name);
    writeFileSync(file, `exports.run = () => 0; exports.info = () => ({}); ${abi}\n`);
    return file;
  };
  try {
    const older = module('older.cjs', 'exports.abiVersion = ' + (ABI_VERSION - 1) + ';');
    const unversioned = module('unversioned.cjs', '');
    const current = module('current.cjs', `exports.abiVersion = ${ABI_VERSION};`);
    expect(refuseBinding({ run: () => 0, info: () => ({}) } as never)).toMatch(/stale: built from simdnorm sources with no C ABI version/);
    expect(loadBindingFrom([older, unversioned, current]).path).toBe(current);
    let message = '';
    try {
      loadBindingFrom([older, unversioned]);
    } catch (e) {
      message = (e as Error).message;
    }
    expect(message).toContain(
      `${older}: it is stale: built from simdnorm sources with C ABI version ${ABI_VERSION - 1}, and this simdnorm needs C ABI version ${ABI_VERSION}`,
    );
    expect(message).toContain(`${unversioned}: it is stale: built from simdnorm sources with no C ABI version`);
    expect(message).toContain('`npx simdnorm build`');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
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
      simd: info.simd, threads: info.threads, maxThreads: info.maxThreads, build: info.build,
      origin: /[\\/]prebuilds[\\/]/.test(loaded!.path) ? 'prebuild' : 'source', path: loaded!.path,
    });
    if (fromEnv?.includes('build-cmake')) expect(details.build).toBe('cmake-js');
    // The addon says which C ABI it was compiled with (the loader refuses any other).
    expect(binding().abiVersion).toBe(ABI_VERSION);
  });

  it('load() resolves to a working backend too', async () => {
    const backend = await nativeProvider.load();
    expect(backend.name).toBe('native');
  });

  for (const T of [Float32Array, Float64Array]) {
    it(`${T.name}: run and runAsync give the binding's bits, every phase`, async () => {
      const backend: Backend = nativeProvider.loadSync!();
      const s = { outer: 3, channels: 5, inner: 7 };
      for (const mode of ['sync', 'async'] as const) {
        const v = bnProblem(T, s, 1); // through the Backend
        const d = bnProblem(T, s, 1); // the binding directly
        for (const phase of PHASES) {
          const viaBackend = bnStep(phase, T, s, v, { relu: true });
          const r = mode === 'sync' ? backend.run(viaBackend) : await backend.runAsync!(viaBackend);
          expect(r, phase).toBe(run(bnStep(phase, T, s, d, { relu: true })));
          for (const k of Object.keys(v) as (keyof Problem)[]) expect(sameBits(v[k], d[k]), `${phase} ${k}`).toBe(true);
        }
      }
      // a refusal comes through as the addon's error
      const bad = bnStep('infer', T, s, bnProblem(T, s, 2));
      bad.tensors[Slot.y] = null;
      expect(() => backend.run(bad)).toThrow(/^internal error: infer: missing \(tensor y\)$/);
      await expect(backend.runAsync!(bad)).rejects.toThrow(/^internal error: infer: missing \(tensor y\)$/);
    });

    for (const s of [{ outer: 4, channels: 3, inner: 10 }, { outer: 64, channels: 7, inner: 1 }, { outer: 2, channels: 16, inner: 33 }]) {
      it(`${T.name} [${s.outer}, ${s.channels}, ${s.inner}]: every phase agrees with lib/reference.ts`, () => {
        const tolerance = T === Float64Array ? 1e-12 : 1e-5;
        const close = (a: FloatArray, b: FloatArray, what: string) => {
          for (let i = 0; i < a.length; i++) {
            expect(Math.abs(a[i]! - b[i]!), `${what}[${i}]: ${a[i]} vs ${b[i]}`).toBeLessThanOrEqual(tolerance * (1 + Math.abs(b[i]!)));
          }
        };
        const geometry = s;
        const m = s.outer * s.inner;
        const p = bnProblem(T, s, 21); // native
        const q = bnProblem(T, s, 21); // reference
        expect(run(bnStep('train', T, s, p, { relu: true }))).toBe(1);
        const running = { runningMean: q.runningMean, runningVar: q.runningVar, factor: 0.1, varScale: m / (m - 1), skipNonFinite: true };
        expect(reference.train({ x: q.x, geometry, gamma: q.gamma, beta: q.beta, eps: 1e-5, relu: true, y: q.y, mean: q.mean, invStd: q.invStd, running })).toBe(true);
        for (const k of ['y', 'mean', 'invStd', 'runningMean', 'runningVar'] as const) close(p[k], q[k], `train ${k}`);

        for (const training of [true, false]) {
          run(bnStep('backward', T, s, p, { relu: true, training }));
          reference.backward({ dy: q.dy, x: q.x, geometry, mean: q.mean, invStd: q.invStd, gamma: q.gamma, y: q.y, training, dx: q.dx, dgamma: q.dgamma, dbeta: q.dbeta });
          for (const k of ['dx', 'dgamma', 'dbeta'] as const) close(p[k], q[k], `backward ${k}`);
        }

        run(bnStep('infer', T, s, p, { relu: true }));
        reference.infer({ x: q.x, geometry, runningMean: q.runningMean, runningVar: q.runningVar, gamma: q.gamma, beta: q.beta, eps: 1e-5, relu: true, y: q.y });
        close(p.y, q.y, 'infer y');

        run(bnStep('moments', T, s, p));
        reference.moments({ x: q.x, geometry, mean: q.mean, variance: q.variance });
        close(p.mean, q.mean, 'moments mean');
        close(p.variance, q.variance, 'moments variance');

        expect(run(bnStep('update', T, s, p))).toBe(1);
        expect(reference.updateRunningStats({ ...running, batchMean: q.mean, batchVar: q.variance })).toBe(true);
        close(p.runningMean, q.runningMean, 'update runningMean');
        close(p.runningVar, q.runningVar, 'update runningVar');
      });
    }
  }

  it('setThreads goes to the binding', () => {
    const backend = nativeProvider.loadSync!();
    backend.setThreads!(1);
    expect(backend.details().threads).toBe(1);
    backend.setThreads!(0);
    expect(backend.details().threads).toBe(binding().info().maxThreads);
  });
});
