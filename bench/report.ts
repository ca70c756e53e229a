// Writes benchmark results as JSON, a Markdown table and an HTML page with charts (Chart.js
// embedded in the file: the page needs no network).
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { marked } from 'marked';
import { createRequire } from 'node:module';
import path from 'node:path';

const require = createRequire(import.meta.url);

export interface Chart {
  title: string;
  type: 'bar' | 'line';
  labels: string[];
  series: { label: string; data: (number | null)[] }[];
  yLabel: string;
  /** Bars of the series stacked per label (parts of one total). */
  stacked?: boolean;
}

export function writeReport(dir: string, name: string, data: unknown, markdown: string, charts: Chart[]): string[] {
  mkdirSync(dir, { recursive: true });
  const json = path.join(dir, `${name}.json`);
  const md = path.join(dir, `${name}.md`);
  const html = path.join(dir, `${name}.html`);
  writeFileSync(json, JSON.stringify(data, null, 2));
  writeFileSync(md, markdown);
  writeFileSync(html, renderHtml(name, markdown, charts));
  return [json, md, html];
}

function renderHtml(title: string, markdown: string, charts: Chart[]): string {
  // chart.js's exports map hides dist/; its main entry lives in the same folder
  const lib = readFileSync(path.join(path.dirname(require.resolve('chart.js')), 'chart.umd.min.js'), 'utf8');
  const palette = ['#4e79a7', '#f28e2b', '#e15759', '#76b7b2', '#59a14f', '#edc948', '#b07aa1', '#ff9da7'];
  const canvases = charts.map((_, i) => `<div class="chart"><canvas id="c${i}"></canvas></div>`).join('\n');
  const configs = charts.map((c) => ({
    type: c.type,
    data: {
      labels: c.labels,
      datasets: c.series.map((s, i) => ({ label: s.label, data: s.data, backgroundColor: palette[i % palette.length], borderColor: palette[i % palette.length], fill: false })),
    },
    options: {
      animation: false,
      plugins: { title: { display: true, text: c.title } },
      scales: { x: { stacked: c.stacked ?? false }, y: { stacked: c.stacked ?? false, beginAtZero: true, title: { display: true, text: c.yLabel } } },
    },
  }));
  return `<!doctype html>
<html><head><meta charset="utf-8"><title>${escapeHtml(title)}</title>
<style>body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}
.chart{width:100%;max-width:1000px;margin:1.5em 0}pre{background:#f6f8fa;padding:1em;overflow:auto;font-size:13px}
table{border-collapse:collapse;margin:1em 0;font-size:14px}th,td{border:1px solid #d0d7de;padding:4px 8px;text-align:right}
th:first-child,td:first-child{text-align:left}th{background:#f6f8fa}code{background:#f6f8fa;padding:1px 4px}</style>
<script>${lib}</script></head>
<body><h1>${escapeHtml(title)}</h1>
${canvases}
${marked.parse(markdown, { async: false })}
<script>
const configs = ${JSON.stringify(configs)};
configs.forEach((cfg, i) => new Chart(document.getElementById('c' + i), cfg));
</script></body></html>
`;
}

function escapeHtml(s: string): string {
  return s.replace(/[&<>"]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' })[c]!);
}

export function mdTable(header: string[], rows: (string | number)[][]): string {
  const line = (cells: (string | number)[]) => `| ${cells.join(' | ')} |`;
  return [line(header), line(header.map(() => '---')), ...rows.map(line)].join('\n') + '\n';
}

/** Median (mean of the middle two for an even count). */
export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}
