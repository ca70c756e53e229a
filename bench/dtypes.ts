// npm run bench:dtypes — what each weight format of the target costs in quality and buys in speed:
// held-out perplexity (models/<model>/heldout.txt, windows of --window tokens, each token scored
// with the window before it), top-1 agreement with fp32 on the same positions, greedy
// continuations identical to fp32's, file bytes, and one-token decode steps timed in alternation
// (rounds of every format in turn, median of rounds). Writes bench/results/dtypes.{json,md,html}.
import { Command } from 'commander';
import { readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadModelConfig, WEIGHT_DTYPES, type ModelConfig, type WeightDtype } from '../src/model/config.ts';
import { chainInput, Runner } from '../src/worker/runner.ts';
import { logSoftmax } from '../src/worker/sampling.ts';
import { headMajor } from '../src/kvcache/paged.ts';
import { TextCodec } from '../src/model/text.ts';
import { PROMPTS } from './prompts.ts';
import { mdTable, median, writeReport } from './report.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const o = new Command()
  .name('bench:dtypes')
  .option('--model <dir>', 'model folder', path.join(ROOT, 'models', 'specserve-tiny'))
  .option('--window <n>', 'held-out tokens per scored window', (v) => parseInt(v, 10), 256)
  .option('--tokens <n>', 'held-out tokens scored in all', (v) => parseInt(v, 10), 3072)
  .option('--max-tokens <n>', 'tokens per greedy continuation', (v) => parseInt(v, 10), 128)
  .option('--threads <n>', 'onnxruntime intra-op threads', (v) => parseInt(v, 10), 1)
  .option('--rounds <n>', 'timing rounds (every format once per round)', (v) => parseInt(v, 10), 15)
  .option('--out <dir>', 'results folder', path.join(ROOT, 'bench', 'results'))
  .parse()
  .opts();

interface Row {
  dtype: WeightDtype;
  bytes: number;
  perplexity: number;
  top1AgreementWithFp32: number;
  greedyIdenticalTokens: number;
  greedyTokens: number;
  stepMs: number;
}

const cfg = loadModelConfig(o.model);
const dtypes = WEIGHT_DTYPES.filter((d) => cfg.variants[d]);
const codec = new TextCodec(cfg.dir);
const heldout = codec.encode(readFileSync(path.join(cfg.dir, 'heldout.txt'), 'utf8')).slice(0, o.tokens + 1);
const runners = new Map<WeightDtype, Runner>();
for (const d of dtypes) runners.set(d, await Runner.create(cfg, { provider: 'cpu', dtype: d, threads: o.threads }));

/** Negative log-likelihood of every held-out token after the first of its window, and the argmax there. */
async function scoreHeldout(r: Runner): Promise<{ nll: number; count: number; argmax: number[] }> {
  let nll = 0;
  let count = 0;
  const argmax: number[] = [];
  for (let off = 0; off + 1 < heldout.length; off += o.window) {
    const w = heldout.slice(off, Math.min(off + o.window + 1, heldout.length));
    const out = await r.forward(chainInput(cfg, w.slice(0, -1), 0));
    for (let i = 0; i + 1 < w.length; i++) {
      const lp = logSoftmax(out.logits.subarray(i * cfg.vocabSize, (i + 1) * cfg.vocabSize));
      nll -= lp[w[i + 1]];
      count++;
      let best = 0;
      for (let v = 1; v < lp.length; v++) if (lp[v] > lp[best]) best = v;
      argmax.push(best);
    }
  }
  return { nll, count, argmax };
}

/** Greedy continuation of `prompt` with the runner, one-token steps over a growing cache. */
async function greedy(r: Runner, c: ModelConfig, prompt: number[], n: number): Promise<number[]> {
  const keys: Float32Array[] = Array.from({ length: c.numLayers }, () => new Float32Array(0));
  const values: Float32Array[] = Array.from({ length: c.numLayers }, () => new Float32Array(0));
  const ids: number[] = [];
  let toks = prompt;
  let cached = 0;
  for (let step = 0; step <= n; step++) {
    const hm = (rows: Float32Array) => headMajor(rows, cached, c.numKvHeads, c.headDim);
    const out = await r.forward(chainInput(c, toks, cached, { keys: keys.map(hm), values: values.map(hm) }));
    for (let l = 0; l < c.numLayers; l++) {
      keys[l] = concat(keys[l], out.keys[l]);
      values[l] = concat(values[l], out.values[l]);
    }
    cached += toks.length;
    const last = out.logits.subarray((toks.length - 1) * c.vocabSize, toks.length * c.vocabSize);
    let best = 0;
    for (let v = 1; v < last.length; v++) if (last[v] > last[best]) best = v;
    if (step === n) break;
    ids.push(best);
    toks = [best];
  }
  return ids;
}

function concat(a: Float32Array, b: Float32Array): Float32Array {
  const out = new Float32Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}

const scores = new Map<WeightDtype, Awaited<ReturnType<typeof scoreHeldout>>>();
for (const d of dtypes) scores.set(d, await scoreHeldout(runners.get(d)!));
const prompts = Object.values(PROMPTS).flat().map((p) => codec.encode(p));
const continuations = new Map<WeightDtype, number[][]>();
for (const d of dtypes) {
  const list: number[][] = [];
  for (const p of prompts) list.push(await greedy(runners.get(d)!, cfg, p, o.maxTokens));
  continuations.set(d, list);
}

// one-token decode steps after 128 cached rows, every format in turn per round
const P = 128;
const stepInput = chainInput(cfg, [17], P, {
  keys: Array.from({ length: cfg.numLayers }, () => Float32Array.from({ length: cfg.numKvHeads * P * cfg.headDim }, (_, i) => Math.sin(i) * 0.5)),
  values: Array.from({ length: cfg.numLayers }, () => Float32Array.from({ length: cfg.numKvHeads * P * cfg.headDim }, (_, i) => Math.cos(i) * 0.5)),
});
const times = new Map<WeightDtype, number[]>(dtypes.map((d) => [d, []]));
for (const d of dtypes) for (let i = 0; i < 20; i++) await runners.get(d)!.forward(stepInput);
for (let round = 0; round < o.rounds; round++) {
  for (const d of round % 2 ? [...dtypes].reverse() : dtypes) {
    const t0 = performance.now();
    for (let i = 0; i < 50; i++) await runners.get(d)!.forward(stepInput);
    times.get(d)!.push((performance.now() - t0) / 50);
  }
}

const ref = scores.get('fp32')!;
const refCont = continuations.get('fp32')!;
const rows: Row[] = dtypes.map((d) => {
  const s = scores.get(d)!;
  const agree = s.argmax.filter((t, i) => t === ref.argmax[i]).length / s.argmax.length;
  let same = 0;
  let total = 0;
  continuations.get(d)!.forEach((ids, i) => {
    const k = ids.findIndex((t, j) => t !== refCont[i][j]);
    same += k < 0 ? ids.length : k;
    total += ids.length;
  });
  return {
    dtype: d,
    bytes: statSync(cfg.variants[d]!.onnxPath).size,
    perplexity: Math.exp(s.nll / s.count),
    top1AgreementWithFp32: agree,
    greedyIdenticalTokens: same,
    greedyTokens: total,
    stepMs: median(times.get(d)!),
  };
});
for (const r of runners.values()) await r.release();

const base = rows.find((r) => r.dtype === 'fp32')!;
const date = new Date().toISOString().slice(0, 10);
const md = [
  `# Weight formats of ${cfg.id} (${date})`,
  '',
  `Command: \`npm run bench:dtypes\` (held-out: ${ref.count} tokens in windows of ${o.window}; greedy: ${prompts.length} bench prompts x ${o.maxTokens} tokens; steps: 1 new token after ${P} cached, ${o.threads} thread(s), ${o.rounds} alternating rounds)`,
  '',
  mdTable(
    ['weights', 'file', 'held-out perplexity', 'vs fp32', 'top-1 = fp32', 'greedy tokens = fp32 (before first divergence)', 'decode step', 'vs fp32'],
    rows.map((r) => [
      r.dtype,
      `${(r.bytes / 1e6).toFixed(1)} MB`,
      r.perplexity.toFixed(3),
      `${(((r.perplexity / base.perplexity) - 1) * 100).toFixed(2)}%`,
      `${(r.top1AgreementWithFp32 * 100).toFixed(1)}%`,
      `${r.greedyIdenticalTokens}/${r.greedyTokens} (${((r.greedyIdenticalTokens / r.greedyTokens) * 100).toFixed(1)}%)`,
      `${r.stepMs.toFixed(3)} ms`,
      `${(base.stepMs / r.stepMs).toFixed(2)}x`,
    ]),
  ),
  '',
].join('\n');
const files = writeReport(o.out, 'dtypes', { date, options: o, rows }, md, [
  { title: 'Decode step (ms, lower is better)', type: 'bar', labels: rows.map((r) => r.dtype), series: [{ label: 'ms per one-token step', data: rows.map((r) => r.stepMs) }], yLabel: 'ms' },
  { title: 'Held-out perplexity', type: 'bar', labels: rows.map((r) => r.dtype), series: [{ label: 'perplexity', data: rows.map((r) => r.perplexity) }], yLabel: 'perplexity' },
]);
console.log(md);
console.log(`wrote ${files.join(', ')}`);
