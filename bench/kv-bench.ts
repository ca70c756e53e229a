// KV cache benchmark: fp32 vs SAQ on long contexts (≥ 1,000 tokens) with the real model.
//   - KV bytes per token and in total at the end of the run (from the cache's own accounting)
//   - greedy agreement with the fp32 cache over the first 256 generated tokens
//   - held-out perplexity, scored through the cache (echo + logprobs, chunked prefill so later
//     chunks attend to quantized KV)
//   - tokens/s with each
//   - how many 2,000-token sequences fit in a fixed budget
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { createEngine, type LocalEngine } from '../src/engine/index.ts';
import { PagedKvCache, SAQ_DEFAULTS } from '../src/kvcache/paged.ts';
import { loadModelConfig } from '../src/engine/model-config.ts';
import type { TextRequest } from '../src/engine/types.ts';

const GREEDY = { temperature: 0, topP: 1, topK: 0, presencePenalty: 0, frequencyPenalty: 0 };

function req(prompt: string | number[], over: Partial<TextRequest>): TextRequest {
  return { prompt, maxTokens: 1, minTokens: 0, ignoreEos: true, stop: [], sampling: GREEDY, logprobs: null, echo: false, speculative: { drafter: 'none' }, ...over };
}

async function run(engine: LocalEngine, prompt: number[], maxTokens: number) {
  const ids: number[] = [];
  const t0 = performance.now();
  for await (const ev of engine.generateText(req(prompt, { maxTokens }))) if (ev.type === 'text') ids.push(...ev.tokenIds);
  return { ids, seconds: (performance.now() - t0) / 1000 };
}

async function perplexity(engine: LocalEngine, ids: number[]): Promise<number> {
  let nll = 0;
  let n = 0;
  for await (const ev of engine.generateText(req(ids, { maxTokens: 0, echo: true, logprobs: 0 }))) {
    if (ev.type === 'text' && ev.logprobs) {
      for (const lp of ev.logprobs) {
        if (lp.logprob === null) continue;
        nll -= lp.logprob;
        n++;
      }
    }
  }
  return Math.exp(nll / n);
}

export interface KvBenchResult {
  contextTokens: number;
  generated: number;
  fp32: { bytesPerToken: number; bytes: number; tokensPerSecond: number; perplexity: number };
  saq: { bytesPerToken: number; bytes: number; tokensPerSecond: number; perplexity: number; config: typeof SAQ_DEFAULTS };
  bytesRatio: number;
  greedyAgreement: number;
  firstDivergence: number | null;
  perplexityChange: number;
  capacity2000: { budgetBytes: number; fp32: number; saq: number };
}

export async function kvBench(modelDir: string, threads: number, log = console.log): Promise<KvBenchResult> {
  const heldout = readFileSync(path.join(modelDir, 'heldout.txt'), 'utf8');
  const engines: Record<'fp32' | 'saq', LocalEngine> = {
    fp32: await createEngine({ modelDir, threads, provider: 'cpu', kvCache: 'fp32', prefillChunk: 32 }),
    saq: await createEngine({ modelDir, threads, provider: 'cpu', kvCache: 'saq', prefillChunk: 32 }),
  };
  try {
    const all = engines.fp32.tokenize(heldout);
    const ctx = engines.fp32.info.contextLength;
    const promptLen = Math.min(768, ctx - 256);
    const prompt = all.slice(0, promptLen);
    const scored = all.slice(0, Math.min(all.length, ctx - 1));
    const out: Partial<Record<'fp32' | 'saq', { ids: number[]; seconds: number; ppl: number }>> = {};
    for (const kind of ['fp32', 'saq'] as const) {
      log(`kv bench: ${kind}: ${promptLen}-token prompt + 256 generated, perplexity over ${scored.length} held-out tokens`);
      const r = await run(engines[kind], prompt, 256);
      out[kind] = { ...r, ppl: await perplexity(engines[kind], scored) };
    }
    const a = out.fp32!;
    const b = out.saq!;
    let same = 0;
    let first: number | null = null;
    for (let i = 0; i < 256; i++) {
      if (a.ids[i] === b.ids[i]) same++;
      else if (first === null) first = i;
    }
    const cfg = loadModelConfig(modelDir);
    const shape = { layers: cfg.numLayers, kvHeads: cfg.numKvHeads, headDim: cfg.headDim };
    const budget = 64 * 1024 * 1024;
    // the cache's own accounting for a sequence of the final length (it is deterministic in length)
    const held = promptLen + 256 - 1; // the last token is never cached
    const aBytes = bytesHeld(shape, held, false);
    const bBytes = bytesHeld(shape, held, true);
    return {
      contextTokens: promptLen + 256,
      generated: 256,
      fp32: { bytesPerToken: aBytes / held, bytes: aBytes, tokensPerSecond: 256 / a.seconds, perplexity: a.ppl },
      saq: { bytesPerToken: bBytes / held, bytes: bBytes, tokensPerSecond: 256 / b.seconds, perplexity: b.ppl, config: SAQ_DEFAULTS },
      bytesRatio: bBytes / aBytes,
      greedyAgreement: same / 256,
      firstDivergence: first,
      perplexityChange: b.ppl / a.ppl - 1,
      capacity2000: { budgetBytes: budget, fp32: capacity(shape, budget, false), saq: capacity(shape, budget, true) },
    };
  } finally {
    await engines.fp32.close();
    await engines.saq.close();
  }
}

function bytesHeld(shape: { layers: number; kvHeads: number; headDim: number }, tokens: number, saq: boolean): number {
  const kv = new PagedKvCache(shape, 1 << 30, 16, saq ? SAQ_DEFAULTS : null);
  const W = shape.kvHeads * shape.headDim;
  const src = Array.from({ length: shape.layers }, () => Float32Array.from({ length: W }, (_, i) => Math.sin(i)));
  for (let t = 0; t < tokens; t++) kv.append(0, src, src, [0]);
  return kv.stats().bytesInUse;
}

/** 2,000-token sequences that fit in `budget` bytes, filling a real cache until it refuses. */
function capacity(shape: { layers: number; kvHeads: number; headDim: number }, budget: number, saq: boolean): number {
  const kv = new PagedKvCache(shape, budget, 16, saq ? SAQ_DEFAULTS : null);
  const W = shape.kvHeads * shape.headDim;
  const chunk = 16;
  const src = Array.from({ length: shape.layers }, () => Float32Array.from({ length: chunk * W }, (_, i) => Math.sin(i)));
  const rows = [...Array(chunk).keys()];
  let n = 0;
  for (;;) {
    for (let t = 0; t < 2000; t += chunk) {
      if (!kv.append(n, src, src, t + chunk <= 2000 ? rows : rows.slice(0, 2000 - t))) return n;
    }
    n++;
  }
}
