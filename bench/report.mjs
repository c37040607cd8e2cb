/**
 * Output as text: the terminal table (also shown by the browser page), the summary of best
 * simdnorm backend vs best peer vs the bandwidth bound, the notes (what was wrong, unavailable,
 * not applicable, which formulation was timed), and the README section. Pure functions over the
 * results object the drivers build (see run.mjs); the SVG chart is in chart.mjs.
 *
 * @typedef {import('./runner.mjs').TaskResult} TaskResult
 * @typedef {import('./runner.mjs').ContenderResult} ContenderResult
 */
import { ALL_OPS, OP_LABEL, caseName, displayRank, formatCount } from './tasks.mjs';
import { fastest } from './runner.mjs';

// ---------------------------------------------------------------------------------------------
// Numbers

const sig = (v, digits = 3) => (v >= 10 ** digits ? v.toFixed(0) : v.toPrecision(digits));

/** A time in ms with its unit: "812 ns", "3.21 µs", "12.5 ms", "1.20 s". */
export function formatTime(ms) {
  if (!Number.isFinite(ms)) return '—';
  if (ms < 1e-3) return `${sig(ms * 1e6)} ns`;
  if (ms < 1) return `${sig(ms * 1e3)} µs`;
  if (ms < 1000) return `${sig(ms)} ms`;
  return `${sig(ms / 1000)} s`;
}

/** Median with min–max in the median's unit: "1.23 (1.20–1.31) ms". */
export function formatStats(s) {
  const [, unit, scale] = [
    [1e-3, 'ns', 1e6],
    [1, 'µs', 1e3],
    [1000, 'ms', 1],
    [Infinity, 's', 1e-3],
  ].find(([limit]) => s.median < limit);
  const f = (v) => sig(v * scale);
  return `${f(s.median)} (${f(s.min)}–${f(s.max)}) ${unit}`;
}

export const formatRatio = (r) => (r >= 100 ? `×${r.toFixed(0)}` : r >= 10 ? `×${r.toFixed(1)}` : `×${r.toFixed(2)}`);
const formatBytes = (b) => (b >= 1e9 ? `${(b / 1e9).toFixed(2)} GB` : b >= 1e6 ? `${(b / 1e6).toFixed(1)} MB` : b >= 1e3 ? `${(b / 1e3).toFixed(1)} kB` : `${b} B`);

/** 6422528 → "6.42 M", 1024 → "1K" (powers of two as the sweep names them), 120 → "120" */
function formatElements(n) {
  if (Number.isInteger(Math.log2(n))) return formatCount(n);
  return n >= 1e6 ? `${(n / 1e6).toPrecision(3)} M` : n >= 1e4 ? `${(n / 1e3).toPrecision(3)} k` : String(n);
}

const STATUS_TEXT = { wrong: 'WRONG', error: 'ERROR', skipped: 'skipped', 'n/a': 'n/a', unavailable: 'missing' };

function cell(r, withRange = true) {
  if (!r) return '';
  if (r.status !== 'ok') return STATUS_TEXT[r.status];
  if (r.stats.samples.length === 1) return `${formatTime(r.stats.median)} (1 call)`;
  return withRange ? formatStats(r.stats) : formatTime(r.stats.median);
}

/**
 * Lays out rows of cells in columns; the first column left-aligned, the others right-aligned.
 * A row given as a string is a full-width line (a sub-heading) that does not set any width.
 */
export function columns(rows, { gap = 2, indent = '' } = {}) {
  const width = (c) => [...String(c)].length;
  const widths = [];
  for (const row of rows) if (Array.isArray(row)) row.forEach((c, i) => (widths[i] = Math.max(widths[i] ?? 0, width(c))));
  const line = (row) =>
    row
      .map((c, i) => (i === 0 ? String(c).padEnd(widths[i]) : ' '.repeat(widths[i] - width(c)) + String(c)))
      .join(' '.repeat(gap))
      .trimEnd();
  return rows.map((row) => indent + (typeof row === 'string' ? row : line(row))).join('\n');
}

// ---------------------------------------------------------------------------------------------
// Grouping

const MODES = ['sync', 'async', 'either'];
const MODE_LABEL = { sync: 'sync', async: 'async', either: 'sync (async where only async exists)' };
const OPS = ALL_OPS;

/** Tasks grouped by case, in display order (the run goes small to large). */
export function byCase(tasks) {
  const groups = new Map();
  for (const t of tasks) {
    if (!groups.has(t.case.id)) groups.set(t.case.id, []);
    groups.get(t.case.id).push(t);
  }
  return [...groups.values()].sort((a, b) => displayRank(a[0].case) - displayRank(b[0].case));
}

const find = (tasks, op, mode) => tasks.find((t) => t.op === op && t.mode === mode);

function caseHeading(c) {
  const bytes = c.elements * (c.dtype === 'float64' ? 8 : 4);
  return `${c.label} ${c.dtype} — ${formatElements(c.elements)} elements (${formatBytes(bytes)}); per call: median (min–max); ÷bound: time over the bandwidth bound`;
}

/**
 * A contender's best result over the modes of one case and op (ORT has only async, plain JS only
 * sync), or its most telling non-ok result when none is ok.
 */
export function bestOverModes(tasks, op, id) {
  const results = tasks.filter((t) => t.op === op).map((t) => ({ task: t, r: t.results.find((r) => r.id === id) })).filter((x) => x.r);
  const ok = results.filter((x) => x.r.status === 'ok').sort((a, b) => a.r.stats.median - b.r.stats.median);
  if (ok.length) return ok[0];
  const rank = ['wrong', 'error', 'skipped', 'unavailable', 'n/a'];
  return results.sort((a, b) => rank.indexOf(a.r.status) - rank.indexOf(b.r.status))[0];
}

// ---------------------------------------------------------------------------------------------
// The tables

/** Time over the bandwidth bound: "0.93", "12.4", "1043". */
const formatBoundRatio = (r) => (r < 10 ? r.toFixed(2) : r < 100 ? r.toFixed(1) : r.toFixed(0));

/** Time (median and range) and time ÷ bandwidth bound, as two cells. */
function resultCells(r) {
  if (!r) return ['', ''];
  if (r.status !== 'ok') return [cell(r), ''];
  return [cell(r), r.vsBound ? formatBoundRatio(r.vsBound) : ''];
}

/**
 * The per-case blocks: rows are contenders, columns the three ops (time per call: median and
 * min–max; time ÷ bandwidth bound), one section per mode. GB/s per result are in the JSON.
 */
export function caseTables(results) {
  const out = [];
  for (const tasks of byCase(results.tasks)) {
    const c = tasks[0].case;
    const ops = OPS.filter((op) => tasks.some((t) => t.op === op));
    const rows = [['', ...ops.flatMap((op) => [OP_LABEL[op], '÷bound'])]];
    for (const mode of MODES.filter((m) => tasks.some((t) => t.mode === m))) {
      const modeTasks = ops.map((op) => find(tasks, op, mode));
      rows.push(MODE_LABEL[mode]);
      const ids = tasks[0].results.map((r) => r.id);
      for (const id of ids) {
        const cells = modeTasks.map((t) => t?.results.find((r) => r.id === id));
        if (cells.every((r) => !r || r.status === 'n/a' || r.status === 'unavailable')) continue;
        rows.push([`  ${cells.find(Boolean).label}`, ...cells.flatMap(resultCells)]);
      }
      rows.push(['  bandwidth bound', ...modeTasks.flatMap((t) => [t?.bound ? formatTime(t.bound.ms) : '', ''])]);
    }
    out.push(`${caseHeading(c)}\n${columns(rows)}`);
  }
  return out.join('\n\n');
}

/**
 * @typedef {object} SummaryRow  per case and op: each side's best over both modes
 * @property {string} case
 * @property {string} op
 * @property {{ label: string, mode: string, ms: number } | null} simdnorm
 * @property {{ label: string, mode: string, ms: number } | null} peer
 * @property {string} [noPeer]          why there is no peer time
 * @property {string} [noSimdnorm]      why there is no simdnorm time
 * @property {{ label: string, mode: string, ms: number } | null} baseline
 * @property {number | null} boundMs
 * @property {number | null} vsPeer      peer time / simdnorm time (> 1: simdnorm faster)
 * @property {number | null} vsBaseline  plain JS time / simdnorm time
 * @property {number | null} vsBound     simdnorm time / bound (1 = at the copy bound)
 */

/** Why no peer was timed on a case and op: "none correct" when one was wrong, else "none timed". */
function whyNoPeer(tasks) {
  const peers = tasks.flatMap((t) => t.results.filter((r) => r.kind === 'peer'));
  const wrong = [...new Set(peers.filter((r) => r.status === 'wrong').map((r) => r.label))];
  return wrong.length ? `none correct (${wrong.join(', ')} WRONG)` : 'none timed (n/a or skipped)';
}

/** Why simdnorm has no time on a case and op: a wrong result, or none ran (errors, skips). */
function whyNoSimdnorm(tasks) {
  const own = tasks.flatMap((t) => t.results.filter((r) => r.kind === 'simdnorm'));
  return own.some((r) => r.status === 'wrong') ? 'none correct' : 'none ran (ERROR or skipped: see the notes)';
}

/** @returns {SummaryRow[]} */
export function summaryRows(tasks) {
  const rows = [];
  for (const group of byCase(tasks)) {
    for (const op of OPS.filter((o) => group.some((t) => t.op === o))) {
      const best = (kind) => {
        const picks = group.filter((t) => t.op === op).map((t) => ({ t, r: fastest(t, kind) })).filter((x) => x.r);
        if (!picks.length) return null;
        const { t, r } = picks.sort((a, b) => a.r.stats.median - b.r.stats.median)[0];
        return { label: r.label, mode: r.mode ?? t.mode, ms: r.stats.median, bound: t.bound?.ms ?? null };
      };
      const s = best('simdnorm');
      const p = best('peer') ?? { missing: whyNoPeer(group.filter((t) => t.op === op)) };
      const b = best('baseline');
      const boundMs = s?.bound ?? group.find((t) => t.op === op)?.bound?.ms ?? null;
      rows.push({
        case: caseName(group[0].case),
        op,
        simdnorm: s && { label: s.label, mode: s.mode, ms: s.ms },
        ...(s ? {} : { noSimdnorm: whyNoSimdnorm(group.filter((t) => t.op === op)) }),
        peer: p.missing ? null : { label: p.label, mode: p.mode, ms: p.ms },
        ...(p.missing ? { noPeer: p.missing } : {}),
        baseline: b && { label: b.label, mode: b.mode, ms: b.ms },
        boundMs,
        vsPeer: s && !p.missing ? p.ms / s.ms : null,
        vsBaseline: s && b ? b.ms / s.ms : null,
        vsBound: s && boundMs ? s.ms / boundMs : null,
      });
    }
  }
  return rows;
}

const who = (x, missing = 'none correct') => (x ? `${x.label} (${x.mode}) ${formatTime(x.ms)}` : missing);

/** The summary as text columns. */
export function summaryTable(tasks) {
  const head = ['case', 'op', 'best simdnorm', 'best peer', 'peer÷simdnorm', 'plain JS÷simdnorm', 'simdnorm÷bound'];
  const rows = summaryRows(tasks).map((r) => [
    r.case,
    OP_LABEL[r.op],
    who(r.simdnorm, r.noSimdnorm),
    who(r.peer, r.noPeer),
    r.vsPeer ? formatRatio(r.vsPeer) : '—',
    r.vsBaseline ? formatRatio(r.vsBaseline) : '—',
    r.vsBound ? formatBoundRatio(r.vsBound) : '—',
  ]);
  return columns([head, ...rows]);
}

/**
 * The size sweep (or the small tensors, `title`): rows are sizes, columns contenders (median per
 * call), plus the bound.
 */
export function sweepTables(sweep, title = 'Size sweep') {
  if (!sweep?.tasks?.length) return '';
  const out = [];
  for (const op of OPS.filter((o) => sweep.tasks.some((t) => t.op === o))) {
    const tasks = sweep.tasks.filter((t) => t.op === op);
    const ids = tasks[0].results.filter((r) => r.status !== 'unavailable').map((r) => r.id);
    const labelOf = (id) => tasks[0].results.find((r) => r.id === id).label;
    const rows = [['elements', ...ids.map(labelOf), 'bound']];
    for (const t of tasks) {
      rows.push([formatCount(t.case.elements), ...ids.map((id) => cell(t.results.find((r) => r.id === id), false)), t.bound ? formatTime(t.bound.ms) : '']);
    }
    out.push(`${title}, ${OP_LABEL[op]} (${sweep.shapeNote}): median time per call\n${columns(rows)}`);
  }
  return out.join('\n\n');
}

// ---------------------------------------------------------------------------------------------
// Notes

/** "y[2792948] = -1.60951…, expected -1.60948… (error 2.16e-5 > 0.00001)" → "y: error 2.16e-5" */
function shortReason(reason) {
  const m = /^(\w+)\[\d+\].*\(error ([^ ]+) >/.exec(reason);
  return m ? `${m[1]}: error ${m[2]}` : reason;
}

const tolerances = (results) =>
  Object.entries(results.tolerance ?? { float32: 1e-5 }).map(([type, tol]) => `${tol} in ${type}`).join(', ');

/**
 * What was not timed and why, and which formulation each peer was timed with, collapsed over
 * repeats: one line per contender and status, listing where.
 */
export function notes(results) {
  const all = [...results.tasks, ...(results.sweep?.tasks ?? []), ...(results.small?.tasks ?? [])];
  const groups = { unavailable: new Map(), failed: new Map(), rejected: new Map(), na: new Map(), chosen: new Map() };
  const add = (map, key, item) => {
    if (!map.has(key)) map.set(key, []);
    if (item && !map.get(key).includes(item)) map.get(key).push(item);
  };
  for (const t of all) {
    const where = `${caseName(t.case)} ${OP_LABEL[t.op]}${t.mode === 'either' ? '' : ` ${t.mode}`}`;
    for (const r of t.results) {
      if (r.status === 'unavailable') add(groups.unavailable, `${r.label}: ${r.reason}`);
      else if (r.status === 'n/a') add(groups.na, `${r.label}: ${r.reason}`);
      else if (r.status === 'wrong') add(groups.failed, `${r.label} WRONG`, `${where} (${shortReason(r.reason.replace(/^[^:]*: (?=\w+\[)/, ''))})`);
      // The same reason on many tasks (a backend missing an op) is listed once, with where.
      else if (r.status !== 'ok') add(groups.failed, `${r.label} ${STATUS_TEXT[r.status]} (${r.reason})`, where);
      if (r.status === 'ok' && r.kind === 'peer') add(groups.chosen, `${r.label}: ${r.formulation}${r.note ? ` (${r.note})` : ''}`, `${caseName(t.case)} ${OP_LABEL[t.op]}`);
      for (const j of r.status === 'ok' ? r.rejected ?? [] : []) {
        if (j.status === 'wrong' || j.status === 'error') add(groups.rejected, `${r.label} "${j.name}" ${STATUS_TEXT[j.status]}`, `${where} (${shortReason(j.reason)})`);
      }
    }
  }
  const list = (title, map, limit = Infinity) =>
    map.size
      ? `${title}\n${[...map].map(([k, w]) => `  - ${k}${w.length ? `: ${w.slice(0, limit).join('; ')}${w.length > limit ? `; +${w.length - limit} more` : ''}` : ''}`).join('\n')}`
      : '';
  return [
    list('Unavailable:', groups.unavailable),
    list(`Not timed — wrong (relative error over ${tolerances(results)}), failed or skipped:`, groups.failed),
    list('Formulations rejected by the gate (another formulation of the same contender was timed):', groups.rejected),
    list('Not applicable:', groups.na),
    list('Peer formulations timed (the fastest correct one per task):', groups.chosen, 4),
    peerThreads(results),
  ]
    .filter(Boolean)
    .join('\n');
}

/** How many threads each peer had (bench/run.mjs, bench/browser/page.mjs set them), and where one cannot have more. */
function peerThreads(results) {
  const n = results.machine?.threads ?? 'all';
  return [
    'Threads of the peers:',
    `  - onnxruntime-node: intraOpNumThreads = ${n}; onnxruntime-web: ort.env.wasm.numThreads = ${n} (its wasm threads run in Node; in the browser page on a cross-origin isolated page only, else 1)`,
    '  - tfjs-wasm: 1 thread in Node — @tensorflow/tfjs-backend-wasm 4.22 turns its threaded build off under Node (its WASM_HAS_MULTITHREAD_SUPPORT flag is false when IS_NODE, tfjs issue 3830); in the browser page it picks its threaded SIMD build itself on a cross-origin isolated page (this harness does not check which build it loaded)',
    '  - tfjs-cpu: 1 thread (plain JS)',
  ].join('\n');
}

// ---------------------------------------------------------------------------------------------
// Header and whole report

/** The load average around the run, when other work may have been running. */
function loadNote(results) {
  const load = results.loadAverage;
  if (!load || Math.max(load.start, load.end) < 0.5) return '';
  return `; 1-min load average ${load.start.toFixed(1)} at the start, ${load.end.toFixed(1)} at the end (the run itself adds up to 2)`;
}

/** "native avx2-fma ×2, wasm simd128, js" (or "native missing") */
function backendList(results) {
  return results.simdnorm
    .map((b) => {
      if (!b.available) return `${b.name} missing`;
      const simd = b.details?.simd && b.details.simd !== 'none' ? ` ${b.details.simd}` : '';
      return `${b.name}${simd}${b.details?.maxThreads > 1 ? ` ×${b.details.maxThreads}` : ''}`;
    })
    .join(', ');
}

export function header(results) {
  const m = results.machine;
  const v = results.versions;
  const lines = [
    `simdnorm benchmark — ${results.quick ? 'quick' : 'full'} run, ${results.date} (${results.environment})`,
    `Machine: ${m.cpu}; ${m.threads} hardware threads; ${m.simd}${m.caches ? `; ${m.caches}` : ''}${m.memory ? `; ${m.memory}` : ''}${m.os ? `; ${m.os}` : ''}${loadNote(results)}`,
    `Runtime: ${v.runtime}; simdnorm ${v.simdnorm}: ${backendList(results)}`,
    `Peers: ${Object.entries(v.peers).map(([k, ver]) => `${k} ${ver}`).join(', ') || 'none'}`,
  ];
  if (results.bandwidth) {
    const bw = results.bandwidth;
    lines.push(`Bandwidth (${formatBytes(bw.bytes)} arrays): ${bw.probes.map((p) => `${p.label} ${p.gbps.toFixed(1)} GB/s`).join(', ')}`);
  }
  lines.push(
    `Method: ${results.settings.rounds} interleaved rounds (≥${results.settings.minRounds} for slow contenders), samples of ≥${results.settings.sampleMs} ms, medians with min–max; every contender checked against the float64 reference before timing.`,
    `Bound: same-run copy time of the tensor (fastest of ${results.copyProbe}) × op bytes / copy bytes (accesses per element — BatchNorm: inference 2, train fwd 3, backward 5; LayerNorm, RMSNorm, GroupNorm, InstanceNorm: forward 2, backward 3; copy 2).`,
  );
  return lines.join('\n');
}

export function fullReport(results) {
  return [
    header(results),
    caseTables(results),
    sweepTables(results.sweep),
    sweepTables(results.small, 'Small tensors'),
    'Summary per case and op: each side\'s best over sync and async (÷ ratios above 1 favour simdnorm; simdnorm÷bound 1.00 = as fast as copying the bytes)',
    summaryTable(results.tasks),
    notes(results),
  ]
    .filter(Boolean)
    .join('\n\n');
}

// ---------------------------------------------------------------------------------------------
// README section (Markdown)

function markdownTable(rows) {
  const [head, ...body] = rows;
  const line = (r) => `| ${r.map((c) => String(c).replace(/\|/g, '\\|')).join(' | ')} |`;
  return [line(head), line(head.map(() => '---')), ...body.map(line)].join('\n');
}

/** The machine, versions and bandwidth lines both documents start with. */
function contextLines(results) {
  const m = results.machine;
  const v = results.versions;
  const bw = results.bandwidth;
  return [
    '> **Numbers vary by machine** (cores, memory bandwidth, SIMD width, caches) and by 10–30% between runs on shared',
    '> machines: compare contenders within one run, not across machines or runs.',
    '',
    `**Machine:** ${m.cpu}, ${m.threads} hardware threads, ${m.simd}${m.caches ? `, ${m.caches}` : ''}${m.memory ? `, ${m.memory}` : ''}; ${m.os}${loadNote(results)}.  `,
    `**Versions:** ${v.runtime}; simdnorm ${v.simdnorm} (${backendList(results)}); ${Object.entries(v.peers).map(([k, ver]) => `${k} ${ver}`).join(', ')}.  `,
    bw ? `**Bandwidth limit, same run (${formatBytes(bw.bytes)} arrays):** ${bw.probes.map((p) => `${p.label} ${p.gbps.toFixed(1)} GB/s`).join(', ')}.` : '',
  ];
}

/** The headline table: per case and op, simdnorm's best against the best peer and the bound. */
function headline(results) {
  const summary = summaryRows(results.tasks);
  const rows = [
    ['case', 'op', 'best simdnorm', 'best peer', 'peer ÷ simdnorm', 'plain JS ÷ simdnorm', 'simdnorm ÷ bound'],
    ...summary.map((r) => [
      r.case,
      OP_LABEL[r.op],
      r.simdnorm ? `${r.simdnorm.label} (${r.simdnorm.mode}) ${formatTime(r.simdnorm.ms)}` : r.noSimdnorm,
      r.peer ? `${r.peer.label} (${r.peer.mode}) ${formatTime(r.peer.ms)}` : r.noPeer,
      r.vsPeer ? `**${formatRatio(r.vsPeer)}**` : '—',
      r.vsBaseline ? formatRatio(r.vsBaseline) : '—',
      r.vsBound ? formatBoundRatio(r.vsBound) : '—',
    ]),
  ];
  return [
    'Per case and op, simdnorm\'s best backend against the best peer and against the bandwidth limit (each side\'s best of',
    'sync and async: onnxruntime only has an async `run`). **peer ÷ simdnorm** > 1: simdnorm is that many times faster than',
    'the fastest *correct* peer. **simdnorm ÷ bound**: time over the same-run copy of the tensor scaled to the bytes the op',
    'must move (BatchNorm: inference 8, training forward 12, backward 20 bytes per float32 element; LayerNorm, RMSNorm,',
    'GroupNorm, InstanceNorm: forward 8 (read x, write y), backward 12 (read dy and x, write dx)); 1.00 = as fast as',
    'memory allows, below 1 = the data stayed in cache.',
    ...(summary.some((r) => r.vsBaseline !== null && r.vsBaseline < 1)
      ? ['Where **plain JS ÷ simdnorm** is below 1 (tiny tensors), the time is per-call overhead (argument checks, dispatch), not the kernel.']
      : []),
    '',
    markdownTable(rows),
  ];
}

const HOW_MEASURED = [
  'How it is measured: every contender\'s output is first compared with the float64 reference (simdnorm\'s `js` backend on',
  'float64 copies; relative tolerance 1e-5 in float32): a wrong one is listed as WRONG and not timed. Each peer gets its',
  'fastest correct formulation (e.g. tfjs needs a transpose or explicit broadcasting for NCHW). Then warm-up, interleaved',
  'rounds (each contender one sample per round, in rotating order, with the copy probes), medians with min–max; a call',
  'slower than 1.5 s is timed once. Details in `bench/` (`runner.mjs`, `timing.mjs`, `contenders/`).',
];

/** What the README and bench/RESULTS.md both show: the context, the headline table, the chart, how it was measured. */
function summary(results, svgPath) {
  return [
    ...contextLines(results),
    '',
    ...headline(results),
    '',
    `![Time per call per contender, log scale, with the bandwidth bound](${svgPath})`,
    '',
    ...HOW_MEASURED,
  ];
}

/**
 * The README's benchmark section: the summary (context, headline table, chart) with a link to
 * the full dump in `resultsPath` (bench/RESULTS.md, written by resultsDocument).
 */
export function readmeSection(results, { jsonPath, svgPath, resultsPath = 'bench/RESULTS.md' }) {
  return [
    `Generated by \`npm run bench -- --readme\` on ${results.date} (${Math.round(results.seconds / 60)} min) in the repository; every table`,
    `(all contenders, sync and async, the size sweep, what was wrong or not applicable, the formulation each peer was timed with)`,
    `is in [\`${resultsPath}\`](${resultsPath}), raw data in [\`${jsonPath}\`](${jsonPath}). \`npm run bench -- --quick\` takes about`,
    '2 minutes; `npm run bench:browser` runs the wasm/js contenders and the browser peers in Chromium. On an installed package,',
    '`npx simdnorm bench` times its own backends (no peers, no extra packages).',
    '',
    ...summary(results, svgPath),
  ]
    .filter((line, i, all) => line !== '' || all[i - 1] !== '')
    .join('\n');
}

/**
 * bench/RESULTS.md: the whole run — context, headline table, chart and every table and note as
 * text. Paths are relative to the bench/ directory the file lives in.
 */
export function resultsDocument(results, { jsonPath, svgPath }) {
  return [
    '# simdnorm benchmark results',
    '',
    ...(results.quick
      ? [
          `Generated by \`npm run bench -- --quick --results-md\` on ${results.date} (${Math.round(results.seconds / 60)} min): a **quick run** (fewer`,
          'cases and rounds, slow contenders left out of large tensors, no size sweep); `npm run bench -- --readme` replaces it with',
          `a full run. Raw data in [\`${jsonPath}\`](${jsonPath}). The README's headline table may come from another run.`,
        ]
      : [
          `Generated by \`npm run bench -- --readme\` on ${results.date} (${Math.round(results.seconds / 60)} min); raw data in`,
          `[\`${jsonPath}\`](${jsonPath}). The README shows the headline table; this file has every table of the run.`,
        ]),
    '',
    ...summary(results, svgPath),
    '',
    '## Full tables',
    '',
    'All contenders, sync and async, the size sweep, and notes: what was wrong, unavailable or not applicable, and the',
    'formulation each peer was timed with.',
    '',
    '```text',
    [header(results), caseTables(results), sweepTables(results.sweep), sweepTables(results.small, 'Small tensors'), notes(results)].filter(Boolean).join('\n\n'),
    '```',
    '',
  ].join('\n');
}
