/**
 * The browser loading path, exercised in Node (which has fetch and instantiateStreaming):
 * setWasmLocation, streaming compilation with its fallback for a wrong Content-Type, and the
 * error for a missing file. Chromium runs the same code in test/browser/.
 */
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import {
  fetchWasmBackend,
  loadedWasmBackend,
  setWasmLocation,
  wasmBrowserProvider,
  wasmUrl,
} from '../../lib/backends/wasm.js';
import { serveStatic, type StaticServer } from '../browser/server.js';

const root = resolve(fileURLToPath(new URL('../..', import.meta.url)));
const servers: StaticServer[] = [];

afterEach(() => setWasmLocation(null));
afterAll(() => Promise.all(servers.map((s) => s.close())));

async function serve(options?: { wasmType?: string }): Promise<StaticServer> {
  const server = await serveStatic({ '/': root }, options);
  servers.push(server);
  return server;
}

describe('wasm location', () => {
  it('defaults to wasm/bin/ of the package, next to lib/ and dist/', () => {
    for (const variant of ['simd128', 'scalar'] as const) {
      const url = wasmUrl(variant);
      expect(url.protocol).toBe('file:');
      expect(existsSync(fileURLToPath(url))).toBe(true);
    }
    expect(wasmUrl('simd128').pathname).toMatch(/\/wasm\/bin\/simdnorm-simd\.wasm$/);
    expect(wasmUrl('scalar').pathname).toMatch(/\/wasm\/bin\/simdnorm-scalar\.wasm$/);
  });

  it('can be a directory (with or without the trailing slash) or a function', () => {
    setWasmLocation('https://cdn.example.com/simdnorm');
    expect(wasmUrl('simd128').href).toBe('https://cdn.example.com/simdnorm/simdnorm-simd.wasm');
    setWasmLocation(new URL('https://cdn.example.com/a/b/'));
    expect(wasmUrl('scalar').href).toBe('https://cdn.example.com/a/b/simdnorm-scalar.wasm');
    setWasmLocation((file, variant) => `https://x.example/${variant}/${file}?v=1`);
    expect(wasmUrl('scalar').href).toBe('https://x.example/scalar/simdnorm-scalar.wasm?v=1');
  });
});

describe('fetching', () => {
  it('streams both variants from an http server serving application/wasm', async () => {
    const server = await serve();
    setWasmLocation(`${server.origin}/wasm/bin/`);
    const simd = await fetchWasmBackend('simd128');
    const scalar = await fetchWasmBackend('scalar');
    expect(simd.details()).toMatchObject({ simd: 'simd128', variant: 'simdnorm-simd.wasm' });
    expect(scalar.details()).toMatchObject({ simd: 'scalar', variant: 'simdnorm-scalar.wasm' });
  });

  it('falls back to a buffered compile when the Content-Type is wrong', async () => {
    const server = await serve({ wasmType: 'application/octet-stream' });
    setWasmLocation(`${server.origin}/wasm/bin/`);
    const backend = await fetchWasmBackend();
    expect(backend.details().simd).toBe('simd128');
  });

  it('rejects with the URL and status for a missing file, and may be retried', async () => {
    const server = await serve();
    setWasmLocation(`${server.origin}/nowhere/`);
    await expect(wasmBrowserProvider.load()).rejects.toThrow(/nowhere\/simdnorm-simd\.wasm failed: HTTP 404/);
    setWasmLocation(`${server.origin}/wasm/bin/`);
    const backend = await wasmBrowserProvider.load();
    expect(backend).toBe(loadedWasmBackend());
    expect(await wasmBrowserProvider.load()).toBe(backend);
    expect(wasmBrowserProvider.loadSync).toBeUndefined();
  });
});
