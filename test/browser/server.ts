/**
 * A static file server for the browser tests, on 127.0.0.1 and a free port. Serves `.wasm` as
 * application/wasm (needed for streaming compilation) and only files under the mounted roots.
 */
import { createReadStream, statSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { extname, join, normalize, sep } from 'node:path';

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json',
  '.map': 'application/json',
  '.wasm': 'application/wasm',
  '.svg': 'image/svg+xml',
};

export interface StaticServer {
  /** http://127.0.0.1:port */
  readonly origin: string;
  /** every path requested, with its status, for failure messages */
  readonly log: string[];
  close(): Promise<void>;
}

/**
 * Serves each URL prefix from a directory: `{ '/': repoRoot, '/__runner/': tmp }`; the longest
 * matching prefix wins. `wasmType` overrides the .wasm Content-Type (to test the fallback);
 * `isolated` sends COOP same-origin + COEP require-corp, making pages cross-origin isolated
 * (SharedArrayBuffer, so the threaded wasm variant).
 */
export async function serveStatic(
  mounts: Record<string, string>,
  options: { wasmType?: string; isolated?: boolean } = {},
): Promise<StaticServer> {
  const prefixes = Object.keys(mounts).sort((a, b) => b.length - a.length);
  const log: string[] = [];
  const server: Server = createServer((req, res) => {
    const path = decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname);
    const prefix = prefixes.find((p) => path.startsWith(p));
    let status = 404;
    if (prefix !== undefined && req.method === 'GET') {
      const root = normalize(mounts[prefix]);
      let file = normalize(join(root, path.slice(prefix.length)));
      if (file === root || file.startsWith(root + sep)) {
        try {
          if (statSync(file).isDirectory()) file = join(file, 'index.html');
          const size = statSync(file).size;
          const ext = extname(file);
          const type = ext === '.wasm' && options.wasmType !== undefined ? options.wasmType : TYPES[ext];
          res.writeHead(200, {
            'Content-Type': type ?? 'application/octet-stream',
            'Content-Length': size,
            'Cache-Control': 'no-store',
            ...(options.isolated
              ? { 'Cross-Origin-Opener-Policy': 'same-origin', 'Cross-Origin-Embedder-Policy': 'require-corp' }
              : {}),
          });
          createReadStream(file).pipe(res);
          status = 200;
        } catch {
          status = 404;
        }
      }
    }
    log.push(`${status} ${req.method} ${path}`);
    if (status !== 200) res.writeHead(status, { 'Content-Type': 'text/plain' }).end(`${status} ${path}\n`);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    origin: `http://127.0.0.1:${port}`,
    log,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
