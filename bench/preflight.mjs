#!/usr/bin/env node
/**
 * The native preflight (Node only): before the run, each (case, op) of the plan is called once on
 * simdnorm's `native` backend (×1 and all threads) in a CHILD process, on stand-in data of the
 * case's shape. A call that kills the process (a half-built addon: "symbol lookup error", a
 * segfault) cannot be caught in the benchmark's own process, so it is found here: the driver
 * then reports those (case, op) pairs as ERROR for the native contenders, with the child's last
 * words, and the run carries on. A call that merely throws is left to the run (the gate reports
 * it per contender as usual).
 *
 *   run.mjs:  const crashes = preflightNative(root, cases, ops)   → Map 'caseId|op' → reason
 *   child:    node bench/preflight.mjs --child <root> <caseKey:op>...
 */
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { simdnormContenders } from './contenders/simdnorm.mjs';
import { CASES, channelsOf, elementsOf, rowsGeometry, samplesGeometry } from './tasks.mjs';

const here = fileURLToPath(import.meta.url);

/** Arrays of the right lengths with benign values (x, dy in [-1, 1); variances and invStd 1). */
function standInData(c) {
  const Type = c.dtype === 'float64' ? Float64Array : Float32Array;
  const n = elementsOf(c);
  const wave = (length) => {
    const a = new Type(length);
    for (let i = 0; i < length; i++) a[i] = ((i * 7919) % 2000) / 1000 - 1;
    return a;
  };
  const ones = (length) => new Type(length).fill(1);
  const zeros = (length) => new Type(length);
  const data = { x: wave(n), dy: wave(n) };
  if ((c.norm ?? 'batchnorm') === 'batchnorm') {
    const C = channelsOf(c);
    return { ...data, gamma: ones(C), beta: zeros(C), runningMean: zeros(C), runningVar: ones(C), mean: zeros(C), invStd: ones(C) };
  }
  if (c.norm === 'layernorm' || c.norm === 'rmsnorm') {
    const { rows, size } = rowsGeometry(c);
    const stats = { mean: zeros(rows), invStd: ones(rows), invRms: ones(rows) };
    if (c.norm === 'rmsnorm') return { ...data, weight: ones(size), invRms: stats.invRms };
    return { ...data, weight: ones(size), bias: zeros(size), mean: stats.mean, invStd: stats.invStd };
  }
  const g = samplesGeometry(c);
  const count = g.n * g.groups;
  return { ...data, gamma: ones(g.channels), beta: zeros(g.channels), mean: zeros(count), invStd: ones(count) };
}

/** The child: runs each item on native, printing "start i" before and "done i" after. */
async function child(root, items) {
  const api = await import(pathToFileURL(join(root, 'dist', 'index.js')).href);
  await api.ready();
  const natives = simdnormContenders(api).filter((k) => k.id.startsWith('native') && !k.unavailable);
  for (const [i, item] of items.entries()) {
    const [key, op] = item.split(':');
    const c = CASES[key];
    const task = { case: c, op, mode: 'sync', data: standInData(c) };
    process.stdout.write(`start ${i}\n`);
    for (const k of natives) {
      let runner;
      try {
        runner = await k.formulations(task)[0].prepare(task);
        await runner.enter?.();
        await runner.run();
      } catch {
        // a throw is reported by the run itself
      } finally {
        await runner?.dispose?.();
      }
    }
    process.stdout.write(`done ${i}\n`);
  }
}

/**
 * Runs the preflight over `items` ({ key, op } with key a CASES key); returns a Map
 * `${case.id}|${op}` → why the process died, for each call that killed its child.
 * @param {string} root  the package root (dist/ is loaded from there)
 */
export function preflightNative(root, items, log = () => {}) {
  const crashes = new Map();
  let rest = items.map(({ key, op }) => `${key}:${op}`);
  while (rest.length) {
    const r = spawnSync(process.execPath, [here, '--child', root, ...rest], { encoding: 'utf8', maxBuffer: 1 << 24, timeout: 120_000 });
    const lines = (r.stdout ?? '').split('\n');
    const started = lines.filter((l) => l.startsWith('start ')).map((l) => Number(l.slice(6)));
    const done = new Set(lines.filter((l) => l.startsWith('done ')).map((l) => Number(l.slice(5))));
    const crashed = started.find((i) => !done.has(i));
    if (r.status === 0 && crashed === undefined) break;
    if (crashed === undefined) {
      // Died before the first item (loading): nothing to attribute; the run will report it.
      log(`native preflight: the child failed before its first call (${lastLine(r)}); not attributed`);
      break;
    }
    const [key, op] = rest[crashed].split(':');
    const why = `killed the process (preflight child: ${lastLine(r)})`;
    crashes.set(`${CASES[key].id}|${op}`, why);
    log(`native preflight: ${CASES[key].label} ${op} — ${why}`);
    rest = rest.slice(crashed + 1);
  }
  return crashes;
}

function lastLine(r) {
  const text = `${r.stderr ?? ''}`.trim().split('\n').filter(Boolean).pop();
  const how = r.signal ? `signal ${r.signal}` : r.error ? r.error.message : `exit code ${r.status}`;
  return text ? `${text.slice(0, 240)}; ${how}` : how;
}

if (process.argv[2] === '--child') {
  child(process.argv[3], process.argv.slice(4)).then(
    () => process.exit(0),
    (e) => {
      console.error(e instanceof Error ? e.message : String(e));
      process.exit(1);
    },
  );
}
