// node --import tsx bench/batch-past.ts [--streams 16] [--tokens 128] [--pairs 3]
// The engine's scheduler in this process (no worker, no HTTP), plain greedy decoding of N streams
// at once, with the kept batch past (src/kvcache/batch-past.ts) off and on, alternating within each
// pair so drift of the machine hits both. Reports tokens/s of each, their ratio, and with it off
// the share of the step spent building the past K/V from the paged blocks.
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Command } from 'commander';
import { loadModelConfig } from '../src/model/config.ts';
import type { SeqRequest } from '../src/worker/protocol.ts';
import { Runner } from '../src/worker/runner.ts';
import { Scheduler } from '../src/worker/scheduler.ts';
import { TextCodec } from '../src/model/text.ts';
import { PagedKvCache } from '../src/kvcache/paged.ts';
import { PROMPTS } from './prompts.ts';

const o = new Command()
  .option('--model <dir>', 'model folder', path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'models', 'specserve-tiny'))
  .option('--streams <n>', 'sequences decoded at once', (v) => parseInt(v, 10), 16)
  .option('--tokens <n>', 'tokens generated per sequence', (v) => parseInt(v, 10), 128)
  .option('--pairs <n>', 'off/on pairs', (v) => parseInt(v, 10), 3)
  .option('--threads <n>', 'onnxruntime intra-op threads', (v) => parseInt(v, 10), 2)
  .parse()
  .opts();

const cfg = loadModelConfig(o.model);
const runner = await Runner.create(cfg, { provider: 'cpu', dtype: 'fp32', threads: o.threads });
const kv = new PagedKvCache({ layers: cfg.numLayers, kvHeads: cfg.numKvHeads, headDim: cfg.headDim }, 256 << 20, 16, null);
let gatherMs = 0;
const gatherLayers = kv.gatherLayers.bind(kv);
kv.gatherLayers = (...args) => {
  const t0 = performance.now();
  const n = gatherLayers(...args);
  gatherMs += performance.now() - t0;
  return n;
};
const codec = new TextCodec(cfg.dir);
const prompts = Object.values(PROMPTS).flat();
let nextId = 0;

/** Decodes `streams` sequences together to completion; tokens/s and the gather share. */
async function run(keepBatchPast: boolean): Promise<{ tps: number; gatherShare: number }> {
  let done = 0;
  let tokens = 0;
  const sched = new Scheduler({
    model: cfg, target: runner, kv, drafters: new Map(),
    options: { maxBatchSize: 64, maxQueuedRequests: 64, prefillChunk: 256, draftPolicy: 'static', keepBatchPast },
    send: (m) => {
      if (m.type === 'done') {
        done++;
        tokens += m.completionTokens;
      }
    },
  });
  for (let i = 0; i < o.streams; i++) {
    const req: SeqRequest = {
      id: nextId++, promptIds: codec.encode(prompts[i % prompts.length]), maxTokens: o.tokens, minTokens: 0, ignoreEos: true, stop: [],
      sampling: { temperature: 0, topP: 1, topK: 0, presencePenalty: 0, frequencyPenalty: 0, seed: 0 }, logprobs: null, promptLogprobs: false,
      drafter: 'none', maxDraftTokens: 0, acceptance: 'lossless', lanternK: 0, lanternDelta: 0, deadline: 0,
    };
    sched.submit(req);
  }
  gatherMs = 0;
  const t0 = performance.now();
  while (done < o.streams) await sched.step();
  const ms = performance.now() - t0;
  return { tps: (tokens / ms) * 1000, gatherShare: gatherMs / ms };
}

await run(true); // warm-up
console.log(`${o.streams} streams x ${o.tokens} tokens, plain greedy, threads=${o.threads}`);
for (let p = 0; p < o.pairs; p++) {
  const order = p % 2 === 0 ? [false, true] : [true, false];
  const r: Record<string, { tps: number; gatherShare: number }> = {};
  for (const keep of order) r[String(keep)] = await run(keep);
  console.log(
    `pair ${p + 1}: rebuilt each step ${r.false.tps.toFixed(0)} tok/s (gather ${(r.false.gatherShare * 100).toFixed(0)}% of the time), ` +
      `kept ${r.true.tps.toFixed(0)} tok/s: ${(((r.true.tps / r.false.tps) - 1) * 100).toFixed(0)}%`,
  );
}
await runner.release();
