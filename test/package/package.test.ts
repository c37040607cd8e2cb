/** The package's shape: entry points, the CLI, the environment switch, and the self-check's teeth. */
import { Phase, Scalar, Slot } from '../../lib/core/abi.js';
import { execFileSync, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { builtinModules } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import * as api from '../../lib/index.js';
import { jsBackend } from '../../lib/backends/js.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const dist = join(root, 'dist');
const cli = join(dist, 'cli.js');

/** Every module the file imports, transitively, with each import specifier seen. */
function importGraph(file: string, seen = new Map<string, string[]>()): Map<string, string[]> {
  if (seen.has(file)) return seen;
  const source = readFileSync(file, 'utf8');
  const specifiers = [...source.matchAll(/(?:^|\n)\s*(?:import|export)\b[^'"]*?from\s*['"]([^'"]+)['"]|import\(\s*['"]([^'"]+)['"]\s*\)/g)].map(
    (m) => m[1] ?? m[2],
  );
  seen.set(file, specifiers);
  for (const s of specifiers) if (s.startsWith('.')) importGraph(resolve(dirname(file), s), seen);
  return seen;
}

describe('package', () => {
  it('the browser entry imports no Node built-in, statically or dynamically', () => {
    const graph = importGraph(join(dist, 'browser.js'));
    const nodeBuiltins = new Set(builtinModules);
    for (const [file, specifiers] of graph) {
      for (const s of specifiers) {
        expect(s.startsWith('node:') || nodeBuiltins.has(s), `${file} imports ${s}`).toBe(false);
      }
    }
    expect(graph.size).toBeGreaterThan(5);
  });

  it('exports has node and browser conditions and types', () => {
    const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));
    expect(pkg.type).toBe('module');
    expect(pkg.exports['.']).toMatchObject({ node: './dist/index.js', browser: './dist/browser.js', types: './dist/index.d.ts' });
    // CommonJS callers get the ESM entry through require(esm), unflagged from Node 20.19.
    expect(pkg.engines.node).toBe('>=20.19.0');
    expect(pkg.exports['.'].require).toBeUndefined();
  });

  it('CommonJS callers can require the package (require of ES modules, Node >= 20.19)', () => {
    const script = "const s = require(process.argv[1]); console.log(typeof s.batchNormTrain, typeof s.BatchNorm, s.currentBackend())";
    const r = spawnSync(process.execPath, ['-e', script, join(dist, 'index.js')], { encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^function function (native|wasm|js)\n$/);
  });

  it('the packed tarball holds what runs and builds, and nothing else', () => {
    const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));
    // A git install (prepare) and `npm pack` of a fresh clone (prepack) build dist first; the packed
    // package.json loses both (clean-package), and there is no install script at all, nor the one
    // npm would add for binding.gyp: npm lists no script to allow (test/package/prebuilds.mjs).
    expect(pkg.scripts.prepare).toBe('npm run build:ts');
    expect(pkg.scripts.prepack).toBe('npm run build:ts && clean-package');
    expect(pkg.scripts.postpack).toBe('clean-package restore');
    expect(pkg['clean-package'].remove).toEqual(expect.arrayContaining(['scripts.prepare', 'scripts.prepack']));
    for (const s of ['preinstall', 'install', 'postinstall']) expect(pkg.scripts[s], s).toBeUndefined();
    expect(pkg.gypfile).toBe(false);
    const r = spawnSync('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: root, encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);
    const files: string[] = JSON.parse(r.stdout)[0].files.map((f: { path: string }) => f.path);
    for (const f of ['dist/index.js', 'dist/index.d.ts', 'dist/browser.js', 'dist/cli.js', 'wasm/bin/simdnorm-simd.wasm',
      'wasm/bin/simdnorm-scalar.wasm', 'binding.gyp', 'native/build.mjs', 'package.json', 'README.md', 'LICENSE']) {
      expect(files, f).toContain(f);
    }
    // Every source a build from source (`npx simdnorm build`) compiles (binding.gyp), and every header.
    const gyp = readFileSync(join(root, 'binding.gyp'), 'utf8');
    for (const source of gyp.matchAll(/'(native\/[^']+\.cpp)'/g)) expect(files, source[1]).toContain(source[1]);
    for (const h of ['native/kernels/simd.h', 'native/kernels/batchnorm.h', 'native/node/pin.h']) expect(files).toContain(h);
    // No source maps (their sources are not shipped), no TypeScript sources, nothing that cannot build from the package.
    const stray = files.filter((f) =>
      /\.map$|(?<!\.d)\.ts$|CMakeLists\.txt|\.cmake$|^wasm\/(?!bin\/)|^(test|bench|lib|build|\.ci)\//.test(f),
    );
    expect(stray).toEqual([]);
  }, 30_000); // npm pack on a loaded machine can take more than the default 5 s

  it('prebuilt addons: shipped in prebuildify\'s layout, found by node-gyp-build, never committed', () => {
    const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));
    expect(pkg.files).toContain('prebuilds/*/*.node');
    expect(Object.keys(pkg.dependencies)).toEqual(['node-gyp-build']);
    expect(pkg.scripts.prebuilds).toBe('node native/prebuild.mjs');
    // npm publish refuses to run without every prebuild (CI builds them: .ci/run).
    expect(pkg.scripts.prepublishOnly).toBe('node native/prebuild.mjs --check');
    expect(readFileSync(join(root, '.gitignore'), 'utf8').split('\n')).toContain('prebuilds/');
    const tracked = spawnSync('git', ['ls-files', 'prebuilds'], { cwd: root, encoding: 'utf8' });
    if (tracked.status === 0) expect(tracked.stdout).toBe('');
  });

  it('simdnorm info lists the backends; verify exits 0 when they conform', () => {
    const info = execFileSync(process.execPath, [cli, 'info'], { encoding: 'utf8' });
    expect(info).toMatch(/\bjs\b/);
    const verify = spawnSync(process.execPath, [cli, 'verify', '--cases', '10'], { encoding: 'utf8' });
    expect(verify.status, verify.stdout + verify.stderr).toBe(0);
    expect(verify.stdout).toContain('every backend conforms');
  }, 60_000);

  it('SIMDNORM_BACKEND forces a backend, and a bad value is refused by name', () => {
    const env = { ...process.env, SIMDNORM_BACKEND: 'js' };
    const info = execFileSync(process.execPath, [cli, 'info', '--json'], { encoding: 'utf8', env });
    expect(JSON.parse(info).find((b: { current: boolean }) => b.current).name).toBe('js');
    const bad = spawnSync(process.execPath, [cli, 'info'], { encoding: 'utf8', env: { ...process.env, SIMDNORM_BACKEND: 'cuda' } });
    expect(bad.status).not.toBe(0);
    expect(bad.stderr).toContain('SIMDNORM_BACKEND');
  });

  it('verify() reports a backend that computes a wrong number', () => {
    // A backend whose inference is off by one ulp-ish scale (1e-4) in one element.
    api.registerBackend({
      name: 'wasm',
      priority: 1,
      loadSync: () => ({
        ...jsBackend,
        name: 'wasm',
        run(n) {
          const result = jsBackend.run(n);
          const y = n.tensors[Slot.y];
          if (n.scalars[Scalar.phase] === Phase.infer && y && y.length > 0) y[0] += 1e-3;
          return result;
        },
      }),
      load: async () => {
        throw new Error('unused');
      },
    });
    try {
      const report = api.verify({ cases: 40, backends: ['wasm'] });
      expect(report.ok).toBe(false);
      expect(report.results[0].failures.join('\n')).toMatch(/infer .*y\[0\]/);
    } finally {
      api.registerBackend({ name: 'wasm', priority: 20, load: async () => Promise.reject(new Error('test stub removed')) });
    }
  }, 60_000);
});
