/**
 * SyncBatchNorm in Chromium with Web Workers (Debian's chromium through playwright-core, as
 * test/browser): 3 module-worker ranks on wasm and js, both dtypes and layouts, against one
 * batchNormTrain/batchNormBackward of the whole batch on the page (float32 ≤ 1e-5, float64 ≤
 * 1e-11) and bitwise across ranks; a stalled rank makes the others reject naming it. Twice: the
 * SharedArrayBuffer collective on a cross-origin isolated page (COOP same-origin + COEP
 * require-corp), and the channel collective (hub over the Worker objects) on a page without
 * isolation. Without Chromium: a loud skip, a failure when CI is set.
 */
import { createReadStream, existsSync, statSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { extname, join, normalize, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureDist } from '../reliability/dist.js';

const root = resolve(fileURLToPath(new URL('../..', import.meta.url)));
const CHROMIUM = process.env.SIMDNORM_CHROMIUM ?? '/usr/bin/chromium';
const LAUNCH_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];
const haveChromium = existsSync(CHROMIUM);
if (!haveChromium) console.warn(`\n*** Chromium not found at ${CHROMIUM}: the SyncBatchNorm browser test is ${process.env.CI ? 'FAILING (CI is set)' : 'SKIPPED'} ***\n`);

describe.runIf(!haveChromium && Boolean(process.env.CI))('SyncBatchNorm in Chromium, CI', () => {
  it('Chromium is installed', () => {
    throw new Error(`Chromium not found at ${CHROMIUM}`);
  });
});

const TYPES: Record<string, string> = { '.html': 'text/html; charset=utf-8', '.js': 'text/javascript', '.mjs': 'text/javascript', '.wasm': 'application/wasm' };

/** Serves the checkout (dist/, wasm/bin/, test/sync/browser/) from 127.0.0.1, isolated or not. */
async function serve(isolated: boolean): Promise<{ origin: string; close(): Promise<void> }> {
  const server: Server = createServer((req, res) => {
    const path = decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname);
    const headers: Record<string, string> = isolated ? { 'Cross-Origin-Opener-Policy': 'same-origin', 'Cross-Origin-Embedder-Policy': 'require-corp' } : {};
    if (path === '/page.html') {
      res.writeHead(200, { ...headers, 'Content-Type': TYPES['.html'] });
      res.end('<!doctype html><meta charset="utf-8"><title>SyncBatchNorm</title><script type="module" src="/test/sync/browser/page.mjs"></script>');
      return;
    }
    const file = normalize(join(root, path));
    const allowed = ['dist', 'wasm', join('test', 'sync', 'browser')].some((d) => file.startsWith(join(root, d) + sep));
    if (req.method !== 'GET' || !allowed || !existsSync(file) || !statSync(file).isFile()) {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { ...headers, 'Content-Type': TYPES[extname(file)] ?? 'application/octet-stream', 'Cache-Control': 'no-store' });
    createReadStream(file).pipe(res);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    origin: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: () => new Promise((r) => server.close(() => r())),
  };
}

describe.runIf(haveChromium)('SyncBatchNorm in Chromium with Web Workers', () => {
  let browser: Browser;
  beforeAll(async () => {
    ensureDist();
    const { chromium } = await import('playwright-core');
    browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: LAUNCH_ARGS });
  }, 120_000);
  afterAll(async () => {
    await browser?.close();
  });

  for (const mode of ['shared', 'channel'] as const) {
    it(`${mode === 'shared' ? 'SharedArrayBuffer collective, cross-origin isolated page' : 'channel collective (hub over the Workers), page not isolated'}`, async () => {
      const server = await serve(mode === 'shared');
      const page = await browser.newPage();
      const logs: string[] = [];
      page.on('console', (m) => logs.push(`console.${m.type()}: ${m.text()}`));
      page.on('pageerror', (e) => logs.push(`pageerror: ${e.message}`));
      try {
        await page.goto(`${server.origin}/page.html?mode=${mode}`);
        await page.waitForFunction(() => (window as { __report?: unknown }).__report !== undefined, null, { timeout: 60_000 });
        const report = await page.evaluate(() => (window as unknown as { __report: Promise<{ isolated: boolean; results: { name: string; ok: boolean; error: string }[] }> }).__report);
        expect(report.isolated).toBe(mode === 'shared');
        const failed = report.results.filter((r) => !r.ok).map((r) => `${r.name}: ${r.error}`);
        expect(failed, `${failed.join('\n')}\n${logs.join('\n')}`).toEqual([]);
        expect(report.results.length).toBe(9);
      } finally {
        await page.close();
        await server.close();
      }
    }, 180_000);
  }
});
