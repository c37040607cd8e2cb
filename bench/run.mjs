#!/usr/bin/env node
/**
 * `npm run bench` — the Node driver. Loads simdnorm (dist/, after `npm run build`) and every
 * peer it can, runs the suite, prints the table, and writes JSON + SVG.
 *
 *   npm run bench                   full run (BatchNorm and the family; longer): bench/results/latest.{json,svg}
 *   npm run bench -- --quick        ~2 min on 2 cores: 3 BatchNorm cases and one per family op, fewer rounds, no sweep; results in the OS temp dir
 *   npm run bench -- --readme       full run, then regenerate the README's benchmark section (summary) and bench/RESULTS.md (every table)
 *   npm run bench -- --readme-only  regenerate both from bench/results/latest.json
 *   npm run bench -- --quick --results-md   write bench/RESULTS.md (only; README.md untouched) from
 *                                   this run, its JSON/SVG in bench/results/ (quick.* or latest.*)
 *   options: --out DIR  --cases nchw,ln-8192x768,...  --json (print the JSON instead of the table)
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { svgChart } from './chart.mjs';
import { backendFacts, simdnormContenders } from './contenders/simdnorm.mjs';
import { onnxruntimeContenders } from './contenders/onnxruntime.mjs';
import { plainJsContender } from './contenders/plainjs.mjs';
import { initTfjs, tfjsContenders } from './contenders/tfjs.mjs';
import { machineFacts } from './machine.mjs';
import { fullReport, readmeSection, resultsDocument } from './report.mjs';
import { preflightNative } from './preflight.mjs';
import { PROFILES, runSuite } from './suite.mjs';
import { CASES, opsOf } from './tasks.mjs';

const root = fileURLToPath(new URL('..', import.meta.url));
const message = (e) => (e instanceof Error ? e.message : String(e)).split('\n')[0];

const { values: args } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    readme: { type: 'boolean', default: false },
    'readme-only': { type: 'boolean', default: false },
    'results-md': { type: 'boolean', default: false },
    out: { type: 'string' },
    cases: { type: 'string' },
    json: { type: 'boolean', default: false },
  },
});

// ---------------------------------------------------------------------------------------------
// Progress: transient lines are overwritten on a terminal and left out elsewhere.

let transientShown = false;
function log(line, transient = false) {
  if (transient && !process.stderr.isTTY) return;
  const width = process.stderr.columns || 120;
  const text = transient && [...line].length > width - 1 ? [...line].slice(0, width - 2).join('') + '…' : line;
  process.stderr.write(`${transientShown ? '\r\x1b[2K' : ''}${text}${transient ? '' : '\n'}`);
  transientShown = transient;
}

// ---------------------------------------------------------------------------------------------
// Loading: simdnorm through its public API, the native addon for the bandwidth probes, peers.

async function loadSimdnorm() {
  const dist = join(root, 'dist');
  if (!existsSync(join(dist, 'index.js'))) {
    console.error('simdnorm bench: dist/ is missing — run `npm run build` first.');
    process.exit(1);
  }
  const load = (file) => import(pathToFileURL(join(dist, file)).href);
  const [api, compare, { Random }] = await Promise.all([load('index.js'), load('compare.js'), load('random.js')]);
  await api.ready();
  // The zero-copy wasm arrays: exported by the package, or its wasm backend module.
  let wasmMemory = api.wasmMemory;
  if (!wasmMemory && api.backends().some((b) => b.name === 'wasm' && b.available)) {
    wasmMemory = await load('backends/wasm.js').then((m) => m.wasmMemory, () => undefined);
  }
  return { api, compare, Random, wasmMemory, load };
}

/** The raw addon's bandwidth probes, or null (with the reason) when it cannot load. */
async function loadNativeProbe(load) {
  try {
    const mod = await load('backends/native.js');
    const loaded = mod.loadNativeBinding();
    const binding = loaded.binding ?? loaded;
    if (typeof binding.copyBytes !== 'function' || typeof binding.readFloats !== 'function') {
      return { native: null, reason: 'the addon has no copyBytes/readFloats' };
    }
    return { native: binding, reason: null };
  } catch (e) {
    return { native: null, reason: message(e) };
  }
}

/** Imports a module with console output silenced (tfjs greets Node users on import). */
async function quietly(fn) {
  const saved = { log: console.log, warn: console.warn, info: console.info };
  console.log = console.warn = console.info = () => {};
  try {
    return await fn();
  } finally {
    Object.assign(console, saved);
  }
}

/**
 * tfjs with gradients registered (@tensorflow/tfjs, which tf.grads needs in Node) and the wasm
 * backend; `errors` names each backend that failed to load or initialise.
 */
async function loadTfjs() {
  let tf;
  try {
    tf = await quietly(() => import('@tensorflow/tfjs'));
  } catch (e) {
    const why = `@tensorflow/tfjs: ${message(e)}`;
    return { tf: null, errors: { cpu: why, wasm: why } };
  }
  let wasm = null;
  const errors = {};
  try {
    wasm = await quietly(() => import('@tensorflow/tfjs-backend-wasm'));
  } catch (e) {
    errors.wasm = `@tensorflow/tfjs-backend-wasm: ${message(e)}`;
  }
  Object.assign(errors, await quietly(() => initTfjs(tf, wasm ? ['cpu', 'wasm'] : ['cpu'], { wasm })));
  return { tf, errors };
}

/** An onnxruntime package as a peer (see contenders/onnxruntime.mjs), or its load error. */
async function loadOrt(id, threads) {
  try {
    const ort = await import(id);
    if (id === 'onnxruntime-node') {
      const sessionOptions = { executionProviders: ['cpu'], intraOpNumThreads: threads, graphOptimizationLevel: 'all' };
      return { id, ort, preallocate: true, sessionOptions };
    }
    ort.env.wasm.numThreads = threads; // its worker threads run in Node too
    // onnxruntime-web ignores pre-allocated outputs: each run allocates its own.
    return { id, ort, preallocate: false, sessionOptions: { executionProviders: ['wasm'], graphOptimizationLevel: 'all' } };
  } catch (e) {
    return { id, error: `${id}: ${message(e)}` };
  }
}

async function loadPeers(threads) {
  const { tf, errors } = await loadTfjs();
  const ort = [await loadOrt('onnxruntime-node', threads), await loadOrt('onnxruntime-web', threads)];
  return [...tfjsContenders(tf, { errors }), ...onnxruntimeContenders(ort)];
}

// ---------------------------------------------------------------------------------------------
// Output files

const README_START = '<!-- bench:start -->';
const README_END = '<!-- bench:end -->';

/** bench/RESULTS.md: every table of the run, linking its JSON and SVG. */
function writeResultsDocument(results, jsonFile, svgFile) {
  const resultsFile = join(root, 'bench', 'RESULTS.md');
  const here = dirname(resultsFile);
  writeFileSync(resultsFile, resultsDocument(results, { jsonPath: relative(here, jsonFile), svgPath: relative(here, svgFile) }));
  log(`${relative(root, resultsFile)}: regenerated from ${relative(root, jsonFile)}`);
}

/** Replaces exactly the README's section between the bench markers. */
function writeReadme(results, jsonFile, svgFile) {
  const path = join(root, 'README.md');
  const text = readFileSync(path, 'utf8');
  const start = text.indexOf(README_START);
  const end = text.indexOf(README_END);
  if (start < 0 || end < start) throw new Error(`README.md has no ${README_START} … ${README_END} section`);
  const resultsFile = join(root, 'bench', 'RESULTS.md');
  const section = readmeSection(results, { jsonPath: relative(root, jsonFile), svgPath: relative(root, svgFile), resultsPath: relative(root, resultsFile) });
  writeFileSync(path, `${text.slice(0, start + README_START.length)}\n${section}\n${text.slice(end)}`);
  const here = dirname(resultsFile);
  writeFileSync(resultsFile, resultsDocument(results, { jsonPath: relative(here, jsonFile), svgPath: relative(here, svgFile) }));
  log(`README.md: benchmark section regenerated from ${relative(root, jsonFile)}; the full tables in ${relative(root, resultsFile)}`);
}

function writeResults(results, dir, name) {
  mkdirSync(dir, { recursive: true });
  const jsonFile = join(dir, `${name}.json`);
  const svgFile = join(dir, `${name}.svg`);
  writeFileSync(jsonFile, `${JSON.stringify(results, null, 1)}\n`);
  writeFileSync(svgFile, svgChart(results));
  log(`wrote ${jsonFile}\nwrote ${svgFile}`);
  return { jsonFile, svgFile };
}

// ---------------------------------------------------------------------------------------------

async function main() {
  const defaultDir = join(root, 'bench', 'results');
  if (args['readme-only']) {
    const jsonFile = join(args.out ?? defaultDir, 'latest.json');
    writeReadme(JSON.parse(readFileSync(jsonFile, 'utf8')), jsonFile, jsonFile.replace(/\.json$/, '.svg'));
    return;
  }
  const profileName = args.quick ? 'quick' : 'full';
  const profile = PROFILES[profileName];
  const threads = os.availableParallelism?.() ?? os.cpus().length;
  const loadBefore = os.loadavg()[0];
  log(`simdnorm bench (${profileName}): loading simdnorm and peers…`);
  const { api, compare, Random, wasmMemory, load } = await loadSimdnorm();
  const { native, reason: nativeReason } = await loadNativeProbe(load);
  if (!native) log(`bandwidth probes: native addon unavailable (${nativeReason}); using a JS copy`);
  // A half-built addon can kill the process on an op (no exception to catch): each (case, op)
  // is tried once on native in a child process first; those that crash are reported, not run.
  const caseKeys = (args.cases?.split(',') ?? profile.cases).filter((k) => CASES[k]);
  let crashes = new Map();
  if (api.backends().some((b) => b.name === 'native' && b.available)) {
    log('native preflight: each case and op once in a child process…', true);
    crashes = preflightNative(root, caseKeys.flatMap((key) => opsOf(CASES[key]).map((op) => ({ key, op }))), log);
  }
  const contenders = [...simdnormContenders(api, { wasmMemory, crashes }), plainJsContender(), ...(await loadPeers(threads))];
  for (const c of contenders.filter((k) => k.unavailable)) log(`  missing: ${c.label} — ${c.unavailable}`);

  const suite = await runSuite(profile, { api, compare, Random, contenders, native, threads, log, only: args.cases?.split(',') });
  const results = {
    schema: 'simdnorm-bench/1',
    date: new Date().toISOString().slice(0, 16).replace('T', ' ') + ' UTC',
    environment: 'node',
    quick: args.quick,
    profile: profileName,
    ...machineFacts(root),
    // Other processes make the numbers noisier: the 1-minute load average at the start and the
    // end (the run itself adds up to the number of threads it keeps busy).
    loadAverage: { start: loadBefore, end: os.loadavg()[0] },
    simdnorm: backendFacts(api),
    settings: profile.settings,
    tolerance: compare.TOLERANCE,
    ...(profile.sweepSettings ? { sweepSettings: profile.sweepSettings } : {}),
    nativeProbe: native ? 'native addon' : `JS copy (${nativeReason})`,
    nativePreflight: [...crashes].map(([task, reason]) => ({ task, reason })),
    contenders: contenders.map(({ id, label, kind, unavailable }) => ({ id, label, kind, ...(unavailable ? { unavailable } : {}) })),
    ...suite,
  };
  log(`done in ${suite.seconds.toFixed(0)} s`);
  if (args.json) console.log(JSON.stringify(results, null, 1));
  else console.log(`\n${fullReport(results)}\n`);

  const partial = Boolean(args.cases);
  const dir = args.out ?? (args['results-md'] ? defaultDir : args.quick || partial ? join(os.tmpdir(), 'simdnorm-bench') : defaultDir);
  const { jsonFile, svgFile } = writeResults(results, dir, args.quick ? 'quick' : partial ? 'partial' : 'latest');
  if (args.readme) {
    if (args.quick || partial) log('--readme needs a full run: README not changed');
    else writeReadme(results, jsonFile, svgFile);
  }
  if (args['results-md'] && !args.readme) {
    if (partial) log('--results-md needs every case of the profile: bench/RESULTS.md not changed');
    else writeResultsDocument(results, jsonFile, svgFile);
  }
}

main().then(
  () => process.exit(0), // worker pools of peers (onnxruntime-web) would keep Node alive
  (e) => {
    console.error(e);
    process.exit(1);
  },
);
