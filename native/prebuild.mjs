#!/usr/bin/env node
/**
 * Builds the prebuilt native addons shipped in the package (npm run prebuild):
 *
 *   prebuilds/linux-x64/node.abi<N>.glibc.node     for each Node major in TARGETS
 *   prebuilds/linux-arm64/node.abi<N>.glibc.node   (cross-compiled with g++-aarch64-linux-gnu)
 *
 * prebuildify's layout and tags, which node-gyp-build reads at run time (lib/backends/native.ts;
 * the package has no install script, so nothing is compiled where one fits). One file per Node
 * ABI, not one N-API build: the binding's pin.cpp uses V8's C++ API (native/node/pin.h).
 *
 * Each addon is binding.gyp's build (node-gyp, the flags of `npx simdnorm build`; x64: the SSE2 baseline
 * plus the AVX2+FMA objects picked at run time; arm64: armv8-a, NEON), compiled against the
 * headers of an exact Node release — the npm registry's node-linux-<arch> packages (the official
 * Node builds, headers included), fetched with `npm pack` into the cache — and stripped of its
 * symbol table. The sources are copied to build-prebuild/src, so the checkout's build/ is
 * untouched. Never -march=native.
 *
 *   node native/prebuild.mjs [--arch x64,arm64] [--node 20,22,24] [--out prebuilds] [--jobs N]
 *   node native/prebuild.mjs --check     (prepublishOnly) fails unless every prebuild is there
 *
 * Needs g++, make, python3 (node-gyp), and for arm64 Debian's g++-aarch64-linux-gnu; the cache
 * (build-prebuild/node, or SIMDNORM_PREBUILD_CACHE) also keeps each release's `node` binary, which
 * test/package/prebuilds.mjs runs the installed package with (arm64: under qemu-aarch64).
 */
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { copyFileSync, cpSync, existsSync, mkdirSync, readFileSync, readdirSync, rmSync, statSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');

/**
 * The Node releases the prebuilds are compiled against, per architecture: the newest of each
 * major that `engines` (>=20.19.0) allows and the registry has for both architectures. Any
 * release of the same major has the same ABI.
 */
export const TARGETS = {
  x64: { 20: '20.20.2', 22: '22.23.5', 24: '24.22.3' },
  arm64: { 20: '20.20.2', 22: '22.23.5', 24: '24.22.1' },
};
/** NODE_MODULE_VERSION of each major (checked against the headers at build time). */
export const ABI = { 20: 115, 22: 127, 24: 137 };

const ELF_MACHINE = { x64: 62, arm64: 183 };
const CROSS = { arm64: 'aarch64-linux-gnu' };

export function cacheDir() {
  return resolve(process.env.SIMDNORM_PREBUILD_CACHE ?? join(root, 'build-prebuild', 'node'));
}

function sh(command, args, options = {}) {
  const r = spawnSync(command, args, { stdio: 'inherit', ...options });
  if (r.error) throw new Error(`${command} could not run: ${r.error.message}`);
  if (r.status !== 0) throw new Error(`${command} ${args.join(' ')} exited with ${r.status ?? r.signal}`);
  return r;
}

/** The unpacked node-linux-<arch>@<version> package (bin/node, include/node), fetched once. */
export function nodeRelease(arch, version) {
  const dir = join(cacheDir(), `node-linux-${arch}-${version}`);
  if (existsSync(join(dir, 'include', 'node', 'node_version.h'))) return dir;
  mkdirSync(cacheDir(), { recursive: true });
  const tgz = join(cacheDir(), `node-linux-${arch}-${version}.tgz`);
  if (!existsSync(tgz)) {
    console.log(`prebuild: npm pack node-linux-${arch}@${version}`);
    sh('npm', ['pack', `node-linux-${arch}@${version}`, '--silent', '--pack-destination', cacheDir()], { stdio: ['ignore', 'ignore', 'inherit'] });
  }
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  sh('tar', ['xzf', tgz, '-C', dir, '--strip-components=1']);
  return dir;
}

/** NODE_MODULE_VERSION of a release's headers (the ABI tag of its prebuild). */
export function abiOf(nodedir) {
  const header = readFileSync(join(nodedir, 'include', 'node', 'node_version.h'), 'utf8');
  const m = /#define NODE_MODULE_VERSION (\d+)/.exec(header);
  if (!m) throw new Error(`no NODE_MODULE_VERSION in ${nodedir}`);
  return Number(m[1]);
}

/** The file a target's prebuild goes to, relative to the output folder. */
export function prebuildName(arch, abi) {
  return join(`linux-${arch}`, `node.abi${abi}.glibc.node`);
}

/** How to run node-gyp: npm's bundled one (beside this Node's npm), else one on PATH. */
function nodeGyp() {
  const fromNpm = process.env.npm_config_node_gyp;
  if (fromNpm && existsSync(fromNpm)) return /\.[cm]?js$/.test(fromNpm) ? [process.execPath, fromNpm] : [fromNpm];
  const prefix = resolve(process.execPath, '..', '..');
  const besideNpm = join(prefix, 'lib', 'node_modules', 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js');
  if (existsSync(besideNpm)) return [process.execPath, besideNpm];
  return ['node-gyp'];
}

/** The sources binding.gyp compiles, copied to a folder of their own. */
function copySources(dir) {
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(join(dir, 'native'), { recursive: true });
  copyFileSync(join(root, 'binding.gyp'), join(dir, 'binding.gyp'));
  for (const sub of ['node', 'kernels']) cpSync(join(root, 'native', sub), join(dir, 'native', sub), { recursive: true });
}

function buildOne({ arch, major, version, src, out, jobs }) {
  const nodedir = nodeRelease(arch, version);
  const abi = abiOf(nodedir);
  if (abi !== ABI[major]) throw new Error(`Node ${version}'s headers say ABI ${abi}, not ${ABI[major]}`);
  // npm passes its own config to scripts as npm_config_* variables, and node-gyp lets them win over
  // its command line: a machine whose npm has `nodedir` set (say, to the running Node's prefix)
  // would build every prebuild against that one Node. So none of node-gyp's target settings come
  // from the environment; the ones wanted are set here.
  const env = Object.fromEntries(
    Object.entries(process.env).filter(([k]) => !/^npm_config_(nodedir|target|target_arch|arch|runtime|dist_?url|devdir|build_from_source)$/i.test(k)),
  );
  Object.assign(env, { npm_config_nodedir: nodedir, npm_config_arch: arch, npm_config_target_arch: arch });
  const args = ['rebuild', '-j', String(jobs), `--nodedir=${nodedir}`, `--arch=${arch}`];
  const triple = CROSS[arch];
  if (triple) {
    Object.assign(env, {
      CC: `${triple}-gcc`, CXX: `${triple}-g++`, LINK: `${triple}-g++`, AR: `${triple}-ar`,
      // aarch64's baseline (NEON is part of it), as cmake/aarch64-linux-gnu.cmake; -Wno-psabi: a
      // note about GCC 10.1's aarch64 parameter passing, irrelevant here.
      CFLAGS: '-march=armv8-a', CXXFLAGS: '-march=armv8-a -Wno-psabi',
    });
  } else {
    for (const k of ['CC', 'CXX', 'LINK', 'AR', 'CFLAGS', 'CXXFLAGS']) delete env[k];
  }
  console.log(`prebuild: linux-${arch} Node ${version} (abi ${abi})`);
  const started = Date.now();
  const [cmd, ...pre] = nodeGyp();
  sh(cmd, [...pre, ...args], { cwd: src, env, stdio: ['ignore', 'ignore', 'inherit'] });
  const built = join(src, 'build', 'Release', 'simdnorm.node');
  const target = join(out, prebuildName(arch, abi));
  mkdirSync(dirname(target), { recursive: true });
  copyFileSync(built, target);
  sh(triple ? `${triple}-strip` : 'strip', ['--strip-unneeded', target]);
  const bytes = readFileSync(target);
  if (bytes.readUInt16LE(18) !== ELF_MACHINE[arch]) throw new Error(`${target} is not a linux-${arch} ELF file`);
  // Built against the right Node: that release's own node loads it (the addon refuses any other
  // major). Only where it runs natively; test/package/prebuilds.mjs checks arm64 under qemu.
  if (arch === process.arch) {
    const script = `const i = require(${JSON.stringify(target)}).info(); console.log(i.simd)`;
    const r = spawnSync(join(nodedir, 'bin', 'node'), ['-e', script], { encoding: 'utf8', timeout: 60_000 });
    if (r.status !== 0) throw new Error(`${relative(root, target)} does not load in Node ${version}: ${(r.stderr || '').trim().split('\n')[0]}`);
  }
  const sha = createHash('sha256').update(bytes).digest('hex').slice(0, 16);
  console.log(`prebuild:   ${relative(root, target)} ${bytes.length} bytes sha256 ${sha}… (${((Date.now() - started) / 1000).toFixed(0)} s)`);
  return target;
}

function parseArgs(argv) {
  const opts = { arch: Object.keys(TARGETS), node: null, out: join(root, 'prebuilds'), jobs: availableParallelism() };
  for (let i = 0; i < argv.length; i++) {
    const [flag, inline] = argv[i].split('=', 2);
    const value = () => inline ?? argv[++i];
    if (flag === '--arch') opts.arch = value().split(',');
    else if (flag === '--node') opts.node = value().split(',');
    else if (flag === '--out') opts.out = resolve(value());
    else if (flag === '--jobs') opts.jobs = Number(value());
    else throw new Error(`unknown option ${argv[i]} (--arch x64,arm64 --node 20,22,24 --out DIR --jobs N)`);
  }
  for (const a of opts.arch) if (!TARGETS[a]) throw new Error(`no such arch ${a}: ${Object.keys(TARGETS).join(', ')}`);
  return opts;
}

/** --check (prepublishOnly): every target's prebuild is in prebuilds/, so a publish ships them all. */
function check() {
  const missing = [];
  for (const [arch, versions] of Object.entries(TARGETS)) {
    for (const major of Object.keys(versions)) {
      const file = join(root, 'prebuilds', prebuildName(arch, ABI[major]));
      if (!existsSync(file)) missing.push(relative(root, file));
    }
  }
  if (missing.length) throw new Error(`missing ${missing.join(', ')}: run npm run prebuilds first`);
  console.log('prebuild: every prebuild is present');
}

function main() {
  if (process.argv[2] === '--check') return check();
  const opts = parseArgs(process.argv.slice(2));
  const src = join(root, 'build-prebuild', 'src');
  copySources(src);
  const made = [];
  for (const arch of opts.arch) {
    for (const [major, version] of Object.entries(TARGETS[arch])) {
      if (opts.node && !opts.node.includes(major)) continue;
      made.push(buildOne({ arch, major, version, src, out: opts.out, jobs: opts.jobs }));
    }
  }
  // Nothing stale: only what this run made for the requested architectures stays.
  for (const arch of opts.arch) {
    const dir = join(opts.out, `linux-${arch}`);
    for (const f of existsSync(dir) ? readdirSync(dir) : []) {
      const file = join(dir, f);
      if (!made.includes(file) && !opts.node) rmSync(file, { force: true });
    }
  }
  const total = made.reduce((s, f) => s + statSync(f).size, 0);
  console.log(`prebuild: ${made.length} addons, ${total} bytes in ${relative(root, opts.out) || '.'}`);
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  try {
    main();
  } catch (e) {
    console.error(`prebuild: ${e.message}`);
    process.exitCode = 1;
  }
}
