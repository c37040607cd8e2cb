#!/usr/bin/env node
/**
 * The `simdnorm` command: info, verify, bench (see HELP below). Results go to stdout (text, or
 * JSON with --json); help and --version to stdout with exit 0; progress goes to stderr, and only
 * when stderr is a terminal; errors go to stderr with exit 2 (1: verify found a mismatch).
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { delimiter, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { bench, type BenchTiming } from './bench.js';
import type { BackendName } from './backend.js';
import { backends, ready, verify, type BackendStatus } from './index.js';
import { closestName } from './validate.js';
import { findPrebuild } from './backends/native.js';

/** The package root: dist/cli.js (or lib/cli.ts) is one level down. */
const ROOT = fileURLToPath(new URL('../', import.meta.url));

function version(): string {
  try {
    return (JSON.parse(readFileSync(`${ROOT}package.json`, 'utf8')) as { version: string }).version;
  } catch {
    return 'unknown';
  }
}

interface FlagSpec {
  /** takes a value (--cases 10 or --cases=10) */
  value?: string;
  help: string;
}

interface CommandSpec {
  summary: string;
  usage: string;
  description: string;
  flags: Record<string, FlagSpec>;
}

const BACKEND_LIST = 'native, wasm, js';

const COMMANDS: Record<string, CommandSpec> = {
  info: {
    summary: 'the backends, the one in use, and why any is unavailable',
    usage: 'simdnorm info [--json]',
    description:
      'Lists each backend (native: the C++ SIMD addon; wasm: the same kernels as WebAssembly; js: the\n' +
      'TypeScript reference), marks the one calls use, shows its SIMD level and threads, and says why\n' +
      'any backend is unavailable and what to do about it. Never fails because of SIMDNORM_BACKEND:\n' +
      'a forced backend that cannot load is reported, not fatal.',
    flags: { '--json': { help: 'the list as JSON on stdout' } },
  },
  verify: {
    summary: 'check every available backend against the float64 reference',
    usage: 'simdnorm verify [--cases N] [--seed N] [--backend NAME]... [--json] [--quiet]',
    description:
      'Runs random cases (every op, layout, dtype, affine and ReLU setting) on each available backend\n' +
      'and compares every output with the float64 reference. Exit 0 when every backend conforms, 1 on\n' +
      'a mismatch (the report names the case and the worst element). Progress on stderr when it is a\n' +
      'terminal.',
    flags: {
      '--cases': { value: 'N', help: 'random cases per backend, an integer >= 1 (default 60)' },
      '--seed': { value: 'N', help: 'the random seed, an integer >= 0 (default fixed, so runs repeat)' },
      '--backend': { value: 'NAME', help: `check only this backend (${BACKEND_LIST}); repeat for several` },
      '--json': { help: 'the report as JSON on stdout' },
      '--quiet': { help: 'no progress on stderr' },
    },
  },
  bench: {
    summary: "a quick benchmark of this installation's backends (no extra packages)",
    usage: 'simdnorm bench [--dtype float32|float64] [--rounds N] [--backend NAME]... [--json] [--quiet]',
    description:
      'Times training forward, inference and backward on three tensors (NCHW [16,64,32,32], NHWC\n' +
      '[16,32,32,64], NC [256,1024]) on each available backend: warm-up, interleaved rounds, median\n' +
      '(min–max) per call, and "÷copy": the time over a same-run copy of the tensor scaled to the bytes\n' +
      'the op moves (1.00 = as fast as memory allows). Takes 10–60 s, mostly for the js backend.\n' +
      'Progress on stderr when it is a terminal. (The comparison with tfjs and onnxruntime is the\n' +
      "repository's `npm run bench`.)",
    flags: {
      '--dtype': { value: 'float32|float64', help: 'element type (default float32)' },
      '--rounds': { value: 'N', help: 'interleaved rounds, an integer >= 1 (default 7)' },
      '--backend': { value: 'NAME', help: `time only this backend (${BACKEND_LIST}); repeat for several` },
      '--json': { help: 'the timings as JSON on stdout' },
      '--quiet': { help: 'no progress on stderr' },
    },
  },
  build: {
    summary: 'build the native addon from source (where no prebuilt one fits)',
    usage: 'simdnorm build',
    description:
      'Compiles the native addon for this platform and Node with node-gyp (offline, about a minute)\n' +
      'into the installed package\'s build/Release/simdnorm.node, which simdnorm then loads in place of\n' +
      'any prebuilt one. Needs a C++17 compiler, make and Python 3 (Debian/Ubuntu: apt-get install g++\n' +
      'make python3). Run it from your project (npx simdnorm build), again after a Node major upgrade.\n' +
      'On failure: exit 1, the line that says why (remembered for simdnorm info) and the path of the\n' +
      'whole output; simdnorm keeps working on WebAssembly.',
    flags: {},
  },
  help: {
    summary: 'this help, or a command\'s: simdnorm help <command>',
    usage: 'simdnorm help [command]',
    description: 'The commands and their options (also: simdnorm --help, simdnorm <command> --help).',
    flags: {},
  },
};

const COMMON_FLAGS: Record<string, FlagSpec> = {
  '--help': { help: 'this help (also -h)' },
};

function mainHelp(): string {
  const width = Math.max(...Object.keys(COMMANDS).map((c) => c.length));
  return [
    `simdnorm ${version()} — Batch Normalization kernels: native SIMD addon, WebAssembly, TypeScript reference`,
    '',
    'usage: simdnorm <command> [options]',
    '',
    'commands:',
    ...Object.entries(COMMANDS).map(([name, c]) => `  ${name.padEnd(width)}  ${c.summary}`),
    '',
    'options:',
    '  -h, --help     help; simdnorm <command> --help for a command\'s options',
    '  -v, --version  the version',
    '',
    'environment:',
    `  SIMDNORM_BACKEND=auto|${BACKEND_LIST.replace(/, /g, '|')}  the backend calls use (default auto: native, else wasm, else js)`,
    '  SIMDNORM_NATIVE_PATH=<file>  try this native addon file first',
    '',
    'exit status: 0 ok, 1 verify found a mismatch, 2 a usage or setup error',
  ].join('\n');
}

function commandHelp(name: string): string {
  const c = COMMANDS[name];
  const flags = { ...c.flags, ...COMMON_FLAGS };
  const left = (f: string, s: FlagSpec) => `${f}${s.value ? ` ${s.value}` : ''}`;
  const width = Math.max(...Object.entries(flags).map(([f, s]) => left(f, s).length));
  return [
    `usage: ${c.usage}`,
    '',
    c.description,
    '',
    'options:',
    ...Object.entries(flags).map(([f, s]) => `  ${left(f, s).padEnd(width)}  ${s.help}`),
  ].join('\n');
}

/** A usage error: printed with a pointer to the help, exit 2. */
class UsageError extends Error {}

interface Parsed {
  flags: Map<string, string[]>;
  help: boolean;
}

/** Parses a command's arguments against its flags; unknown ones are named with the nearest valid one. */
function parseArgs(command: string, args: string[]): Parsed {
  const spec = COMMANDS[command].flags;
  const flags = new Map<string, string[]>();
  let help = false;
  for (let i = 0; i < args.length; i++) {
    const arg = args[i];
    if (arg === '--help' || arg === '-h') {
      help = true;
      continue;
    }
    const eq = arg.indexOf('=');
    const name = arg.startsWith('--') && eq > 0 ? arg.slice(0, eq) : arg;
    const flag = spec[name];
    if (!flag) {
      const known = [...Object.keys(spec), '--help'];
      const guess = closestName(name.replace(/^-+/, ''), known.map((k) => k.slice(2)));
      const what = arg.startsWith('-') ? `unknown option ${name}` : `unexpected argument '${arg}'`;
      throw new UsageError(
        `simdnorm ${command}: ${what}${guess ? `; did you mean --${guess}?` : ''} (options: ${known.join(', ')})`,
      );
    }
    let value: string | undefined;
    if (flag.value) {
      value = eq > 0 && arg.startsWith('--') ? arg.slice(eq + 1) : args[++i];
      if (value === undefined || (eq < 0 && value.startsWith('--'))) {
        throw new UsageError(`simdnorm ${command}: ${name} needs a value (${flag.value})`);
      }
    } else if (eq > 0) {
      throw new UsageError(`simdnorm ${command}: ${name} takes no value`);
    }
    flags.set(name, [...(flags.get(name) ?? []), value ?? '']);
  }
  return { flags, help };
}

function integer(p: Parsed, name: string, min: number): number | undefined {
  const values = p.flags.get(name);
  if (!values) return undefined;
  const text = values[values.length - 1];
  const n = Number(text);
  if (text.trim() === '' || !Number.isSafeInteger(n) || n < min) {
    throw new UsageError(`${name} must be an integer >= ${min}, received '${text}'`);
  }
  return n;
}

function backendList(p: Parsed): BackendName[] | undefined {
  const values = p.flags.get('--backend');
  if (!values) return undefined;
  const names = values.flatMap((v) => v.split(',')).map((v) => v.trim());
  for (const n of names) {
    if (n !== 'native' && n !== 'wasm' && n !== 'js') {
      const guess = closestName(n, ['native', 'wasm', 'js']);
      throw new UsageError(`--backend must be one of ${BACKEND_LIST}, received '${n}'${guess ? `; did you mean ${guess}?` : ''}`);
    }
  }
  return names as BackendName[];
}

/** Progress on stderr, on one rewritten line, only when stderr is a terminal (and not --quiet). */
function progressLine(p: Parsed): { update(text: string): void; done(): void } {
  const on = process.stderr.isTTY === true && !p.flags.has('--quiet');
  let last = 0;
  let shown = false;
  return {
    update(text) {
      if (!on) return;
      const t = Date.now();
      if (t - last < 100) return;
      last = t;
      shown = true;
      const columns = process.stderr.columns || 80;
      process.stderr.write(`\r\x1b[K${text.slice(0, columns - 1)}`);
    },
    done() {
      if (on && shown) process.stderr.write('\r\x1b[K');
    },
  };
}

// ---------------------------------------------------------------------------------------------
// info

/** Whether this copy of simdnorm is installed in a project (under node_modules), not a checkout. */
function installedAsDependency(): boolean {
  return /[\\/]node_modules[\\/]/.test(ROOT);
}

/** The first line of a file, or '' when it cannot be read. */
function firstLine(file: string): string {
  try {
    return readFileSync(file, 'utf8').split('\n')[0].trim();
  } catch {
    return '';
  }
}

/**
 * Why native is unavailable, in words a user can act on from their own project, and what to do.
 * The package has no install script, so nothing happens at install time to remember: the reasons
 * are what the loader found (lib/backends/native.ts: each candidate file and why it was refused —
 * another Node major, a stale C ABI), whether a prebuild fits this platform, and the line the last
 * failed `simdnorm build` left in build/native-build-failure.txt (native/build.mjs).
 */
export function explainNative(status: BackendStatus): string[] {
  const reason = status.reason ?? '';
  const dependency = installedAsDependency();
  const sourceAddon = `${ROOT}build/Release/simdnorm.node`;
  const failureFile = `${ROOT}build/native-build-failure.txt`;
  const buildCommand = dependency ? '`npx simdnorm build` in your project' : '`npm run build` in this checkout';
  const lines: string[] = [];
  const attempts = reason.split('\n').slice(1).map((l) => l.trim()).filter(Boolean);
  const why = (attempt: string) => attempt.replace(/^.*?\.node: /, '');
  const envPath = process.env.SIMDNORM_NATIVE_PATH;
  if (envPath) {
    const own = attempts.find((a) => !a.startsWith(ROOT));
    if (own) lines.push(`SIMDNORM_NATIVE_PATH: ${own}`);
  }
  // An addon built from source here (it takes precedence over the prebuilds).
  const sourceAttempt = attempts.find((a) => a.startsWith(`${sourceAddon}: `));
  if (sourceAttempt && existsSync(sourceAddon)) {
    const text = why(sourceAttempt);
    if (/\bstale\b/.test(text)) {
      lines.push(`the addon built from source (build/Release/simdnorm.node) is stale: ${text.replace(/^it is stale: /, '')}; rebuild it: ${buildCommand}`);
    } else if (/NODE_MODULE_VERSION|different Node\.js version|(built|compiled) for Node/i.test(text)) {
      lines.push(`the addon built from source was built for another Node.js version than this one (${process.version}): ${text}; rebuild it: ${buildCommand}`);
    } else {
      lines.push(`the addon built from source (build/Release/simdnorm.node) does not load: ${text}`);
    }
  } else if (!dependency && !existsSync(sourceAddon)) {
    lines.push('the addon is not built in this checkout');
  }
  // The prebuilt addons shipped in the package (prebuilds/<platform>-<arch>/node.abi<N>.<libc>.node).
  const prebuildAttempt = attempts.find((a) => /[\\/]prebuilds[\\/]/.test(a.split(': ')[0]));
  if (prebuildAttempt) {
    const file = prebuildAttempt.split(': ')[0].replace(ROOT, '');
    const text = why(prebuildAttempt);
    lines.push(
      /\bstale\b/.test(text)
        ? `the prebuilt addon ${file} is stale, from another simdnorm release (reinstall simdnorm): ${text.replace(/^it is stale: /, '')}`
        : `the prebuilt addon ${file} fits this platform but does not load here: ${text}`,
    );
  } else {
    const { reason: none } = findPrebuild(ROOT);
    if (none) {
      lines.push(
        `no prebuilt addon for this platform and Node (${process.platform}-${process.arch}, Node ${process.version}, ` +
          `Node ABI ${process.versions.modules}): the package's prebuilds are for ${prebuildList() || 'no platform'}`,
      );
    }
  }
  // The last `simdnorm build`, when it failed.
  const failure = existsSync(failureFile) ? firstLine(failureFile) : '';
  if (failure) lines.push(`the last \`simdnorm build\` failed: ${failure}`);
  else if (!existsSync(sourceAddon) && dependency) lines.push('and no addon was built from source here (`npx simdnorm build`)');
  const tools = missingBuildTools();
  const needs = 'a C++17 compiler, make and Python 3 (Debian/Ubuntu: apt-get install g++ make python3)';
  const lacking = tools.length > 0 ? `; missing here: ${tools.join(', ')}` : '';
  lines.push(`to build it from source: ${buildCommand}, which needs ${needs}${lacking}`);
  if (!dependency) {
    for (const a of attempts) if (a !== sourceAttempt && a !== prebuildAttempt) lines.push(`also tried ${a}`);
  }
  lines.push('meanwhile the wasm backend gives the same results, about 1.5–3× slower on large tensors');
  return lines;
}

/** The build tools not on PATH (as native/build.mjs checks them before a build). */
function missingBuildTools(): string[] {
  if (process.platform === 'win32') return [];
  const dirs = (process.env.PATH ?? '').split(delimiter).filter(Boolean);
  const onPath = (name: string) => (name.includes('/') ? existsSync(name) : dirs.some((d) => existsSync(join(d, name))));
  const cxx = process.env.CXX?.trim().split(/\s+/)[0] || 'g++';
  const python = process.env.PYTHON?.trim() || 'python3';
  return [cxx, 'make', python].filter((tool) => !onPath(tool));
}

/** The prebuilt addons in this package, as `linux-x64 (abi 115, 127), linux-arm64 (abi 115)`. */
function prebuildList(): string {
  const dir = `${ROOT}prebuilds`;
  if (!existsSync(dir)) return '';
  return readdirSync(dir)
    .sort()
    .map((tuple) => {
      const abis = readdirSync(`${dir}/${tuple}`)
        .map((f) => /\babi(\d+)\b.*?(glibc|musl)?\.node$/.exec(f))
        .filter((m) => m !== null)
        .map((m) => `${m[1]}${m[2] ? ` ${m[2]}` : ''}`);
      return `${tuple} (Node ABI ${abis.join(', ')})`;
    })
    .join(', ');
}

/** Where the loaded native addon comes from, in words: the prebuild it is, or the source build. */
function nativeOrigin(details: Record<string, unknown>): string {
  const path = String(details.path ?? '');
  const rel = path.startsWith(ROOT) ? path.slice(ROOT.length) : path;
  if (details.origin === 'prebuild') {
    return `prebuilt addon ${rel} (for ${process.platform}-${process.arch}, Node ABI ${process.versions.modules})`;
  }
  return `built from source: ${rel}`;
}

function info(p: Parsed): number {
  let problem: string | undefined;
  let exit = 0;
  const env = process.env.SIMDNORM_BACKEND?.trim();
  const list = backends();
  if (env && env !== 'auto') {
    if (env !== 'native' && env !== 'wasm' && env !== 'js') {
      const guess = closestName(env, ['native', 'wasm', 'js', 'auto']);
      problem = `SIMDNORM_BACKEND must be one of auto, ${BACKEND_LIST}, received '${env}'${guess ? `; did you mean ${guess}?` : ''}: every call would throw`;
      exit = 2;
    } else if (!list.find((b) => b.name === env)?.available) {
      problem = `SIMDNORM_BACKEND=${env} forces a backend that is not available here: every call would throw (unset it, or choose an available one)`;
    }
  }
  if (p.flags.has('--json')) {
    const out = list.map(({ error: _error, ...rest }) => rest);
    console.log(JSON.stringify(out, null, 2)); // the same shape whatever the environment
    if (problem) console.error(`simdnorm: ${problem}`);
    return exit;
  }
  console.log(`simdnorm ${version()} — node ${process.version}, ${process.platform}-${process.arch}`);
  for (const b of list) {
    const mark = b.current ? '*' : ' ';
    if (b.available) {
      const entries = Object.entries(b.details ?? {}).filter(([k]) => b.name !== 'native' || (k !== 'path' && k !== 'origin'));
      const what = entries.map(([k, v]) => `${k}=${String(v)}`).join(' ');
      console.log(`${mark} ${b.name.padEnd(6)} ${what}`);
      if (b.name === 'native' && b.details) console.log(`         ${nativeOrigin(b.details)}`);
    } else if (b.name === 'native') {
      const [first, ...rest] = explainNative(b);
      console.log(`${mark} ${b.name.padEnd(6)} unavailable: ${first}`);
      for (const line of rest) console.log(`         ${line}`);
    } else {
      console.log(`${mark} ${b.name.padEnd(6)} unavailable: ${b.reason}`);
    }
  }
  console.log(`(* = in use; force one with SIMDNORM_BACKEND=${BACKEND_LIST.replace(/, /g, '|')})`);
  if (problem) {
    console.log(`! ${problem}`);
    if (exit) console.error(`simdnorm: ${problem}`);
  }
  return exit;
}

// ---------------------------------------------------------------------------------------------
// verify and bench

function runVerify(p: Parsed): number {
  const progress = progressLine(p);
  let report;
  try {
    report = verify({
      cases: integer(p, '--cases', 1),
      seed: integer(p, '--seed', 0),
      backends: backendList(p),
      onProgress: (done, total, backend) => progress.update(`simdnorm verify: ${done}/${total} cases (${backend})`),
    });
  } finally {
    progress.done();
  }
  if (p.flags.has('--json')) {
    console.log(JSON.stringify(report, null, 2));
  } else {
    // The loader's reason for native speaks to a checkout; say it in a user's words (as info does).
    const native = report.unavailable.find((u) => u.backend === 'native');
    const status = native && backends().find((b) => b.name === 'native');
    const text = status
      ? report.text.replace(/^( {2}native\s+not checked: ).*$/m, `$1${explainNative(status)[0]} (simdnorm info says what to do)`)
      : report.text;
    console.log(text);
  }
  return report.ok ? 0 : 1;
}

function runBench(p: Parsed): number {
  const dtypes = p.flags.get('--dtype');
  const dtype = dtypes?.[dtypes.length - 1] ?? 'float32';
  if (dtype !== 'float32' && dtype !== 'float64') throw new UsageError(`--dtype must be float32 or float64, received '${dtype}'`);
  const progress = progressLine(p);
  let report;
  try {
    report = bench({
      dtype,
      rounds: integer(p, '--rounds', 1),
      backends: backendList(p),
      onProgress: (done, total, what) => progress.update(`simdnorm bench: ${Math.floor((100 * done) / total)}% ${what}`),
    });
  } finally {
    progress.done();
  }
  if (p.flags.has('--json')) {
    const round = (t: BenchTiming) => ({ ...t });
    console.log(JSON.stringify({ ...report, text: undefined, timings: report.timings.map(round) }, null, 2));
  } else {
    console.log(report.text);
  }
  return 0;
}

// ---------------------------------------------------------------------------------------------
// build

/** `simdnorm build`: native/build.mjs in this package (it prints its own progress and reason). */
function buildNative(): number {
  const result = spawnSync(process.execPath, [`${ROOT}native/build.mjs`], { stdio: 'inherit' });
  if (result.error) throw new Error(`could not run native/build.mjs: ${result.error.message}`);
  return result.status === 0 ? 0 : 1;
}

// ---------------------------------------------------------------------------------------------

async function main(argv: string[]): Promise<number> {
  const [command, ...args] = argv;
  if (command === undefined || command === '--help' || command === '-h') {
    console.log(mainHelp());
    return 0;
  }
  if (command === '--version' || command === '-v' || command === 'version') {
    console.log(version());
    return 0;
  }
  if (command === 'help') {
    const topic = args[0];
    if (topic === undefined) console.log(mainHelp());
    else if (COMMANDS[topic]) console.log(commandHelp(topic));
    else throw unknownCommand(topic);
    return 0;
  }
  if (!Object.prototype.hasOwnProperty.call(COMMANDS, command)) throw unknownCommand(command);
  const parsed = parseArgs(command, args);
  if (parsed.help) {
    console.log(commandHelp(command));
    return 0;
  }
  if (command === 'build') return buildNative();
  if (command === 'info') {
    try {
      await ready();
    } catch {
      // a forced backend that cannot load, or a bad SIMDNORM_BACKEND: info reports it
    }
    return info(parsed);
  }
  await ready();
  if (command === 'verify') return runVerify(parsed);
  return runBench(parsed);
}

function unknownCommand(name: string): UsageError {
  const guess = closestName(name.replace(/^-+/, ''), Object.keys(COMMANDS));
  const what = name.startsWith('-') ? `unknown option ${name}` : `unknown command '${name}'`;
  return new UsageError(`simdnorm: ${what}${guess ? `; did you mean ${guess}?` : ''} (commands: ${Object.keys(COMMANDS).join(', ')}; simdnorm --help)`);
}

// The exit code, not a call of process.exit: in Node 24 that can deadlock when a V8 background
// compile job waits for a garbage collection the exiting main thread never runs
// (nodejs/node#54918); a natural end disposes of the isolate first, which releases such jobs.
// Nothing of ours keeps the event loop alive (the WebAssembly workers are unref'd).
main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (e: unknown) => {
    if (e instanceof UsageError) {
      console.error(e.message.startsWith('simdnorm') ? e.message : `simdnorm: ${e.message}`);
    } else {
      const message = e instanceof Error ? e.message : String(e);
      console.error(message.startsWith('simdnorm:') ? message : `simdnorm: ${message}`);
    }
    process.exitCode = 2;
  },
);
