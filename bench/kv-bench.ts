// KV cache benchmark: fp32 vs SAQ on long contexts (≥ 1,000 tokens) with the real model.
//   - KV bytes per token and in total at the end of the run (from the cache's own accounting)
//   - greedy agreement with the fp32 cache over the first 256 generated tokens, free-running (each
//     cache generates on its own, the issue's measure: one flip changes the rest of the text), for
//     several prompts spread over the held-out text; with the fp32 top-1/top-2 margin where each
//     prompt first diverges (a near-tie or a real error)
//   - teacher-forced agreement: both caches score the same text (prompt + fp32's continuation)
//     and we count positions where their top-1 tokens agree: each position judged on its own
//   - held-out perplexity, scored through the cache (echo + logprobs, chunked prefill so later
//     chunks attend to quantized KV)
//   - tokens/s with each, and what building the past K/V (gather, with dequantization) costs per
//     decode step next to the forward itself at the same context
//   - how many 2,000-token sequences fit in a fixed budget
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { createEngine, type LocalEngine } from '../src/engine/index.ts';
import { greedyRequest } from './request.ts';
import { PagedKvCache, SAQ_DEFAULTS } from '../src/kvcache/paged.ts';
import { loadModelConfig, type ModelConfig } from '../src/model/config.ts';
import { chainInput, Runner } from '../src/worker/runner.ts';


/** One greedy request: its ids, its seconds, and the seconds after its first token (decoding). */
async function run(engine: LocalEngine, prompt: number[], maxTokens: number) {
  const ids: number[] = [];
  const t0 = performance.now();
  let first = 0;
  for await (const ev of engine.generateText(greedyRequest(prompt, { maxTokens }))) {
    if (ev.type !== 'text') continue;
    if (!first && ev.tokenIds.length) first = performance.now();
    ids.push(...ev.tokenIds);
  }
  const end = performance.now();
  return { ids, seconds: (end - t0) / 1000, decodeSeconds: (end - first) / 1000 };
}

/** Scores `ids` through the cache: per position (from 1), the token's log-probability and the
 *  top two candidates (as text). */
async function score(engine: LocalEngine, ids: number[]): Promise<{ logprob: number; top: { token: string; logprob: number }[] }[]> {
  const out: { logprob: number; top: { token: string; logprob: number }[] }[] = [];
  for await (const ev of engine.generateText(greedyRequest(ids, { maxTokens: 0, echo: true, logprobs: 2 }))) {
    if (ev.type === 'text' && ev.logprobs) {
      for (const lp of ev.logprobs) if (lp.logprob !== null) out.push({ logprob: lp.logprob, top: lp.top.map((t) => ({ token: t.token, logprob: t.logprob })) });
    }
  }
  return out;
}

async function perplexity(engine: LocalEngine, ids: number[]): Promise<number> {
  const s = await score(engine, ids);
  return Math.exp(-s.reduce((a, x) => a + x.logprob, 0) / s.length);
}

export interface KvPromptResult {
  offset: number;
  /** Free-running: share of the 256 generated positions where both caches chose the same token. */
  freeRunning: number;
  firstDivergence: number | null;
  /** fp32's top-1 minus top-2 log-probability where SAQ first chose differently (teacher-forced). */
  fp32MarginAtDivergence: number | null;
  /** Teacher-forced: same text scored by both, top-1 agreement over the generated positions. */
  teacherForced: number;
}

export interface KvBenchResult {
  contextTokens: number;
  generated: number;
  /** tokensPerSecond: whole requests (prompt included); decodeTokensPerSecond: after the first token. */
  fp32: { bytesPerToken: number; bytes: number; tokensPerSecond: number; decodeTokensPerSecond: number; perplexity: number };
  saq: { bytesPerToken: number; bytes: number; tokensPerSecond: number; decodeTokensPerSecond: number; perplexity: number; config: typeof SAQ_DEFAULTS };
  bytesRatio: number;
  /** Free-running greedy agreement over the first 256 generated tokens, mean over prompts. */
  greedyAgreement: number;
  /** Earliest first divergence over the prompts. */
  firstDivergence: number | null;
  /** Teacher-forced top-1 agreement over the generated positions, mean over prompts. */
  teacherForcedAgreement: number;
  /** Mean |log p(token)| difference between the caches over those positions (nats). */
  meanAbsLogprobChange: number;
  prompts: KvPromptResult[];
  perplexityChange: number;
  /** Building the past K/V for one decode step at `contextTokens - 1` tokens (batch 1), and the
   *  forward it feeds, in ms. */
  stepCost: { past: number; gatherFp32Ms: number; gatherSaqMs: number; forwardMs: number };
  capacity2000: { budgetBytes: number; fp32: number; saq: number };
  /** Where SAQ pays: many long requests at once under a KV budget that holds only a few at fp32. */
  underBudget: BudgetResult;
}

export interface BudgetResult {
  budgetBytes: number;
  requests: number;
  promptTokens: number;
  generated: number;
  /** Aggregate tokens/s per alternation (completed requests' tokens over the time to complete all),
   *  the most requests decoding at once, and requests retried after a 429. */
  fp32: { tokensPerSecond: number[]; mostRunning: number; retries: number };
  saq: { tokensPerSecond: number[]; mostRunning: number; retries: number };
}

/** `requests` long requests submitted at once to an engine whose KV budget is `budgetBytes`,
 *  fp32 and SAQ alternating `rounds` times: aggregate generated tokens/s over the whole batch. */
export async function underBudget(modelDir: string, threads: number, prompts: number[][], generated: number, budgetBytes: number, rounds: number, log: (m: string) => void): Promise<BudgetResult> {
  const most = { fp32: 0, saq: 0 };
  const retries = { fp32: 0, saq: 0 };
  const rates = { fp32: [] as number[], saq: [] as number[] };
  for (let r = 0; r < rounds; r++) {
    for (const kvCache of ['fp32', 'saq'] as const) {
      const engine = await createEngine({ modelDir, threads, provider: 'cpu', kvCache, kvCacheBytes: budgetBytes }, {
        onLoad: (running) => (most[kvCache] = Math.max(most[kvCache], running)),
      });
      try {
        // a request the budget cannot hold any more is failed with queue_full (429): the client
        // retries it from the start, as an API client would after a 429
        const complete = async (p: number[]): Promise<number> => {
          for (;;) {
            try {
              return (await run(engine, p, generated)).ids.length;
            } catch (err) {
              if ((err as { code?: string }).code !== 'queue_full') throw err;
              retries[kvCache]++;
              await new Promise((r) => setTimeout(r, 20));
            }
          }
        };
        const t0 = performance.now();
        const done = await Promise.all(prompts.map(complete));
        rates[kvCache].push(done.reduce((a, n) => a + n, 0) / ((performance.now() - t0) / 1000));
      } finally {
        await engine.close();
      }
      log(`kv bench: ${prompts.length} requests under ${budgetBytes / 2 ** 20} MiB, ${kvCache}: ${rates[kvCache].at(-1)!.toFixed(0)} tok/s`);
    }
  }
  return {
    budgetBytes, requests: prompts.length, promptTokens: prompts[0].length, generated,
    fp32: { tokensPerSecond: rates.fp32, mostRunning: most.fp32, retries: retries.fp32 },
    saq: { tokensPerSecond: rates.saq, mostRunning: most.saq, retries: retries.saq },
  };
}

export interface KvBenchOptions {
  /** 'spread' (the measure): up to 8 prompts evenly spread over the held-out text, the first at
   *  token 0 and the last ending at its end. 'shifted': 8 other offsets, each half a spacing on
   *  (spacing (N - promptLen) / 8), a check that a configuration is not tuned to the first set. */
  prompts?: 'spread' | 'shifted';
}

export async function kvBench(modelDir: string, threads: number, log = console.log, opts: KvBenchOptions = {}): Promise<KvBenchResult> {
  const heldout = readFileSync(path.join(modelDir, 'heldout.txt'), 'utf8');
  const engines: Record<'fp32' | 'saq', LocalEngine> = {
    fp32: await createEngine({ modelDir, threads, provider: 'cpu', kvCache: 'fp32', prefillChunk: 32 }),
    saq: await createEngine({ modelDir, threads, provider: 'cpu', kvCache: 'saq', prefillChunk: 32 }),
  };
  try {
    const all = engines.fp32.tokenize(heldout);
    const ctx = engines.fp32.info.contextLength;
    const G = 256;
    const promptLen = Math.min(768, ctx - G);
    const scored = all.slice(0, Math.min(all.length, ctx - 1));
    // prompts spread evenly over the held-out text (up to 8), not one lucky or unlucky passage
    const nPrompts = Math.max(1, Math.min(8, Math.floor((all.length - promptLen) / 400) + 1));
    const offsets =
      opts.prompts === 'shifted'
        ? Array.from({ length: 8 }, (_, i) => Math.floor(((i + 0.5) * Math.max(0, all.length - promptLen)) / 8))
        : Array.from({ length: nPrompts }, (_, i) => (nPrompts === 1 ? 0 : Math.floor((i * (all.length - promptLen)) / (nPrompts - 1))));
    const seconds = { fp32: 0, saq: 0 };
    const decodeSeconds = { fp32: 0, saq: 0 };
    const prompts: KvPromptResult[] = [];
    let absLp = 0;
    let nLp = 0;
    for (const offset of offsets) {
      const prompt = all.slice(offset, offset + promptLen);
      log(`kv bench: prompt at token ${offset}: ${promptLen} tokens + ${G} generated, fp32 and saq`);
      const a = await run(engines.fp32, prompt, G);
      const b = await run(engines.saq, prompt, G);
      seconds.fp32 += a.seconds;
      seconds.saq += b.seconds;
      decodeSeconds.fp32 += a.decodeSeconds;
      decodeSeconds.saq += b.decodeSeconds;
      let same = 0;
      let first: number | null = null;
      for (let i = 0; i < G; i++) {
        if (a.ids[i] === b.ids[i]) same++;
        else if (first === null) first = i;
      }
      // teacher-forced: the same text (prompt + fp32's continuation, as much as the context holds)
      const text = prompt.concat(a.ids).slice(0, ctx - 1);
      const [sa, sb] = [await score(engines.fp32, text), await score(engines.saq, text)];
      let tfSame = 0;
      let tfN = 0;
      let tfFirstMargin: number | null = null;
      for (let p = promptLen - 1; p < sa.length; p++) {
        // entry p scores token p + 1: generated token p + 1 - promptLen
        tfN++;
        absLp += Math.abs(sa[p].logprob - sb[p].logprob);
        nLp++;
        if (sa[p].top[0].token === sb[p].top[0].token) tfSame++; // top candidates come as text
      }
      if (first !== null) {
        const e = sa[promptLen - 1 + first];
        tfFirstMargin = e && e.top.length > 1 ? e.top[0].logprob - e.top[1].logprob : null;
      }
      prompts.push({ offset, freeRunning: same / G, firstDivergence: first, fp32MarginAtDivergence: tfFirstMargin, teacherForced: tfSame / tfN });
      log(`  free-running ${((same / G) * 100).toFixed(1)}% (first divergence ${first ?? 'none'}${tfFirstMargin !== null ? `, fp32 margin there ${tfFirstMargin.toFixed(4)} nats` : ''}), teacher-forced ${((tfSame / tfN) * 100).toFixed(1)}%`);
    }
    log(`kv bench: perplexity over ${scored.length} held-out tokens`);
    const ppl = { fp32: await perplexity(engines.fp32, scored), saq: await perplexity(engines.saq, scored) };
    const cfg = loadModelConfig(modelDir);
    const shape = { layers: cfg.numLayers, kvHeads: cfg.numKvHeads, headDim: cfg.headDim };
    const budget = 64 * 1024 * 1024;
    // the cache's own accounting for a sequence of the final length (it is deterministic in length)
    const held = promptLen + G - 1; // the last token is never cached
    log(`kv bench: step cost at ${held} tokens of past`);
    const stepCost = await measureStepCost(cfg, threads, held);
    // 12 requests of 700 + 64 tokens; 16 MiB holds three of them at fp32 (4.7 MB each). Admission
    // reserves a request's prompt, not its growth, so a budget that long generations outgrow
    // fails requests mid-run (429) at fp32: the generations here stay short of that
    const longPrompts = Array.from({ length: 12 }, (_, i) => all.slice((i * 211) % (all.length - 700), ((i * 211) % (all.length - 700)) + 700));
    const budget16 = await underBudget(modelDir, threads, longPrompts, 64, 16 * 2 ** 20, 2, log);
    const mean = (f: (p: KvPromptResult) => number) => prompts.reduce((x, p) => x + f(p), 0) / prompts.length;
    const firsts = prompts.map((p) => p.firstDivergence).filter((x): x is number => x !== null);
    const aBytes = bytesHeld(shape, held, false);
    const bBytes = bytesHeld(shape, held, true);
    const gen = G * prompts.length;
    return {
      contextTokens: promptLen + G,
      generated: G,
      fp32: { bytesPerToken: aBytes / held, bytes: aBytes, tokensPerSecond: gen / seconds.fp32, decodeTokensPerSecond: (gen - prompts.length) / decodeSeconds.fp32, perplexity: ppl.fp32 },
      saq: { bytesPerToken: bBytes / held, bytes: bBytes, tokensPerSecond: gen / seconds.saq, decodeTokensPerSecond: (gen - prompts.length) / decodeSeconds.saq, perplexity: ppl.saq, config: SAQ_DEFAULTS },
      bytesRatio: bBytes / aBytes,
      greedyAgreement: mean((p) => p.freeRunning),
      firstDivergence: firsts.length ? Math.min(...firsts) : null,
      teacherForcedAgreement: mean((p) => p.teacherForced),
      meanAbsLogprobChange: absLp / nLp,
      prompts,
      perplexityChange: ppl.saq / ppl.fp32 - 1,
      stepCost,
      capacity2000: { budgetBytes: budget, fp32: capacity(shape, budget, false), saq: capacity(shape, budget, true) },
      underBudget: budget16,
    };
  } finally {
    await engines.fp32.close();
    await engines.saq.close();
  }
}

/** ms per decode step at `past` tokens (batch 1): gathering the past K/V from an fp32 and from a
 *  SAQ cache (dequantizing its stairs), and the forward itself. Median of repeated runs. */
async function measureStepCost(cfg: ModelConfig, threads: number, past: number): Promise<KvBenchResult['stepCost']> {
  const shape = { layers: cfg.numLayers, kvHeads: cfg.numKvHeads, headDim: cfg.headDim };
  const W = shape.kvHeads * shape.headDim;
  const src = Array.from({ length: shape.layers }, (_, l) => Float32Array.from({ length: past * W }, (_, i) => Math.sin(i * 0.01 + l) * 2));
  const keys = Array.from({ length: shape.layers }, () => new Float32Array(past * W));
  const values = Array.from({ length: shape.layers }, () => new Float32Array(past * W));
  const median = (xs: number[]) => xs.sort((x, y) => x - y)[xs.length >> 1];
  const timeIt = async (f: () => unknown, n: number) => {
    for (let i = 0; i < 5; i++) await f();
    const ts: number[] = [];
    for (let i = 0; i < n; i++) {
      const t0 = performance.now();
      await f();
      ts.push(performance.now() - t0);
    }
    return median(ts);
  };
  const gatherMs = (saq: boolean) => {
    const kv = new PagedKvCache(shape, 1 << 30, 16, saq ? SAQ_DEFAULTS : null);
    kv.append(0, src, src, [...Array(past).keys()]);
    return timeIt(() => kv.gather(0, keys, values, 0, past), 60);
  };
  const gatherFp32Ms = await gatherMs(false);
  const gatherSaqMs = await gatherMs(true);
  const runner = await Runner.create(cfg, { provider: 'cpu', dtype: 'fp32', threads });
  try {
    const x = chainInput(cfg, [1], past, { keys, values });
    const forwardMs = await timeIt(() => runner.forward(x), 40);
    return { past, gatherFp32Ms, gatherSaqMs, forwardMs };
  } finally {
    await runner.release();
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
