// npm run bench:replicas — one replica against two behind npm run cluster's HAProxy, on this host:
// the clusters take turns (1, 2, 2, 1, …), each loaded by npm run loadtest --url with the same
// levels, so every 2-vs-1 ratio compares runs minutes apart at most. The one-replica turns also
// load that replica directly, around the balancer, for what the hop through HAProxy costs. Writes
// bench/results/replicas/replicas.{json,md,html}.
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Command } from 'commander';
import { mdTable, median, writeReport } from './report.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const o = new Command()
  .name('bench:replicas')
  .option('--pairs <n>', 'turns of each cluster size', (v) => parseInt(v, 10), 2)
  .option('--concurrency <list>', 'streaming levels', '1,4,16')
  .option('--seconds <n>', 'seconds per level and decoding mode', (v) => parseFloat(v), 4)
  .option('--port <n>', 'balancer port', (v) => parseInt(v, 10), 8790)
  .option('--out <dir>', 'results folder', path.join(ROOT, 'bench', 'results', 'replicas'))
  .parse()
  .opts();

type Target = 'balancer' | 'direct';

interface LoadResult {
  results: Record<string, Record<string, { aggregateTokensPerSecond: number }>>;
  autocannon: { rps: number };
}

async function withCluster<T>(replicas: number, run: (url: string) => Promise<T>): Promise<T> {
  const child = spawn(process.execPath, ['--import', 'tsx', path.join(ROOT, 'scripts', 'cluster.ts'), '--replicas', String(replicas), '--port', String(o.port)], { cwd: ROOT, stdio: ['ignore', 'pipe', 'inherit'] });
  await new Promise<void>((resolve, reject) => {
    let out = '';
    // keep reading after ready, so the cluster never blocks on a full pipe
    child.stdout!.on('data', (b: Buffer) => {
      if (out.length > 1e5) out = out.slice(-1e4);
      out += b.toString();
      if (/^cluster: ready: /m.test(out)) resolve();
    });
    child.once('exit', (code) => reject(new Error(`cluster exited (${code}) before it was ready:\n${out}`)));
  });
  try {
    return await run(`http://127.0.0.1:${o.port}`);
  } finally {
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill('SIGTERM');
    await exited;
  }
}

const levels = String(o.concurrency).split(',').map(Number);
const turns: { replicas: number; load: LoadResult; direct?: LoadResult }[] = [];
const loadtest = async (url: string): Promise<LoadResult> => {
  const out = mkdtempSync(path.join(os.tmpdir(), 'replicas-'));
  const args = ['--import', 'tsx', path.join(ROOT, 'loadtest', 'loadtest.ts'), '--url', url, '--concurrency', levels.join(','), '--rounds', '1', '--seconds', String(o.seconds), '--pacing-levels', '', '--autocannon-seconds', String(Math.ceil(o.seconds)), '--out', out];
  const child = spawn(process.execPath, args, { cwd: ROOT, stdio: ['ignore', 'ignore', 'inherit'] });
  const code = await new Promise((resolve) => child.once('exit', resolve));
  if (code !== 0) throw new Error(`loadtest failed (${code})`);
  return JSON.parse(readFileSync(path.join(out, 'loadtest.json'), 'utf8')) as LoadResult;
};
for (let pair = 0; pair < o.pairs; pair++) {
  for (const replicas of pair % 2 ? [2, 1] : [1, 2]) {
    console.log(`pair ${pair + 1}/${o.pairs}: ${replicas} replica${replicas > 1 ? 's' : ''}`);
    const turn = await withCluster(replicas, async (url) => {
      if (replicas > 1) return { replicas, load: await loadtest(url) };
      // through the balancer and around it, alternating which goes first
      const order: Target[] = pair % 2 ? ['direct', 'balancer'] : ['balancer', 'direct'];
      const got: Partial<Record<Target, LoadResult>> = {};
      for (const target of order) got[target] = await loadtest(target === 'direct' ? `http://127.0.0.1:${o.port + 1}` : url);
      return { replicas, load: got.balancer!, direct: got.direct! };
    });
    turns.push(turn);
  }
}

const of = (n: number) => turns.filter((t) => t.replicas === n).map((t) => t.load);
const pairs = Array.from({ length: o.pairs }, (_, i) => ({ one: of(1)[i], two: of(2)[i] }));
const rows: (string | number)[][] = [];
for (const c of levels) {
  for (const mode of Object.keys(pairs[0].one.results)) {
    const one = median(pairs.map((p) => p.one.results[mode][c].aggregateTokensPerSecond));
    const two = median(pairs.map((p) => p.two.results[mode][c].aggregateTokensPerSecond));
    const ratios = pairs.map((p) => p.two.results[mode][c].aggregateTokensPerSecond / p.one.results[mode][c].aggregateTokensPerSecond);
    rows.push([c, mode === 'none' ? 'plain' : mode, one.toFixed(0), two.toFixed(0), `${median(ratios).toFixed(2)}x (${Math.min(...ratios).toFixed(2)}–${Math.max(...ratios).toFixed(2)})`]);
  }
}
const hop: (string | number)[][] = [];
const ones = turns.filter((t) => t.direct);
for (const c of levels) {
  for (const mode of Object.keys(ones[0].load.results)) {
    const ratios = ones.map((t) => t.load.results[mode][c].aggregateTokensPerSecond / t.direct!.results[mode][c].aggregateTokensPerSecond);
    hop.push([c, mode === 'none' ? 'plain' : mode, median(ones.map((t) => t.direct!.results[mode][c].aggregateTokensPerSecond)).toFixed(0), median(ones.map((t) => t.load.results[mode][c].aggregateTokensPerSecond)).toFixed(0), `${median(ratios).toFixed(2)}x (${Math.min(...ratios).toFixed(2)}–${Math.max(...ratios).toFixed(2)})`]);
  }
}
const rps = (n: number) => median(of(n).map((l) => l.autocannon.rps));
const rpsRatios = pairs.map((p) => p.two.autocannon.rps / p.one.autocannon.rps);
const date = new Date().toISOString().slice(0, 10);
let md = `### One replica vs two behind HAProxy (${date})\n\n`;
md += `\`npm run bench:replicas -- --pairs ${o.pairs} --concurrency ${levels.join(',')} --seconds ${o.seconds}\`: npm run cluster with 1 and 2 replicas taking turns, each loaded by npm run loadtest --url (128-token streams, ${o.seconds} s per level and mode); medians over ${o.pairs} turns each; machine: ${os.cpus()[0]?.model ?? 'cpu'} x${os.availableParallelism()}.\n\n`;
md += mdTable(['concurrency', 'decoding', '1 replica tok/s', '2 replicas tok/s', '2 vs 1 (median, range)'], rows);
md += `\nNon-streaming (autocannon, 4 connections, 16 tokens): ${rps(1).toFixed(1)} req/s with 1 replica, ${rps(2).toFixed(1)} with 2 (${median(rpsRatios).toFixed(2)}x, ${Math.min(...rpsRatios).toFixed(2)}–${Math.max(...rpsRatios).toFixed(2)}).\n`;
md += `\nThe hop through HAProxy, one replica loaded directly and through the balancer in the same turn:\n\n`;
md += mdTable(['concurrency', 'decoding', 'direct tok/s', 'through HAProxy tok/s', 'through vs direct (median, range)'], hop);
const files = writeReport(o.out, 'replicas', { date, options: o, turns }, md, [
  { title: 'Aggregate tokens/s, plain', type: 'bar', labels: levels.map(String), yLabel: 'tokens/s', series: [1, 2].map((n) => ({ label: `${n} replica${n > 1 ? 's' : ''}`, data: levels.map((c) => median(of(n).map((l) => l.results.none[c].aggregateTokensPerSecond))) })) },
]);
console.log(`\n${md}\nwrote ${files.join(', ')}`);
