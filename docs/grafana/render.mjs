// Renders docs/grafana/dashboard.png: a static page that draws the panels of
// nanosync-dashboard.json from captured /metrics scrapes (docs/grafana/capture/NN.txt with
// the time of each in NN.time), then a screenshot with headless Chromium.
//   node docs/grafana/render.mjs && chromium --headless --screenshot=docs/grafana/dashboard.png \
//     --window-size=1400,1080 docs/grafana/dashboard.html
// dashboard.html is an intermediate page, ignored by git; only dashboard.png is committed.
// Not Grafana: each panel plots the series of the first metric its query names — counters
// as per-second rates, the latency histogram as p95 — which is what the panel shows in Grafana.
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const dashboard = JSON.parse(readFileSync(join(here, 'nanosync-dashboard.json'), 'utf8'));
const dir = join(here, 'capture');
const scrapes = readdirSync(dir)
  .filter((f) => f.endsWith('.txt'))
  .sort()
  .map((f) => ({
    t: Number.parseInt(readFileSync(join(dir, f.replace('.txt', '.time')), 'utf8'), 10),
    samples: parse(readFileSync(join(dir, f), 'utf8')),
  }));

function parse(text) {
  const out = [];
  for (const line of text.split('\n')) {
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m) continue;
    const labels = {};
    for (const p of (m[2] ?? '').matchAll(/([a-zA-Z_]\w*)="((?:[^"\\]|\\.)*)"/g)) labels[p[1]] = p[2];
    out.push({ name: m[1], labels, value: Number(m[3]) });
  }
  return out;
}

const key = (labels, drop = []) =>
  Object.entries(labels)
    .filter(([k]) => !drop.includes(k) && k !== 'pipeline')
    .map(([, v]) => v)
    .join(' ') ||
  labels.pipeline ||
  'value';

/** series name → [{t, v}] for one panel. */
function seriesFor(expr) {
  const metric = /\bns_[a-z_]+/.exec(expr)[0];
  const series = new Map();
  const names = [...expr.matchAll(/\bns_[a-z_]+/g)].map((m) => m[0]);
  if (expr.includes(' / ') && names.length === 2) {
    // A ratio of two gauges/counters as they stand (snapshot rows read / estimated).
    const last = scrapes.at(-1);
    for (const s of last.samples.filter((s) => s.name === names[0])) {
      const d = last.samples.find((p) => p.name === names[1] && JSON.stringify(p.labels) === JSON.stringify(s.labels));
      if (d && d.value > 0) series.set(key(s.labels), [{ t: last.t, v: s.value / d.value }]);
    }
    return series;
  }
  const push = (name, t, v) => {
    if (!Number.isFinite(v)) return;
    if (!series.has(name)) series.set(name, []);
    series.get(name).push({ t, v });
  };
  if (metric.endsWith('_bucket')) {
    const base = metric.replace(/_bucket$/, '');
    for (let i = 1; i < scrapes.length; i++) {
      const delta = new Map();
      for (const s of scrapes[i].samples.filter((s) => s.name === metric)) {
        const prev = scrapes[i - 1].samples.find(
          (p) => p.name === metric && JSON.stringify(p.labels) === JSON.stringify(s.labels),
        );
        const k = key(s.labels, ['le']);
        if (!delta.has(k)) delta.set(k, []);
        delta
          .get(k)
          .push({ le: Number(s.labels.le === '+Inf' ? Infinity : s.labels.le), n: s.value - (prev?.value ?? 0) });
      }
      for (const [k, buckets] of delta) {
        buckets.sort((a, b) => a.le - b.le);
        const total = buckets.at(-1)?.n ?? 0;
        const hit = buckets.find((b) => b.n >= total * 0.95);
        if (total > 0 && hit) push(`p95 ${k} (${base})`, scrapes[i].t, Number.isFinite(hit.le) ? hit.le : NaN);
      }
    }
    return series;
  }
  const counter = metric.endsWith('_total');
  for (let i = counter ? 1 : 0; i < scrapes.length; i++) {
    for (const s of scrapes[i].samples.filter((s) => s.name === metric)) {
      if (metric === 'ns_pipeline_state' && s.value !== 1) continue;
      const name = metric === 'ns_pipeline_state' ? `${s.labels.pipeline} ${s.labels.state}` : key(s.labels);
      if (counter) {
        const prev = scrapes[i - 1].samples.find(
          (p) => p.name === metric && JSON.stringify(p.labels) === JSON.stringify(s.labels),
        );
        push(name, scrapes[i].t, (s.value - (prev?.value ?? 0)) / ((scrapes[i].t - scrapes[i - 1].t) / 1000));
      } else push(name, scrapes[i].t, s.value);
    }
  }
  return series;
}

const COLORS = ['#73bf69', '#f2cc0c', '#5794f2', '#ff780a', '#b877d9', '#f2495c'];
const fmt = (v, unit) =>
  unit === 'bytes'
    ? v >= 1048576
      ? `${(v / 1048576).toFixed(1)} MiB`
      : `${(v / 1024).toFixed(1)} KiB`
    : unit === 's'
      ? `${v < 1 ? (v * 1000).toFixed(0) + ' ms' : v.toFixed(1) + ' s'}`
      : unit === 'percentunit'
        ? `${(v * 100).toFixed(0)}%`
        : v >= 100
          ? v.toFixed(0)
          : v.toFixed(1);

function chart(panel, W, H) {
  const series = new Map();
  for (const target of panel.targets) for (const [k, v] of seriesFor(target.expr)) series.set(k, v);
  const unit = panel.fieldConfig?.defaults?.unit;
  const all = [...series.values()].flat();
  if (all.length === 0) return `<text x="12" y="${H / 2}" class="muted">no data in the capture</text>`;
  if (panel.type === 'stat' || panel.type === 'bargauge' || panel.type === 'state-timeline') {
    let y = 34;
    return [...series]
      .map(([name, pts], i) => {
        const last = pts.at(-1).v;
        const text =
          panel.type === 'state-timeline'
            ? `<rect x="12" y="${y - 16}" width="${W - 24}" height="24" fill="#1f7a3a"/><text x="20" y="${y + 1}">${name}</text>`
            : panel.type === 'bargauge'
              ? `<text x="12" y="${y}">${name}</text><rect x="12" y="${y + 6}" width="${(W - 24) * Math.min(1, last)}" height="14" fill="${COLORS[i % 6]}"/><text x="${W - 60}" y="${y}">${fmt(last, unit)}</text>`
              : `<text x="12" y="${y}">${name}</text><text x="${W - 80}" y="${y}" class="big">${fmt(last, unit)}</text>`;
        y += panel.type === 'bargauge' ? 40 : 30;
        return text;
      })
      .join('');
  }
  const t0 = Math.min(...all.map((p) => p.t));
  const t1 = Math.max(...all.map((p) => p.t));
  const vmax = Math.max(...all.map((p) => p.v), unit === 's' ? 0.001 : 1) * 1.15;
  const L = 64;
  const x = (t) => L + ((t - t0) / Math.max(1, t1 - t0)) * (W - L - 12);
  const y = (v) => H - 40 - (v / vmax) * (H - 70);
  let svg = '';
  for (let g = 0; g <= 3; g++) {
    const v = (vmax * g) / 3;
    svg += `<line x1="${L}" x2="${W - 12}" y1="${y(v)}" y2="${y(v)}" class="grid"/><text x="6" y="${y(v) + 4}" class="axis">${fmt(v, unit)}</text>`;
  }
  [...series].forEach(([name, pts], i) => {
    svg += `<polyline fill="none" stroke="${COLORS[i % 6]}" stroke-width="2" points="${pts.map((p) => `${x(p.t)},${y(p.v)}`).join(' ')}"/>`;
    svg += `<rect x="${L + i * 200}" y="${H - 22}" width="10" height="10" fill="${COLORS[i % 6]}"/><text x="${L + 14 + i * 200}" y="${H - 13}" class="axis">${name.slice(0, 28)}</text>`;
  });
  return svg;
}

const COL = 1400 / 24;
const ROW = 38;
const boxes = dashboard.panels
  .map((p) => {
    const { x, y, w, h } = p.gridPos;
    const W = w * COL - 8;
    const H = h * ROW - 8;
    return `<svg class="panel" style="left:${x * COL + 4}px;top:${y * ROW + 56}px" width="${W}" height="${H}"><rect width="${W}" height="${H}" class="bg"/><text x="12" y="${H > 0 ? 0 : 0}" class="title" dy="1.3em">${p.title}</text><g transform="translate(0,18)">${chart(p, W, H - 18)}</g></svg>`;
  })
  .join('\n');
const when = new Date(scrapes[0].t).toISOString().replace('T', ' ').slice(0, 16);
writeFileSync(
  join(here, 'dashboard.html'),
  `<!doctype html><meta charset="utf-8"><title>nanosync dashboard</title>
<style>body{margin:0;background:#111217;font:13px DejaVu Sans,sans-serif;color:#ccccdc;position:relative;height:1080px}
h1{font-size:17px;margin:0;padding:16px 12px}.panel{position:absolute}.bg{fill:#181b1f;stroke:#2c3235}
.title{font-weight:bold;fill:#ccccdc}.axis{fill:#8e8e8e;font-size:11px}.grid{stroke:#2c3235}.muted{fill:#6e6e6e}
text{fill:#ccccdc}.big{font-size:22px;font-weight:bold;fill:#73bf69}</style>
<h1>nanosync — ${scrapes.length} scrapes of /metrics from the quickstart (${when} UTC), drawn panel by panel from docs/grafana/nanosync-dashboard.json</h1>
${boxes}
`,
);
