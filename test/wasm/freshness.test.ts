/**
 * The committed wasm/bin/*.wasm are exactly what the current sources build to (npm run
 * check:wasm: a fresh, deterministic emscripten build into a temporary directory, compared byte
 * for byte). Needs Debian's emscripten, cmake and wabt: skipped loudly without them on a
 * developer's machine, a failure in CI.
 */
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const root = fileURLToPath(new URL('../..', import.meta.url));
const missing = ['emcc', 'cmake', 'wasm-objdump'].filter(
  (tool) => spawnSync(tool, ['--version'], { stdio: 'ignore' }).status !== 0,
);
if (missing.length && !process.env.CI) {
  console.warn(
    `\n*** ${missing.join(', ')} not found: the wasm freshness check (npm run check:wasm) is SKIPPED.\n` +
      '*** Install Debian\'s packages: apt-get install -y emscripten cmake wabt\n',
  );
}

describe.skipIf(missing.length > 0 && !process.env.CI)('wasm artifacts', () => {
  it('match a fresh build of native/kernels and wasm/ byte for byte', () => {
    expect(missing, 'tools CI must install (apt-get install -y emscripten cmake wabt)').toEqual([]);
    const r = spawnSync(process.execPath, ['wasm/build.mjs', '--check'], { cwd: root, encoding: 'utf8' });
    expect(r.status, `${r.stdout}\n${r.stderr}`).toBe(0);
  }, 600_000);
});
