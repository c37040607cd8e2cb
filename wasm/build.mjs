#!/usr/bin/env node
// Builds the wasm backend's two artifacts from native/kernels through the top-level
// CMakeLists.txt (emcmake cmake; it includes wasm/wasm.cmake) and checks them:
//   - the SIMD128 build contains f32x4 instructions and the scalar one no v128 instruction,
//   - both import only the two functions lib/backends/wasm/ provides and export the C ABI;
//   - the threaded one (SIMD128, -pthread) imports a shared memory and only the runtime hooks
//     lib/backends/wasm/threads.ts provides, and exports what its workers need (its JS glue,
//     written beside it by emcc, is not used);
//   - each is at most GZIP_BUDGET bytes gzipped at level 9 (issue 19's budget; the README states
//     the sizes).
//
//   node wasm/build.mjs          build into wasm/bin/ (npm run build:wasm)
//   node wasm/build.mjs --check  build into a temporary directory and fail when the committed
//                                wasm/bin/ files differ byte for byte (npm run check:wasm)
//   node wasm/build.mjs --verify only check the committed wasm/bin/ files (needs wabt only)
//
// Needs Debian's emscripten (emcc 3.1.6), cmake and wabt: apt-get install emscripten cmake wabt.
import { spawnSync } from 'node:child_process';
import { chmodSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';

const root = resolve(fileURLToPath(new URL('..', import.meta.url)));
const binDir = join(root, 'wasm', 'bin');
const ARTIFACTS = { 'simdnorm-simd': 'simd128', 'simdnorm-scalar': 'scalar', 'simdnorm-threads': 'simd128-threads' };
// 128 kB gzipped per variant (issue 19), whatever the variant.
const GZIP_BUDGET = 128_000;
const ALLOWED_IMPORTS = new Set(['env.emscripten_notify_memory_growth', 'wasi_snapshot_preview1.proc_exit']);
// The C ABI as native/abi/table.mjs states it (wasm/exports.cmake is generated from the same list).
const { wasmExports } = await import(new URL('../native/abi/table.mjs', import.meta.url).href);
const REQUIRED_EXPORTS = ['memory', ...wasmExports];
// The threaded variant (wasm/wasm.cmake's simdnorm-threads) imports its shared memory and the
// runtime hooks lib/backends/wasm/threads.ts provides, and exports what its workers need.
const THREAD_IMPORTS = new Set([
  'env.memory', 'env.emscripten_resize_heap', 'env.emscripten_get_now', 'env.__emscripten_init_main_thread_js',
  'env.abort', 'env.exit', 'env.emscripten_unwind_to_js_event_loop', 'env.__pthread_create_js',
  'env.emscripten_receive_on_main_thread_js', 'env.emscripten_set_canvas_element_size',
  'env.emscripten_webgl_create_context', 'env._emscripten_notify_thread_queue', 'env.__emscripten_thread_cleanup',
  'env.emscripten_check_blocking_allowed',
]);
const THREAD_EXPORTS = [
  ...wasmExports, 'sn_thread_stack', 'sn_thread_run', 'sn_thread_pool', 'sn_set_threads', 'sn_get_threads',
  'sn_thread_joins', 'stackRestore', '__wasm_call_ctors', '_emscripten_thread_init',
];

const args = new Set(process.argv.slice(2));
const mode = args.has('--check') ? 'check' : args.has('--verify') ? 'verify' : 'build';

// emcc needs Debian's nodejs modules (acorn) on NODE_PATH, else linking fails.
const env = {
  ...process.env,
  NODE_PATH: ['/usr/share/nodejs', process.env.NODE_PATH].filter(Boolean).join(':'),
};

function run(cmd, argv, options = {}) {
  const r = spawnSync(cmd, argv, { env, encoding: 'utf8', maxBuffer: 1 << 28, ...options });
  if (r.error) {
    const hint = r.error.code === 'ENOENT' ? ` (not installed? apt-get install -y emscripten cmake wabt)` : '';
    throw new Error(`${cmd}: ${r.error.message}${hint}`);
  }
  if (r.status !== 0) {
    throw new Error(`${cmd} ${argv.join(' ')} failed (exit ${r.status}):\n${r.stdout}\n${r.stderr}`);
  }
  return r.stdout;
}

function fail(message) {
  console.error(`wasm/build.mjs: ${message}`);
  process.exit(1);
}

/** Configures and builds into buildDir; returns the path of each artifact by name. */
function build(buildDir) {
  const top = join(root, 'CMakeLists.txt');
  if (!existsSync(top) || !readFileSync(top, 'utf8').includes('wasm/wasm.cmake')) {
    fail(`${top} does not include wasm/wasm.cmake under if(EMSCRIPTEN)`);
  }
  run('emcmake', ['cmake', '-S', root, '-B', buildDir, '-G', 'Unix Makefiles', '-DCMAKE_BUILD_TYPE=Release'], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  run('cmake', ['--build', buildDir, '--parallel', '2', '--target', ...Object.keys(ARTIFACTS)]);
  return Object.fromEntries(Object.keys(ARTIFACTS).map((name) => [name, join(buildDir, `${name}.wasm`)]));
}

/** Checks one artifact's instructions, imports and exports; returns its f32x4 count. */
function verify(path, variant) {
  const disassembly = run('wasm-objdump', ['-d', path]);
  const f32x4 = disassembly.split('\n').filter((l) => l.includes('f32x4')).length;
  const vector = disassembly.split('\n').filter((l) => /\b(v128|[if](8x16|16x8|32x4|64x2))\./.test(l)).length;
  if (variant === 'simd128' && f32x4 === 0) fail(`${path} has no f32x4 instruction: SIMD128 was not used`);
  if (variant === 'scalar' && vector > 0) fail(`${path} has ${vector} SIMD instructions but is the scalar build`);
  const threads = variant === 'simd128-threads';
  const allowed = threads ? THREAD_IMPORTS : ALLOWED_IMPORTS;
  const headers = run('wasm-objdump', ['-x', '-j', 'Import', path]) + run('wasm-objdump', ['-x', '-j', 'Export', path]);
  const imports = [...headers.matchAll(/<- ([\w.]+)/g)].map((m) => m[1]);
  const exports = new Set([...headers.matchAll(/-> "(\w+)"/g)].map((m) => m[1]));
  const unexpected = imports.filter((i) => !allowed.has(i));
  if (unexpected.length) fail(`${path} imports ${unexpected.join(', ')}; lib/backends/wasm/ provides only ${[...allowed].join(', ')}`);
  if (threads && !/memory\[0\].*shared <- env\.memory/.test(headers)) fail(`${path} does not import a shared env.memory`);
  const missing = (threads ? THREAD_EXPORTS : REQUIRED_EXPORTS).filter((e) => !exports.has(e));
  if (missing.length) fail(`${path} does not export ${missing.join(', ')}`);
  const bytes = readFileSync(path);
  const gz = gzipSync(bytes, { level: 9 }).length;
  if (gz > GZIP_BUDGET) fail(`${path} is ${gz} bytes gzipped, over the budget of ${GZIP_BUDGET} (issue 19)`);
  return { f32x4, vector, imports, size: bytes.length, gz };
}

function main() {
  if (mode === 'verify') {
    for (const [name, variant] of Object.entries(ARTIFACTS)) {
      const r = verify(join(binDir, `${name}.wasm`), variant);
      console.log(`${name}.wasm: ${r.size} bytes (${r.gz} gzipped), ${r.f32x4} f32x4 / ${r.vector} SIMD instructions; imports ${r.imports.join(', ') || 'none'}`);
    }
    return;
  }
  const work = mkdtempSync(join(tmpdir(), 'simdnorm-wasm-'));
  try {
    const built = build(join(work, 'build'));
    for (const [name, variant] of Object.entries(ARTIFACTS)) {
      const r = verify(built[name], variant);
      console.log(`${name}.wasm: ${r.size} bytes (${r.gz} gzipped), ${r.f32x4} f32x4 / ${r.vector} SIMD instructions; imports ${r.imports.join(', ') || 'none'}`);
    }
    if (mode === 'build') {
      mkdirSync(binDir, { recursive: true });
      for (const name of Object.keys(ARTIFACTS)) {
        copyFileSync(built[name], join(binDir, `${name}.wasm`));
        chmodSync(join(binDir, `${name}.wasm`), 0o644); // emcc marks its output executable
      }
      console.log(`wrote ${Object.keys(ARTIFACTS).map((n) => `wasm/bin/${n}.wasm`).join(', ')}`);
      return;
    }
    const stale = Object.keys(ARTIFACTS).filter((name) => {
      const committed = join(binDir, `${name}.wasm`);
      return !existsSync(committed) || !readFileSync(committed).equals(readFileSync(built[name]));
    });
    if (stale.length) {
      fail(
        `${stale.map((n) => `wasm/bin/${n}.wasm`).join(', ')} differ from a fresh build of the current sources: ` +
          'run npm run build:wasm and commit wasm/bin/',
      );
    }
    console.log('wasm/bin/ matches a fresh build byte for byte');
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

try {
  main();
} catch (e) {
  fail(e.message);
}
