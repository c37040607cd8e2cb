#!/usr/bin/env node
/**
 * Builds simdnorm's native addon (native/node over native/kernels) from source. The package has no
 * install script: where a prebuilt addon fits (prebuilds/, made by native/prebuild.mjs) nothing is
 * compiled at all, and elsewhere the user runs one command.
 *
 *   node native/build.mjs           What `npx simdnorm build` runs, from a user's project: node-gyp
 *                                   rebuild (offline; a failed build's whole output goes to
 *                                   build/native-build.log), checks that the addon loads, then keeps
 *                                   only build/Release/simdnorm.node.
 *                                   On failure prints the line that says why and exits 1; that line
 *                                   is remembered in build/native-build-failure.txt for `simdnorm
 *                                   info` (a success removes it). A build/Release/simdnorm.node
 *                                   takes precedence over the prebuilds (lib/backends/native.ts).
 *   node native/build.mjs --dev     What `npm run build` runs in a checkout: the addon up to date
 *                                   (node-gyp build, incremental, when build/ is configured and its
 *                                   addon loads; else node-gyp rebuild); output shown, exits 1 on
 *                                   failure. Without a compiler, make or Python 3 it says so in one
 *                                   line and exits 0: simdnorm then runs on WebAssembly.
 *   node native/build.mjs --gyp     node-gyp rebuild (offline) -> build/Release/simdnorm.node;
 *                                   output shown, exits non-zero on failure (npm run build:native).
 *   node native/build.mjs --cmake   cmake-js rebuild --out build-cmake
 *                                   -> build-cmake/Release/simdnorm.node; the same (CI).
 * Arguments after --gyp or --cmake go to node-gyp or cmake-js (say, --CDSIMDNORM_ADDON_SANITIZE=ON;
 * `--out <dir>` replaces build-cmake).
 *
 * Offline: node-gyp gets --nodedir=<prefix of this Node> when <prefix>/include/node/node_api.h
 * exists; cmake-js uses node-api-headers (package.json has "binary": {"napi_versions": [8]}) and
 * gets this Node's <prefix>/include/node (or $npm_config_nodedir/include/node) as
 * SIMDNORM_NODE_INCLUDE_DIR: the binding's pin.cpp needs v8.h, which ties the addon to this Node's
 * major version (native/node/pin.h), whichever tool builds it.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { availableParallelism } from 'node:os';
import { delimiter, dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const gypAddon = join(root, 'build', 'Release', 'simdnorm.node');
// Why the last `simdnorm build` failed, for `simdnorm info` (lib/cli.ts reads it).
const failureFile = join(root, 'build', 'native-build-failure.txt');
const jobs = String(availableParallelism());

/** A failure whose message is the one-line reason shown to the user. */
class BuildError extends Error {}

/**
 * Loads the addon in a child process (a broken binary must not take this script down):
 * { info } from its info() when it loads, else { error } with the first line of the reason.
 */
function probe(file, env = process.env) {
  if (!existsSync(file)) return { error: 'it does not exist' };
  const script = `console.log(JSON.stringify(require(${JSON.stringify(file)}).info()))`;
  const result = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', timeout: 60_000, env });
  if (result.status === 0) return { info: JSON.parse(result.stdout) };
  const line = `${result.stderr ?? ''}`.split('\n').find((l) => /error/i.test(l));
  return { error: line?.trim() || `loading it exited with ${result.status ?? result.signal}` };
}

/**
 * How to run node-gyp: npm's bundled one (npm gives scripts npm_config_node_gyp), else one on
 * PATH, else the one bundled with the npm installed next to this Node (run outside npm).
 */
function nodeGypCommand() {
  const fromNpm = process.env.npm_config_node_gyp;
  if (fromNpm && existsSync(fromNpm)) {
    return /\.[cm]?js$/.test(fromNpm) ? [process.execPath, fromNpm] : [fromNpm];
  }
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    if (dir && existsSync(join(dir, 'node-gyp'))) return [join(dir, 'node-gyp')];
  }
  const prefix = resolve(process.execPath, '..', '..');
  const besideNpm = join(prefix, 'lib', 'node_modules', 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js');
  if (existsSync(besideNpm)) return [process.execPath, besideNpm];
  throw new BuildError('node-gyp not found: not run by npm, none on PATH and none beside npm');
}

/** --nodedir for this Node's own headers, so node-gyp does not try to download them. */
function nodedirArgs() {
  const prefix = resolve(process.execPath, '..', '..');
  return existsSync(join(prefix, 'include', 'node', 'node_api.h')) ? [`--nodedir=${prefix}`] : [];
}

/** The line of a failed build's output that says most about why. */
function firstReason(output) {
  const lines = output.split('\n').map((l) => l.trim()).filter(Boolean);
  const pick =
    lines.find((l) => /\berror\b:/i.test(l) && !l.startsWith('gyp')) ??
    lines.find((l) => /^g?make(\[\d+\])?: \*\*\*/.test(l)) ??
    lines.find((l) => l.startsWith('gyp ERR! stack Error:'))?.replace('gyp ERR! stack ', '') ??
    lines.find((l) => l.startsWith('gyp ERR!')) ??
    lines.at(-1) ??
    'no output';
  return pick.length > 200 ? `${pick.slice(0, 197)}...` : pick;
}

/** Runs a build tool (`name` for messages); quiet: output captured into build/native-build.log. */
function run(name, command, args, { quiet }) {
  const result = spawnSync(command[0], [...command.slice(1), ...args], {
    cwd: root,
    stdio: quiet ? 'pipe' : 'inherit',
    encoding: 'utf8',
    timeout: 20 * 60_000,
  });
  if (result.error) throw new BuildError(`${name} could not run: ${result.error.message}`);
  if (result.status === 0) return;
  let log = '';
  if (quiet) {
    const output = `${result.stdout ?? ''}\n${result.stderr ?? ''}`;
    const logFile = join(root, 'build', 'native-build.log');
    try {
      mkdirSync(dirname(logFile), { recursive: true });
      writeFileSync(logFile, output);
      log = `; the whole output: ${logFile}`;
    } catch {
      // no log then; the reason below still says what went wrong
    }
    throw new BuildError(`${name} failed: ${firstReason(output)}${log}`);
  }
  throw new BuildError(`${name} ${args[0]} exited with ${result.status ?? result.signal}`);
}

function buildWithNodeGyp({ quiet, extra = [] }) {
  run('node-gyp', nodeGypCommand(), ['rebuild', '-j', jobs, ...nodedirArgs(), ...extra], { quiet });
  return checkBuilt(gypAddon);
}

/** This Node's include/node (v8.h, node_api.h), for cmake-js (node-gyp finds it from --nodedir). */
function nodeIncludeDir() {
  const nodedir = process.env.npm_config_nodedir;
  if (nodedir && existsSync(join(nodedir, 'include', 'node', 'v8.h'))) return join(nodedir, 'include', 'node');
  const dir = join(resolve(process.execPath, '..', '..'), 'include', 'node');
  if (!existsSync(join(dir, 'v8.h'))) {
    throw new BuildError(`this Node's headers are missing (no ${join(dir, 'v8.h')}); set npm_config_nodedir`);
  }
  return dir;
}

function buildWithCmakeJs({ extra = [] }) {
  const require = createRequire(join(root, 'package.json'));
  let cmakeJs;
  try {
    cmakeJs = require.resolve('cmake-js/bin/cmake-js');
  } catch {
    throw new BuildError('cmake-js is not installed (npm install first; it is a devDependency)');
  }
  const outAt = extra.indexOf('--out');
  const out = outAt >= 0 && extra[outAt + 1] ? extra[outAt + 1] : 'build-cmake';
  const rest = outAt >= 0 ? [...extra.slice(0, outAt), ...extra.slice(outAt + 2)] : extra;
  const args = ['rebuild', '--out', out, '--parallel', jobs,
    `--CDSIMDNORM_NODE_INCLUDE_DIR=${nodeIncludeDir()}`, ...rest];
  run('cmake-js', [process.execPath, cmakeJs], args, { quiet: false });
  // An AddressSanitizer build loads only with the ASan runtime preloaded.
  const sanitized = rest.some((a) => /SIMDNORM_ADDON_SANITIZE=ON/i.test(a));
  return checkBuilt(join(resolve(root, out), 'Release', 'simdnorm.node'), sanitized ? asanEnv() : process.env);
}

/** The environment a Node running an ASan-built addon needs (CI runs the tests so too). */
function asanEnv() {
  const lib = spawnSync(process.env.CXX || 'g++', ['-print-file-name=libasan.so'], { encoding: 'utf8' }).stdout?.trim();
  return { ...process.env, LD_PRELOAD: lib || 'libasan.so', ASAN_OPTIONS: 'detect_leaks=0' };
}

function checkBuilt(file, env = process.env) {
  const { info, error } = probe(file, env);
  if (error) throw new BuildError(`${relative(root, file)} was built but does not load: ${error}`);
  return `${relative(root, file)} (${info.build}, ${info.simd}, ${info.maxThreads} threads)`;
}

/**
 * The tools a node-gyp build needs that are not on PATH, in words ([] when all are there): a C++
 * compiler ($CXX, else g++ as gyp's Makefiles use), make, and Python 3 ($PYTHON, else python3).
 * Not checked on Windows, where node-gyp finds Visual Studio and Python its own way.
 */
function missingTools() {
  if (process.platform === 'win32') return [];
  const onPath = (name) =>
    name.includes('/') ? existsSync(name) : (process.env.PATH ?? '').split(delimiter).some((d) => d && existsSync(join(d, name)));
  const missing = [];
  const cxx = process.env.CXX?.trim().split(/\s+/)[0] || 'g++';
  if (!onPath(cxx)) missing.push(`a C++17 compiler (${cxx})`);
  if (!onPath('make')) missing.push('make');
  const python = process.env.PYTHON?.trim() || 'python3';
  if (!onPath(python)) missing.push(`Python 3 (${python})`);
  return missing;
}

function toolsError(missing) {
  return new BuildError(
    `not found on PATH: ${missing.join(', ')}; a build from source needs a C++17 compiler, make and ` +
      'Python 3 (Debian/Ubuntu: apt-get install g++ make python3)',
  );
}

/** `npx simdnorm build`: a build from source in the installed package (or a checkout). */
function buildForUser() {
  const missing = missingTools();
  if (missing.length > 0) throw toolsError(missing);
  console.log('simdnorm: building the native addon from source with node-gyp (about a minute)...');
  const built = buildWithNodeGyp({ quiet: true });
  pruneBuild();
  console.log(`simdnorm: native addon built: ${built}; simdnorm uses it from now on`);
}

/** `npm run build` in a checkout: the addon up to date, incrementally when build/ is configured. */
function buildForDev() {
  const missing = missingTools();
  if (missing.length > 0) {
    console.log(`simdnorm: native addon not built (${toolsError(missing).message}); simdnorm runs on WebAssembly`);
    return;
  }
  const configured = existsSync(join(root, 'build', 'Makefile')) && existsSync(join(root, 'build', 'config.gypi'));
  if (configured && !probe(gypAddon).error) {
    run('node-gyp', nodeGypCommand(), ['build', '-j', jobs], { quiet: false });
    console.log(`simdnorm: native addon up to date: ${checkBuilt(gypAddon)}`);
    return;
  }
  console.log(`simdnorm: native addon built: ${buildWithNodeGyp({ quiet: false })}`);
}

/**
 * After a user's build, build/ keeps only what runs: Release/simdnorm.node (1.2 MB), not node-gyp's
 * objects, static libraries and makefiles (about 3 MB more in the installed package), nor an
 * earlier failure's log.
 */
function pruneBuild() {
  const build = join(root, 'build');
  for (const entry of readdirSync(build)) {
    if (entry !== 'Release') rmSync(join(build, entry), { recursive: true, force: true });
  }
  const release = join(build, 'Release');
  for (const entry of readdirSync(release)) {
    if (entry !== 'simdnorm.node') rmSync(join(release, entry), { recursive: true, force: true });
  }
}

function rememberFailure(reason) {
  try {
    mkdirSync(dirname(failureFile), { recursive: true });
    writeFileSync(failureFile, `${reason}\n`);
  } catch {
    // the reason was printed; info then says what it can without it
  }
}

const [mode, ...extra] = process.argv.slice(2);
try {
  if (mode === undefined) buildForUser();
  else if (mode === '--dev') buildForDev();
  else if (mode === '--gyp') console.log(`simdnorm: native addon built: ${buildWithNodeGyp({ quiet: false, extra })}`);
  else if (mode === '--cmake') console.log(`simdnorm: native addon built: ${buildWithCmakeJs({ extra })}`);
  else throw new BuildError(`unknown option ${mode}; use --dev, --gyp, --cmake or nothing`);
} catch (e) {
  const reason = e instanceof BuildError ? e.message : `unexpected error: ${String(e?.message ?? e).split('\n')[0]}`;
  if (mode === undefined) {
    rememberFailure(reason);
    console.error(`simdnorm: native addon not built: ${reason}`);
    console.error('simdnorm: simdnorm keeps working on WebAssembly (the same results, slower); `npx simdnorm info` shows what is in use');
  } else {
    console.error(`simdnorm: ${reason}`);
  }
  process.exitCode = 1;
}
