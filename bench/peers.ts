// specserve against llama.cpp (node-llama-cpp) on the same weights, in the same run: every contender
// decodes the same token ids, one prompt after another, the contenders in a rotating order for each
// prompt and repetition, so a slow phase of the VM hits them alike. Decode speed only: specserve's
// clock runs from its first token (the prefill's) to its last, llama.cpp's over the forwards after
// the prompt (see bench/peer-llamacpp.ts); both count one token per forward without drafts.
//   specserve plain at every weight format the model has, and every drafter on the default format
//   llama.cpp plain at f32, Q8_0 and Q4_0 (GGUF written by models/tooling/gguf.py), its lookup
//   predictor at f32 and Q8_0, 1 thread (more is slower here: see peer-llamacpp.ts)
//   N streams at once: specserve (default format, plain) vs llama.cpp Q8_0 with N sequences in one context
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { createEngine, type LocalEngine } from '../src/engine/index.ts';
import { greedyRequest } from './request.ts';
import { loadModelConfig, resolveVariant, WEIGHT_DTYPES, type WeightDtype } from '../src/model/config.ts';
import { LlamaCppPeer } from './peer-llamacpp.ts';
import { mdTable, median, type Chart } from './report.ts';

export interface PeerOptions {
  model: string;
  maxTokens: number;
  reps: number;
  /** specserve's onnxruntime threads (llama.cpp runs at 1). */
  threads: number;
  drafters: string[];
  concurrency: number[];
  log: (msg: string) => void;
}

/** llama.cpp's file types next to the specserve weight format they are compared with. */
const GGUF: { type: 'f32' | 'q8_0' | 'q4_0'; dtype: WeightDtype }[] = [
  { type: 'f32', dtype: 'fp32' },
  { type: 'q8_0', dtype: 'int8' },
  { type: 'q4_0', dtype: 'int4' },
];

interface Contender {
  name: string;
  /** The generated ids, and how many of them were decoded in `seconds` (the timed forwards'). */
  run: (ids: number[]) => Promise<{ ids: number[]; decoded: number; seconds: number }>;
}

export interface PeerResult {
  threads: number;
  defaultDtype: WeightDtype;
  /** Per contender: decode tokens/s of each repetition (all prompts). */
  rates: Record<string, number[]>;
  /** specserve fp32 vs llama.cpp f32: tokens identical up to the first difference, over all prompts. */
  identity: { identical: number; total: number; promptsIdentical: number; prompts: number };
  concurrency: { streams: number; specserve: number[]; llamacpp: number[] }[];
}

/** Writes the GGUF files the comparison needs when missing (needs Debian's python3-onnx). */
function ensureGguf(model: string, type: string, log: (m: string) => void): string {
  const dir = path.join(model, 'gguf');
  const file = path.join(dir, `${path.basename(model)}-${type}.gguf`);
  if (existsSync(file)) return file;
  mkdirSync(dir, { recursive: true });
  log(`writing ${file} (models/tooling/gguf.py)`);
  execFileSync('/usr/bin/python3', [path.join(import.meta.dirname, '..', 'models', 'tooling', 'gguf.py'), model, file, '--type', type], { stdio: 'inherit' });
  return file;
}

/** specserve decode: the ids, and the seconds from the first token (the prefill's) to the last. */
async function decode(engine: LocalEngine, prompt: number[], maxTokens: number, drafter: string) {
  const ids: number[] = [];
  let first = 0;
  for await (const ev of engine.generateText(greedyRequest(prompt, { maxTokens, speculative: { drafter, maxDraftTokens: 8 } }))) {
    if (ev.type !== 'text' || ev.tokenIds.length === 0) continue;
    if (!first) first = performance.now();
    ids.push(...ev.tokenIds);
  }
  return { ids, seconds: (performance.now() - first) / 1000, decoded: ids.length - 1 };
}

export async function peerComparison(prompts: number[][], o: PeerOptions): Promise<PeerResult> {
  const engines = new Map<WeightDtype, LocalEngine>();
  const peers = new Map<string, LlamaCppPeer>();
  try {
    const cfg = loadModelConfig(o.model);
    const defaultDtype = resolveVariant(cfg, 'auto', 'cpu').dtype;
    for (const dtype of WEIGHT_DTYPES.filter((d) => cfg.variants[d])) {
      engines.set(dtype, await createEngine({ modelDir: o.model, threads: o.threads, provider: 'cpu', dtype }));
    }
    for (const g of GGUF) peers.set(g.type, await LlamaCppPeer.load(ensureGguf(o.model, g.type, o.log), { threads: 1 }));

    const contenders: Contender[] = [];
    for (const [dtype, e] of engines) contenders.push({ name: `specserve ${dtype}`, run: (p) => decode(e, p, o.maxTokens, 'none') });
    const main = engines.get(defaultDtype)!;
    for (const d of o.drafters) contenders.push({ name: `specserve ${defaultDtype} ${d}`, run: (p) => decode(main, p, o.maxTokens, d) });
    // llama.cpp's timed forwards are one per generated token (the first feeds the prompt's last)
    for (const g of GGUF) {
      const peer = peers.get(g.type)!;
      contenders.push({ name: `llama.cpp ${g.type}`, run: async (p) => { const r = await peer.generate(p, o.maxTokens); return { ids: r.ids, decoded: r.ids.length, seconds: r.decodeSeconds }; } });
    }
    for (const t of ['f32', 'q8_0'] as const) {
      const peer = peers.get(t)!;
      contenders.push({ name: `llama.cpp ${t} lookup`, run: async (p) => { const r = await peer.generateLookup(p, o.maxTokens); return { ids: r.ids, decoded: r.ids.length, seconds: r.decodeSeconds }; } });
    }

    // untimed warm-up: lazy initialisation, the draft policy's first measurements
    for (const p of prompts.slice(0, 4)) for (const c of contenders) await c.run(p);
    const seconds = new Map<string, number[]>(contenders.map((c) => [c.name, new Array(o.reps).fill(0)]));
    const tokens = new Map<string, number[]>(contenders.map((c) => [c.name, new Array(o.reps).fill(0)]));
    const ours: number[][] = [];
    const theirs: number[][] = [];
    let turn = 0;
    for (let rep = 0; rep < o.reps; rep++) {
      for (const [pi, p] of prompts.entries()) {
        const k = turn++ % contenders.length;
        for (const c of [...contenders.slice(k), ...contenders.slice(0, k)]) {
          const r = await c.run(p);
          seconds.get(c.name)![rep] += r.seconds;
          tokens.get(c.name)![rep] += r.decoded;
          if (rep === 0 && c.name === 'specserve fp32') ours[pi] = r.ids;
          if (rep === 0 && c.name === 'llama.cpp f32') theirs[pi] = r.ids;
        }
      }
      o.log(`llama.cpp comparison: repetition ${rep + 1}/${o.reps} done`);
    }
    const rates: Record<string, number[]> = {};
    for (const c of contenders) rates[c.name] = seconds.get(c.name)!.map((s, r) => tokens.get(c.name)![r] / s);

    let identical = 0;
    let total = 0;
    let promptsIdentical = 0;
    ours.forEach((a, i) => {
      const b = theirs[i];
      const n = Math.min(a.length, b.length);
      const k = a.findIndex((t, j) => j >= n || t !== b[j]);
      identical += k < 0 ? n : k;
      total += a.length;
      if (k < 0 && a.length === b.length) promptsIdentical++;
    });

    const concurrency: PeerResult['concurrency'] = [];
    const q8 = peers.get('q8_0')!;
    for (const n of o.concurrency) {
      const set = (rep: number) => Array.from({ length: n }, (_, i) => prompts[(rep * n + i) % prompts.length]);
      const ourRates: number[] = [];
      const theirRates: number[] = [];
      await q8.generateBatch(set(0), o.maxTokens);
      await Promise.all(set(0).map((p) => decode(main, p, o.maxTokens, 'none')));
      for (let rep = 0; rep < o.reps; rep++) {
        const runOurs = async () => {
          const t0 = performance.now();
          const runs = await Promise.all(set(rep).map(async (p) => {
            const r = await decode(main, p, o.maxTokens, 'none');
            return { ...r, firstAt: performance.now() - r.seconds * 1000 };
          }));
          // from the first stream's first token to the last stream's last: every prefill but the
          // first is inside this window, so it is counted against specserve
          const start = Math.min(...runs.map((r) => r.firstAt));
          ourRates.push(runs.reduce((a, r) => a + r.decoded, 0) / ((performance.now() - Math.max(start, t0)) / 1000));
        };
        const runTheirs = async () => theirRates.push((await q8.generateBatch(set(rep), o.maxTokens)).tokensPerSecond);
        if (rep % 2) { await runTheirs(); await runOurs(); } else { await runOurs(); await runTheirs(); }
      }
      concurrency.push({ streams: n, specserve: ourRates, llamacpp: theirRates });
      o.log(`llama.cpp comparison: ${n} streams done`);
    }
    return { threads: o.threads, defaultDtype, rates, identity: { identical, total, promptsIdentical, prompts: ours.length }, concurrency };
  } finally {
    for (const e of engines.values()) await e.close();
    for (const p of peers.values()) await p.close();
  }
}

const range = (xs: number[]) => (xs.length > 1 ? `${Math.min(...xs).toFixed(0)}–${Math.max(...xs).toFixed(0)}` : xs[0].toFixed(0));
/** Ratio of a to b within each repetition (the two measured side by side), as min–max. */
const ratios = (a: number[], b: number[]) => {
  const r = a.map((x, i) => x / b[i]);
  return r.length > 1 ? `${Math.min(...r).toFixed(2)}–${Math.max(...r).toFixed(2)}x` : `${r[0].toFixed(2)}x`;
};

export function peerMarkdown(r: PeerResult, maxTokens: number, prompts: number): string {
  const names = Object.keys(r.rates);
  const q8 = r.rates['llama.cpp q8_0'];
  const same = (name: string) => {
    const g = GGUF.find((x) => name === `specserve ${x.dtype}`);
    return g ? ratios(r.rates[name], r.rates[`llama.cpp ${g.type}`]) : '';
  };
  let md = `#### specserve vs llama.cpp on the same weights\n\n`;
  md += `Batch 1, greedy, ${maxTokens} tokens, ${prompts} prompts fed as the same token ids, ${Object.values(r.rates)[0].length} repetitions, the contenders in rotating order per prompt; ` +
    `specserve onnxruntime threads=${r.threads}, llama.cpp (node-llama-cpp 3.21.1, prebuilt CPU binaries) 1 thread. Tokens/s are per repetition (min–max); ratios are taken within each repetition.\n\n`;
  md += mdTable(['contender', 'decode tokens/s', 'vs llama.cpp Q8_0', 'vs llama.cpp at the same precision'],
    names.map((n) => [n, `${range(r.rates[n])} (median ${median(r.rates[n]).toFixed(0)})`, ratios(r.rates[n], q8), same(n)]));
  const id = r.identity;
  md += `\nGreedy identity, specserve fp32 vs llama.cpp f32: ${id.identical}/${id.total} tokens identical before the first difference, ${id.promptsIdentical}/${id.prompts} prompts identical throughout.\n`;
  if (r.concurrency.length) {
    md += `\nStreams at once (specserve ${r.defaultDtype} plain vs llama.cpp Q8_0 with one sequence per stream in one context, stepped together), aggregate decode tokens/s per repetition:\n\n`;
    md += mdTable(['streams', 'specserve', 'llama.cpp Q8_0', 'ratio'],
      r.concurrency.map((c) => [c.streams, range(c.specserve), range(c.llamacpp), ratios(c.specserve, c.llamacpp)]));
  }
  return md;
}

export function peerCharts(r: PeerResult): Chart[] {
  const names = Object.keys(r.rates);
  return [
    {
      title: 'specserve vs llama.cpp, decode tokens/s (batch 1, greedy, same weights; median of repetitions)',
      type: 'bar',
      labels: names,
      series: [{ label: 'tokens/s', data: names.map((n) => median(r.rates[n])) }],
      yLabel: 'tokens/s',
    },
    ...(r.concurrency.length
      ? [{
          title: 'Aggregate decode tokens/s with N streams (median of repetitions)',
          type: 'bar' as const,
          labels: r.concurrency.map((c) => `${c.streams} streams`),
          series: [
            { label: `specserve ${r.defaultDtype}`, data: r.concurrency.map((c) => median(c.specserve)) },
            { label: 'llama.cpp Q8_0', data: r.concurrency.map((c) => median(c.llamacpp)) },
          ],
          yLabel: 'tokens/s',
        }]
      : []),
  ];
}
