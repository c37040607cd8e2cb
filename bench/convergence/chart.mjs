/**
 * The convergence charts as SVG: line panels with labelled axes, over the primitives of the
 * benchmark's own chart (../chart.mjs). Pure string building, so the browser page draws the same
 * charts live. Each chart function takes the run results (train.mjs) and returns a whole SVG.
 */
import { esc, line, text } from '../chart.mjs';
import { NORM_LABEL } from './nets.mjs';
import { stepsTo } from './train.mjs';

const FONT = 'font-family="DejaVu Sans, Verdana, Helvetica, Arial, sans-serif" font-size="11"';
export const NORM_COLOR = { bn: '#1f4e9c', renorm: '#2ca02c', ghost: '#6baed6', gn: '#ff7f0e', ln: '#8c3fbf', none: '#7f7f7f' };

/** Round tick values covering [lo, hi], about `count` of them. */
function ticks(lo, hi, count = 5) {
  const raw = (hi - lo) / count;
  const mag = 10 ** Math.floor(Math.log10(raw || 1));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= raw) ?? raw;
  const out = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(+v.toFixed(10));
  return out;
}

const fmt = (v) => (Math.abs(v) >= 1000 ? `${+(v / 1000).toFixed(1)}k` : `${+v.toFixed(3)}`);

/**
 * One panel at (x0, y0) of size w×h. `series`: [{ label, color, dash?, points: [[x, y]] }];
 * `x`, `y`: { label, min, max, ticks?, tickLabel?, percent? }. Values outside the y range are
 * clipped to the frame (the caption says so where it matters).
 */
export function panel({ x0, y0, w, h, title, x, y, series }) {
  const left = x0 + 52;
  const right = x0 + w - 22;
  const top = y0 + 22;
  const bottom = y0 + h - 38;
  const px = (v) => left + ((v - x.min) / (x.max - x.min || 1)) * (right - left);
  const py = (v) => bottom - ((Math.min(y.max, Math.max(y.min, v)) - y.min) / (y.max - y.min || 1)) * (bottom - top);
  const parts = [text(x0 + 4, y0 + 13, title, 'font-weight="bold"')];
  const yLabel = (v) => (y.percent ? `${+(v * 100).toFixed(1)}%` : fmt(v));
  for (const t of y.ticks ?? ticks(y.min, y.max)) parts.push(line(left, py(t), right, py(t), 'stroke="#e4e4e4"'), text(left - 5, py(t) + 4, yLabel(t), 'text-anchor="end" font-size="10"'));
  for (const t of x.ticks ?? ticks(x.min, x.max, 6)) parts.push(line(px(t), bottom, px(t), bottom + 4, 'stroke="#333"'), text(px(t), bottom + 15, x.tickLabel ? x.tickLabel(t) : fmt(t), 'text-anchor="middle" font-size="10"'));
  parts.push(line(left, bottom, right, bottom, 'stroke="#333"'), line(left, top, left, bottom, 'stroke="#333"'));
  parts.push(text((left + right) / 2, bottom + 31, x.label, 'text-anchor="middle"'));
  const cy = (top + bottom) / 2;
  parts.push(text(x0 + 12, cy, y.label, `text-anchor="middle" transform="rotate(-90 ${x0 + 12} ${cy.toFixed(1)})"`));
  for (const s of series) {
    if (!s.points.length) continue;
    const pts = s.points.map(([a, b]) => `${px(a).toFixed(1)},${py(b).toFixed(1)}`).join(' ');
    parts.push(`<polyline fill="none" points="${pts}" stroke="${s.color}" stroke-width="${s.width ?? 1.8}"${s.dash ? ` stroke-dasharray="${s.dash}"` : ''}><title>${esc(s.label)}</title></polyline>`);
    if (s.markers) for (const [a, b] of s.points) parts.push(`<circle cx="${px(a).toFixed(1)}" cy="${py(b).toFixed(1)}" r="3" fill="${s.color}"><title>${esc(`${s.label}: ${yLabel(b)}`)}</title></circle>`);
  }
  return parts.join('');
}

/** A legend row at (x, y) wrapped to `width`; returns { svg, height }. */
export function legend(items, x, y, width) {
  const parts = [];
  let cx = x;
  let cy = y;
  for (const item of items) {
    const w = 34 + item.label.length * 6.6;
    if (cx + w > x + width && cx > x) [cx, cy] = [x, cy + 16];
    parts.push(line(cx, cy - 4, cx + 22, cy - 4, `stroke="${item.color}" stroke-width="2.5"${item.dash ? ` stroke-dasharray="${item.dash}"` : ''}`), text(cx + 27, cy, item.label));
    cx += w;
  }
  return { svg: parts.join(''), height: cy - y + 16 };
}

/** A whole SVG document of the given size around body parts. */
export function svgDocument(width, height, parts) {
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${Math.ceil(height)}" viewBox="0 0 ${width} ${Math.ceil(height)}" ${FONT}>`,
    '<rect width="100%" height="100%" fill="#fff"/>',
    ...parts,
    '</svg>',
    '',
  ].join('\n');
}

const mlpLabel = (r) => `${r.norm === 'bn' ? 'with BatchNorm' : 'without BN'}, lr ${+r.lr.toFixed(4)}${r.lrMultiplier !== 1 ? ` (${r.lrMultiplier}×)` : ''}`;
const mlpStyle = (r) => ({ color: r.norm === 'bn' ? '#1f4e9c' : '#d62728', dash: r.lrMultiplier !== 1 ? '6,3' : undefined });

/** (a) Test accuracy against training steps, with and without BN, at the base lr and 5×. */
export function accuracyChart(runs, { title, width = 760, yMin = 0.7 } = {}) {
  const mlp = runs.filter((r) => r.experiment === 'a');
  const steps = Math.max(1, ...mlp.map((r) => r.steps));
  const series = mlp.map((r) => ({ label: mlpLabel(r), ...mlpStyle(r), points: r.curve.map((p) => [p.step, p.testAccuracy]) }));
  const key = legend(series, 60, 54, width - 70);
  const h = 340;
  const body = panel({
    x0: 0,
    y0: 44 + key.height,
    w: width,
    h,
    title: '',
    x: { label: 'training steps (SGD, batch 60)', min: 0, max: steps },
    y: { label: 'test accuracy (2,000 digits)', min: yMin, max: 1, percent: true },
    series,
  });
  const lines = [text(10, 18, title ?? 'Figure 1(a) setup: MLP 784–100–100–100–10, sigmoid — test accuracy against steps', 'font-weight="bold" font-size="13"')];
  lines.push(text(10, 34, `values below ${yMin * 100}% are drawn on the bottom edge; a line ends early where a run was stopped`, 'fill="#555"'));
  return svgDocument(width, 44 + key.height + h, [...lines, key.svg, body]);
}

export const NET_LABEL = {
  conv: 'conv net: conv 3×3/2 (8) → norm+ReLU → conv 3×3/2 (16) → norm+ReLU → dense',
  mlp: 'MLP 784–100–100–100–10, sigmoid (the Figure 1 net), norm before each sigmoid',
};

/** (b) Final test accuracy against batch size, one line per normalization, one panel per network. */
export function batchChart(runs, { title, width = 760 } = {}) {
  const all = runs.filter((r) => r.experiment === 'b');
  const nets = ['conv', 'mlp'].filter((net) => all.some((r) => r.net === net));
  const norms = [...new Set(all.map((r) => r.norm))];
  const key = legend(
    norms.map((norm) => ({ label: norm === 'ghost' ? `${NORM_LABEL[norm]} (batch 32, statistics over b)` : NORM_LABEL[norm], color: NORM_COLOR[norm] })),
    60,
    54,
    width - 70,
  );
  const h = 300;
  const panels = nets.map((net, k) => {
    const runsOfNet = all.filter((r) => r.net === net);
    const batches = [...new Set(runsOfNet.map((r) => r.batchSize))].sort((a, b) => b - a);
    const finals = runsOfNet.map((r) => r.final?.testAccuracy ?? NaN).filter(Number.isFinite);
    const yMin = Math.max(0, Math.floor((Math.min(...finals, 0.95) - 0.02) * 20) / 20);
    const epochs = runsOfNet[0] ? +((runsOfNet[0].steps * runsOfNet[0].batch) / 8000).toFixed(2) : 0;
    return panel({
      x0: 0,
      y0: 44 + key.height + k * h,
      w: width,
      h,
      title: `${NET_LABEL[net]} (${epochs} epochs)`,
      x: { label: 'batch size b (images per batch; for ghost BN, per statistics)', min: -0.3, max: batches.length - 0.7, ticks: batches.map((_, i) => i), tickLabel: (i) => String(batches[i]) },
      y: { label: 'final test accuracy', min: yMin, max: 1, percent: true },
      series: norms.map((norm) => ({
        label: NORM_LABEL[norm],
        color: NORM_COLOR[norm],
        markers: true,
        points: batches.flatMap((b, i) => {
          const r = runsOfNet.find((q) => q.norm === norm && q.batchSize === b);
          return r?.final ? [[i, r.final.testAccuracy]] : [];
        }),
      })),
    });
  });
  const lines = [
    text(10, 18, title ?? 'Final test accuracy against batch size: the same epochs at every b, lr ∝ b', 'font-weight="bold" font-size="13"'),
    text(10, 34, 'evaluated in inference mode: BatchNorm variants on their running statistics, GroupNorm and LayerNorm per sample', 'fill="#555"'),
  ];
  return svgDocument(width, 44 + key.height + nets.length * h, [...lines, key.svg, ...panels]);
}

/** (c) 15/50/85th percentiles of one sigmoid input per hidden layer, without and with BN. */
export function distributionChart(runs, { title, width = 760, lrMultiplier = 1 } = {}) {
  const pick = (norm) => runs.find((r) => r.experiment === 'a' && r.norm === norm && r.lrMultiplier === lrMultiplier);
  const pair = [pick('none'), pick('bn')].filter(Boolean);
  const layers = pair[0]?.curve[0]?.percentiles?.length ?? 0;
  const colors = ['#9ecae1', '#1f4e9c', '#9ecae1'];
  const parts = [
    text(10, 18, title ?? 'Figure 1(b, c) setup: one sigmoid input (unit 0) per hidden layer over training, test digits', 'font-weight="bold" font-size="13"'),
    text(10, 34, '{15, 50, 85}th percentiles (dark: the median); left without BatchNorm, right with (the BN output, γ·x̂ + β, on its running statistics)', 'fill="#555"'),
  ];
  const panelW = width / 2;
  const h = 220;
  for (let layer = 0; layer < layers; layer++) {
    const values = pair.flatMap((r) => r.curve.flatMap((p) => p.percentiles[layer]));
    const lo = Math.min(...values);
    const hi = Math.max(...values);
    const pad = (hi - lo) * 0.05 || 0.5;
    pair.forEach((r, col) => {
      parts.push(
        panel({
          x0: col * panelW,
          y0: 44 + layer * h,
          w: panelW,
          h,
          title: `hidden layer ${layer + 1}, ${r.norm === 'bn' ? 'with BatchNorm' : 'without BN'}`,
          x: { label: 'training steps', min: 0, max: r.steps },
          y: { label: 'sigmoid input', min: lo - pad, max: hi + pad },
          series: [0, 1, 2].map((q) => ({ label: `${[15, 50, 85][q]}th percentile`, color: colors[q], width: q === 1 ? 2.2 : 1.5, points: r.curve.map((p) => [p.step, p.percentiles[layer][q]]) })),
        }),
      );
    });
  }
  return svgDocument(width, 44 + layers * h + 6, parts);
}

/** The numbers behind chart (a): steps to each accuracy level per run. */
export function accuracyMilestones(runs, levels = [0.9, 0.95]) {
  return runs
    .filter((r) => r.experiment === 'a')
    .map((r) => ({ label: mlpLabel(r), norm: r.norm, lrMultiplier: r.lrMultiplier, lr: r.lr, reached: levels.map((l) => stepsTo(r.curve, l)), final: r.final?.testAccuracy, best: Math.max(...r.curve.map((p) => p.testAccuracy)) }));
}
