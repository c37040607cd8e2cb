/**
 * Real-browser tests: Debian's Chromium driven by playwright-core (never `playwright install`).
 *
 * 1. The package as published, no bundler: a page served from 127.0.0.1 imports dist/browser.js
 *    natively (an import map names it `simdnorm`), which finds wasm/bin/*.wasm by
 *    `new URL(..., import.meta.url)`; the conformance cases (test/conformance/cases.ts and
 *    family-cases.ts, bundled
 *    with Vite into one module) run on `wasm` and on `js`.
 * 2. The bundler path: a minimal project whose node_modules/simdnorm links to this package,
 *    built for production with Vite's JS API, served, and checked the same way.
 *
 * Per-case results come back to Node so a failure names its case and message. Without Chromium
 * the suite is skipped loudly on a developer's machine, and fails when CI is set.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { PageReport } from './runner.js';
import { serveStatic, type StaticServer } from './server.js';

const root = resolve(fileURLToPath(new URL('../..', import.meta.url)));
const CHROMIUM = process.env.SIMDNORM_CHROMIUM ?? '/usr/bin/chromium';
const LAUNCH_ARGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
];
const haveChromium = existsSync(CHROMIUM);
if (!haveChromium) {
  console.warn(
    `\n*** Chromium not found at ${CHROMIUM}: the browser tests are ${process.env.CI ? 'FAILING (CI is set)' : 'SKIPPED'}.\n` +
      "*** Install Debian's package `chromium` (apt-get install -y chromium), or set SIMDNORM_CHROMIUM.\n",
  );
}

describe.runIf(!haveChromium && Boolean(process.env.CI))('browser tests in CI', () => {
  it('Chromium is installed (Debian package `chromium`)', () => {
    throw new Error(`Chromium not found at ${CHROMIUM}: apt-get install -y chromium (CI never skips the browser tests)`);
  });
});

/** Runs tsc unless dist/ is at least as new as every file of lib/. */
function ensureDist(): void {
  const newest = (dir: string): number =>
    Math.max(0, ...readdirSync(dir, { withFileTypes: true }).map((e) =>
      e.isDirectory() ? newest(join(dir, e.name)) : statSync(join(dir, e.name)).mtimeMs));
  const entry = join(root, 'dist', 'browser.js');
  if (existsSync(entry) && statSync(entry).mtimeMs >= newest(join(root, 'lib'))) return;
  execFileSync(process.execPath, [join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', join(root, 'tsconfig.json')], {
    stdio: 'inherit',
  });
}

function failures(report: PageReport): string[] {
  const out = report.results.filter((r) => !r.ok).map((r) => `[${r.backend}] ${r.name}: ${r.error}`);
  if (report.fatal) out.unshift(`fatal: ${report.fatal}`);
  return out;
}

describe.runIf(haveChromium)('in Chromium', () => {
  let browser: Browser;
  let work: string;
  const servers: StaticServer[] = [];

  beforeAll(async () => {
    ensureDist();
    work = mkdtempSync(join(tmpdir(), 'simdnorm-browser-'));
    const { chromium } = await import('playwright-core');
    browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: LAUNCH_ARGS });
  }, 120_000);

  afterAll(async () => {
    await browser?.close();
    await Promise.all(servers.map((s) => s.close()));
    if (work) rmSync(work, { recursive: true, force: true });
  });

  /** Opens url, waits for window.__report (a PageReport promise) and returns it with the logs. */
  async function runPage(
    url: string,
    server: StaticServer,
    initScript?: () => void,
  ): Promise<{ report: PageReport; logs: string[] }> {
    const page = await browser.newPage();
    if (initScript) await page.addInitScript(initScript);
    const logs: string[] = [];
    page.on('console', (m) => logs.push(`console.${m.type()}: ${m.text()}`));
    page.on('pageerror', (e) => logs.push(`pageerror: ${e.message}`));
    page.on('requestfailed', (r) => logs.push(`requestfailed: ${r.url()} ${r.failure()?.errorText}`));
    try {
      await page.goto(url);
      await page.waitForFunction(() => (window as { __report?: unknown }).__report !== undefined, null, {
        timeout: 60_000,
      });
      const report = await page.evaluate(() => (window as unknown as { __report: Promise<PageReport> }).__report);
      return { report, logs: [...logs, ...server.log] };
    } catch (e) {
      throw new Error(`${(e as Error).message}\npage logs:\n${[...logs, ...server.log].join('\n')}`);
    } finally {
      await page.close();
    }
  }

  function expectAllPassed(report: PageReport, logs: string[], variant = 'simd128', backends = ['wasm', 'js']): void {
    const failed = failures(report);
    expect(failed, `${failed.join('\n')}\n--- logs ---\n${logs.join('\n')}`).toEqual([]);
    for (const backend of backends) {
      expect(report.results.filter((r) => r.backend === backend && r.ok).length, backend).toBeGreaterThan(10);
      expect(report.used[backend]?.current).toBe(backend);
    }
    // The artifact Chromium loaded.
    const file = variant === 'simd128-threads' ? 'simdnorm-threads.wasm' : variant === 'simd128' ? 'simdnorm-simd.wasm' : 'simdnorm-scalar.wasm';
    expect(report.used.wasm?.details).toMatchObject({ simd: variant === 'scalar' ? 'scalar' : 'simd128', variant: file });
    const details = report.used.wasm?.details as Record<string, unknown> | undefined;
    if (variant === 'simd128-threads') expect(Number(details?.threads)).toBeGreaterThan(1);
    else expect(String(details?.threadsOff)).toMatch(/^threads off: [^\n]+$/);
    const count = (b: string) => report.results.filter((r) => r.backend === b).length;
    console.log(
      `${report.userAgent.match(/\S*Chrome\/\S+/)?.[0]}: ${backends.map((b) => `${count(b)} cases passed on ${b}`).join(', ')} ` +
        `(wasm: ${JSON.stringify(report.used.wasm?.details)})`,
    );
  }

  it('runs the conformance suite on wasm and js from the unbundled package (dist/browser.js), and on the scalar build without SIMD', async () => {
    // The cases (and what they import from lib/) as one ES module; `simdnorm` stays external
    // and the page's import map points it at the package's own dist/browser.js.
    const { build } = await import('vite');
    const runnerDir = join(work, 'runner');
    await build({
      configFile: false,
      logLevel: 'warn',
      root,
      build: {
        outDir: runnerDir,
        emptyOutDir: true,
        minify: false,
        lib: { entry: join(root, 'test/browser/runner.ts'), formats: ['es'], fileName: () => 'runner.js' },
        rolldownOptions: { external: ['simdnorm'] },
      },
    });
    writeFileSync(
      join(runnerDir, 'index.html'),
      `<!doctype html><meta charset="utf-8"><title>simdnorm conformance</title>
<script type="importmap">{"imports": {"simdnorm": "/dist/browser.js"}}</script>
<script type="module">
  import * as api from 'simdnorm';
  import { runConformance } from '/__runner/runner.js';
  const backends = new URLSearchParams(location.search).get('backends');
  window.__report = runConformance(api, backends ? backends.split(',') : undefined);
</script>`,
    );
    const server = await serveStatic({ '/': root, '/__runner/': runnerDir });
    servers.push(server);
    const { report, logs } = await runPage(`${server.origin}/__runner/index.html`, server);
    expectAllPassed(report, logs);
    // The .wasm came from the package's wasm/bin/, found relative to dist/backends/wasm.js.
    expect(server.log).toContain('200 GET /wasm/bin/simdnorm-simd.wasm');

    // An engine without SIMD128, simulated: WebAssembly.validate refuses the SIMD probe (a module
    // using v128), so the loader must fetch and run the scalar build.
    const scalar = await serveStatic({ '/': root, '/__runner/': runnerDir });
    servers.push(scalar);
    const noSimd = await runPage(`${scalar.origin}/__runner/index.html?backends=wasm`, scalar, () => {
      const validate = WebAssembly.validate;
      WebAssembly.validate = (bytes: BufferSource) => {
        const b = new Uint8Array(ArrayBuffer.isView(bytes) ? bytes.buffer : bytes);
        return b.length < 64 && b.includes(0xfd) ? false : validate(bytes);
      };
    });
    expectAllPassed(noSimd.report, noSimd.logs, 'scalar', ['wasm']);
    expect(scalar.log).toContain('200 GET /wasm/bin/simdnorm-scalar.wasm');
    expect(scalar.log).not.toContain('200 GET /wasm/bin/simdnorm-simd.wasm');

    // A cross-origin isolated page (COOP + COEP): the threaded variant, its workers from a blob.
    const isolated = await serveStatic({ '/': root, '/__runner/': runnerDir }, { isolated: true });
    servers.push(isolated);
    const threaded = await runPage(`${isolated.origin}/__runner/index.html`, isolated);
    expectAllPassed(threaded.report, threaded.logs, 'simd128-threads');
    expect(isolated.log).toContain('200 GET /wasm/bin/simdnorm-threads.wasm');
  }, 300_000);

  it('runs the conformance suite from a Vite production build that imports simdnorm', async () => {
    const app = join(work, 'vite-app');
    mkdirSync(join(app, 'node_modules'), { recursive: true });
    symlinkSync(root, join(app, 'node_modules', 'simdnorm'), 'dir');
    writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'vite-app', private: true, type: 'module' }));
    const runner = relative(app, join(root, 'test/browser/runner.ts')).split('\\').join('/');
    writeFileSync(
      join(app, 'main.js'),
      `import * as api from 'simdnorm';
import { runConformance } from '${runner}';
window.__report = runConformance(api);
`,
    );
    writeFileSync(
      join(app, 'index.html'),
      '<!doctype html><meta charset="utf-8"><title>vite + simdnorm</title><script type="module" src="/main.js"></script>',
    );
    const { build } = await import('vite');
    await build({ configFile: false, logLevel: 'warn', root: app, build: { outDir: join(app, 'dist'), emptyOutDir: true } });
    const assets = readdirSync(join(app, 'dist', 'assets'));
    // Vite saw every `new URL('…wasm', import.meta.url)` and emitted the three variants (the page
    // is not cross-origin isolated: it loads the SIMD one, asserted below).
    expect(assets.filter((f) => f.endsWith('.wasm')).length, assets.join(', ')).toBe(3);
    const server = await serveStatic({ '/': join(app, 'dist') });
    servers.push(server);
    const { report, logs } = await runPage(`${server.origin}/`, server);
    expectAllPassed(report, logs);
    expect(server.log.some((l) => /^200 GET \/assets\/simdnorm-simd-.*\.wasm$/.test(l)), server.log.join('\n')).toBe(true);
  }, 300_000);
});
