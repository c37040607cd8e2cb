/**
 * The SVG chart: time per call per contender on a log scale, with the bandwidth bound drawn.
 * Top: one group of bars per case and op (each contender's best of sync and async, as in the
 * summary), the bound as a red line across the group. Bottom: the size sweep, time per call
 * against elements, one line per contender, the bound dashed. Pure string building (browser-safe).
 */
import { ALL_OPS, OP_LABEL, caseName, formatCount } from './tasks.mjs';
import { bestOverModes, byCase, formatTime } from './report.mjs';

const COLORS = {
  'native-': '#1f4e9c',
  'native-1': '#6baed6',
  wasm: '#2ca02c',
  'wasm-': '#2ca02c',
  'wasm-1': '#74c476',
  'wasm-copy': '#bcbd22',
  'wasm-copy-': '#bcbd22',
  'wasm-copy-1': '#dbdb8d',
  js: '#a6d96a',
  'plain-js': '#7f7f7f',
  'tfjs-cpu': '#ff7f0e',
  'tfjs-wasm': '#fdae6b',
  'onnxruntime-node': '#8c3fbf',
  'onnxruntime-web': '#c9a6e4',
};
const BOUND = '#d62728';
// an id's own colour, else that of its longest prefix ending in '-' (wasm-copy-2: 'wasm-copy-', not 'wasm-')
const color = (id) =>
  COLORS[id] ?? COLORS[Object.keys(COLORS).filter((k) => k.endsWith('-') && id.startsWith(k)).sort((a, b) => b.length - a.length)[0]] ?? '#333';

/** SVG text escaping and the two primitives every chart draws with (also bench/convergence/chart.mjs). */
export const esc = (s) => String(s).replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
export const text = (x, y, s, attrs = '') => `<text x="${x.toFixed(1)}" y="${y.toFixed(1)}" ${attrs}>${esc(s)}</text>`;
export const line = (x1, y1, x2, y2, attrs) => `<line x1="${x1.toFixed(1)}" y1="${y1.toFixed(1)}" x2="${x2.toFixed(1)}" y2="${y2.toFixed(1)}" ${attrs}/>`;

/** A log10 axis over [lo, hi] ms mapped to [bottom, top] pixels; whole decades. */
function logScale(values, bottom, top) {
  const finite = values.filter((v) => Number.isFinite(v) && v > 0);
  const lo = 10 ** Math.floor(Math.log10(Math.min(...finite)));
  const hi = 10 ** Math.ceil(Math.log10(Math.max(...finite)));
  const span = Math.log10(hi) - Math.log10(lo) || 1;
  const y = (v) => bottom - ((Math.log10(v) - Math.log10(lo)) / span) * (bottom - top);
  const ticks = [];
  for (let d = Math.log10(lo); d <= Math.log10(hi) + 1e-9; d++) ticks.push(10 ** d);
  return { y, ticks };
}

function yAxis(scale, left, right, labelX) {
  return scale.ticks
    .map((t) => line(left, scale.y(t), right, scale.y(t), 'stroke="#ddd"') + text(labelX, scale.y(t) + 4, formatTime(t), 'text-anchor="end"'))
    .join('');
}

/** Colour keys, wrapped to the width; returns { svg, height }. */
function legend(contenders, x, y, width) {
  const items = [
    ...contenders.map((c) => ({ label: c.label, mark: (cx, cy) => `<rect x="${cx}" y="${cy - 9}" width="10" height="10" fill="${color(c.id)}"/>` })),
    { label: 'bandwidth bound (same-run copy)', mark: (cx, cy) => line(cx - 8, cy - 4, cx + 10, cy - 4, `stroke="${BOUND}" stroke-width="2" stroke-dasharray="5,3"`) },
  ];
  const parts = [];
  let cx = x;
  let cy = y;
  for (const item of items) {
    const w = 28 + item.label.length * 7;
    if (cx + w > width && cx > x) {
      cx = x;
      cy += 18;
    }
    parts.push(item.mark(cx, cy) + text(cx + 14, cy, item.label));
    cx += w;
  }
  return { svg: parts.join(''), height: cy - y + 18 };
}

/** Bars per case and op. Returns { svg, height }. */
function casesPanel(results, contenders, top, width) {
  const groups = [];
  for (const tasks of byCase(results.tasks)) {
    for (const op of ALL_OPS.filter((o) => tasks.some((t) => t.op === o))) {
      const bars = contenders
        .map((c) => ({ c, best: bestOverModes(tasks, op, c.id) }))
        .filter((b) => b.best?.r.status === 'ok')
        .map((b) => ({ c: b.c, ms: b.best.r.stats.median }));
      const bound = Math.min(...tasks.filter((t) => t.op === op && t.bound).map((t) => t.bound.ms));
      groups.push({ caseLabel: caseName(tasks[0].case), op, bars, bound });
    }
  }
  const height = 330;
  const left = 70;
  const bottom = top + height - 70;
  const plotTop = top + 30;
  const scale = logScale(groups.flatMap((g) => [...g.bars.map((b) => b.ms), g.bound]), bottom, plotTop);
  const slot = (width - left - 10) / groups.length;
  const barWidth = Math.max(2, Math.min(9, (slot - 8) / contenders.length));
  const parts = [text(left, top + 14, 'Time per call by case and op (each contender\'s best of sync and async; lower is better; log scale)', 'font-weight="bold"'), yAxis(scale, left, width - 10, left - 6)];
  groups.forEach((g, i) => {
    const x0 = left + i * slot + (slot - barWidth * contenders.length) / 2;
    for (const b of g.bars) {
      const x = x0 + contenders.indexOf(b.c) * barWidth;
      const y = scale.y(b.ms);
      parts.push(`<rect x="${x.toFixed(1)}" y="${y.toFixed(1)}" width="${(barWidth - 1).toFixed(1)}" height="${(bottom - y).toFixed(1)}" fill="${color(b.c.id)}"><title>${esc(`${g.caseLabel} ${OP_LABEL[g.op]} — ${b.c.label}: ${formatTime(b.ms)}`)}</title></rect>`);
    }
    if (Number.isFinite(g.bound)) parts.push(line(left + i * slot + 2, scale.y(g.bound), left + (i + 1) * slot - 2, scale.y(g.bound), `stroke="${BOUND}" stroke-width="2" stroke-dasharray="5,3"`));
    parts.push(text(left + (i + 0.5) * slot, bottom + 14, OP_LABEL[g.op].replace(' fwd', ''), 'text-anchor="middle" font-size="10"'));
    if (i === 0 || groups[i - 1].caseLabel !== g.caseLabel) {
      const span = groups.filter((h) => h.caseLabel === g.caseLabel).length;
      parts.push(text(left + (i + span / 2) * slot, bottom + 32, g.caseLabel, 'text-anchor="middle" font-weight="bold"'));
      if (i > 0) parts.push(line(left + i * slot, plotTop, left + i * slot, bottom + 36, 'stroke="#999"'));
    }
  });
  parts.push(line(left, bottom, width - 10, bottom, 'stroke="#333"'));
  return { svg: parts.join(''), height };
}

/** Lines over the size sweep (or the small tensors, `title`), one sub-panel per op. Returns { svg, height }. */
function sweepPanel(sweep, contenders, top, width, title = 'Size sweep') {
  const ops = ['train', 'infer', 'backward'].filter((o) => sweep.tasks.some((t) => t.op === o));
  const height = 320;
  const plotTop = top + 40;
  const bottom = top + height - 40;
  const all = sweep.tasks.flatMap((t) => [...t.results.filter((r) => r.status === 'ok').map((r) => r.stats.median), t.bound?.ms ?? NaN]);
  const scale = logScale(all, bottom, plotTop);
  const panelWidth = (width - 20) / ops.length;
  const parts = [text(70, top + 14, `${title} ${sweep.shapeNote}: time per call against elements (log–log; ${sweep.mode})`, 'font-weight="bold"')];
  ops.forEach((op, k) => {
    const tasks = sweep.tasks.filter((t) => t.op === op);
    const left = 70 + k * panelWidth;
    const right = left + panelWidth - 70;
    const xs = tasks.map((t) => Math.log2(t.case.elements));
    const x = (n) => left + ((Math.log2(n) - Math.min(...xs)) / (Math.max(...xs) - Math.min(...xs) || 1)) * (right - left);
    parts.push(text(left, plotTop - 8, OP_LABEL[op], 'font-weight="bold"'), yAxis(scale, left, right, left - 6), line(left, bottom, right, bottom, 'stroke="#333"'));
    for (const t of tasks) parts.push(text(x(t.case.elements), bottom + 16, formatCount(t.case.elements), 'text-anchor="middle" font-size="10"'));
    const path = (points, attrs) => (points.length ? `<polyline fill="none" points="${points.map(([px, py]) => `${px.toFixed(1)},${py.toFixed(1)}`).join(' ')}" ${attrs}/>` : '');
    for (const c of contenders) {
      const points = tasks
        .map((t) => ({ t, r: t.results.find((r) => r.id === c.id) }))
        .filter(({ r }) => r?.status === 'ok')
        .map(({ t, r }) => [x(t.case.elements), scale.y(r.stats.median)]);
      parts.push(path(points, `stroke="${color(c.id)}" stroke-width="2"`));
      for (const [px, py] of points) parts.push(`<circle cx="${px.toFixed(1)}" cy="${py.toFixed(1)}" r="2.5" fill="${color(c.id)}"/>`);
    }
    parts.push(path(tasks.filter((t) => t.bound).map((t) => [x(t.case.elements), scale.y(t.bound.ms)]), `stroke="${BOUND}" stroke-width="2" stroke-dasharray="5,3"`));
  });
  return { svg: parts.join(''), height };
}

export function svgChart(results) {
  const seen = new Set([...results.tasks, ...(results.sweep?.tasks ?? []), ...(results.small?.tasks ?? [])].flatMap((t) => t.results.filter((r) => r.status === 'ok').map((r) => r.id)));
  const contenders = results.contenders.filter((c) => seen.has(c.id));
  const groups = new Set(results.tasks.map((t) => `${t.case.id} ${t.op}`)).size;
  const width = Math.max(1100, 80 + groups * (contenders.length * 8 + 14));
  const title = `simdnorm benchmark — ${results.machine.cpu}, ${results.machine.threads} threads, ${results.versions.runtime} — ${results.date}`;
  const key = legend(contenders, 14, 44, width - 10);
  const parts = [text(10, 20, title, 'font-weight="bold" font-size="14"'), key.svg];
  let y = 34 + key.height;
  const cases = casesPanel(results, contenders, y, width);
  parts.push(cases.svg);
  y += cases.height;
  if (results.sweep?.tasks?.length) {
    const sweep = sweepPanel(results.sweep, contenders, y, width);
    parts.push(sweep.svg);
    y += sweep.height;
  }
  if (results.small?.tasks?.length) {
    const small = sweepPanel(results.small, contenders, y, width, 'Small tensors');
    parts.push(small.svg);
    y += small.height;
  }
  parts.push(text(10, y + 4, 'No bar or point: not applicable, wrong (failed the correctness gate) or not timed; the tables and notes say which and why.', 'fill="#555"'));
  y += 14;
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${Math.round(width)}" height="${y}" viewBox="0 0 ${Math.round(width)} ${y}" font-family="DejaVu Sans, Verdana, Helvetica, Arial, sans-serif" font-size="11">`,
    `<rect width="100%" height="100%" fill="#fff"/>`,
    ...parts,
    '</svg>',
    '',
  ].join('\n');
}
