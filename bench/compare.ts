// npm run bench:compare -- A.json B.json — how far two runs of `npm run bench` or
// `npm run loadtest` moved the ratios they report (speedup vs plain per method and category, or
// speculative/plain per concurrency level). The bar for stable results is 10%.
import { Command } from 'commander';
import { readFileSync } from 'node:fs';
import { mdTable } from './report.ts';

interface Ratio {
  name: string;
  value: number;
}

/** Every ratio a results file reports, named so two files can be matched. */
export function ratios(data: { results: Record<string, Record<string, Record<string, number | null>>> }): Ratio[] {
  const out: Ratio[] = [];
  for (const [method, byKey] of Object.entries(data.results)) {
    for (const [key, r] of Object.entries(byKey)) {
      // bench: speedup vs plain (plain itself is 1 by definition); loadtest: median spec/plain
      const v = typeof r.ratioMedian === 'number' ? r.ratioMedian : method !== 'plain' && typeof r.speedup === 'number' ? r.speedup : null;
      if (v !== null) out.push({ name: `${method} / ${key}`, value: v });
    }
  }
  return out;
}

export function compare(a: Ratio[], b: Ratio[]): { name: string; a: number; b: number; change: number }[] {
  const bm = new Map(b.map((r) => [r.name, r.value]));
  return a.filter((r) => bm.has(r.name)).map((r) => ({ name: r.name, a: r.value, b: bm.get(r.name)!, change: bm.get(r.name)! / r.value - 1 }));
}

function main() {
  const program = new Command().name('bench:compare').argument('<a>', 'first results JSON').argument('<b>', 'second results JSON').option('--limit <pct>', 'the stability bar, percent', '10');
  program.parse();
  const [fa, fb] = program.args;
  const limit = Number(program.opts().limit) / 100;
  const rows = compare(ratios(JSON.parse(readFileSync(fa, 'utf8'))), ratios(JSON.parse(readFileSync(fb, 'utf8'))));
  if (rows.length === 0) throw new Error('no ratios in common');
  console.log(mdTable(['ratio', 'run A', 'run B', 'change'], rows.map((r) => [r.name, r.a.toFixed(3), r.b.toFixed(3), `${(100 * r.change).toFixed(1)}%${Math.abs(r.change) > limit ? ' !' : ''}`])));
  const worst = rows.reduce((m, r) => (Math.abs(r.change) > Math.abs(m.change) ? r : m));
  const within = rows.filter((r) => Math.abs(r.change) <= limit).length;
  console.log(`\n${within}/${rows.length} ratios within ${100 * limit}%; largest change ${(100 * worst.change).toFixed(1)}% (${worst.name}).`);
}

if (import.meta.url === `file://${process.argv[1]}`) main();
