// Measures what speculation has to work with on this machine: decode latency per token through the
// engine's runner, and the cost of verifying T tokens in one forward relative to one token, at a few
// context lengths. Also writes greedy sample generations. Results go to MODEL_DIR/measurements.json.
//
// usage: node --import tsx models/tooling/measure.ts MODEL_DIR [--threads N]
import { writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createEngine } from '../../src/engine/index.ts';
import { loadModelConfig } from '../../src/model/config.ts';
import { autoThreads, chainInput, Runner } from '../../src/worker/runner.ts';

const dir = process.argv[2];
const threadsArg = process.argv.indexOf('--threads');
const threads = threadsArg > 0 ? Number(process.argv[threadsArg + 1]) : autoThreads();
if (!dir) {
  console.error('usage: node --import tsx models/tooling/measure.ts MODEL_DIR [--threads N]');
  process.exit(2);
}

const cfg = loadModelConfig(dir);
const runner = await Runner.create(cfg, { provider: 'cpu', dtype: 'auto', threads }); // the server's defaults
const W = cfg.numKvHeads * cfg.headDim;

async function forwardMs(past: number, T: number, reps: number): Promise<number> {
  const pastKeys = Array.from({ length: cfg.numLayers }, () => new Float32Array(past * W).map(() => Math.random() * 0.1));
  const input = chainInput(cfg, Array.from({ length: T }, (_, i) => 100 + i), past, { keys: pastKeys, values: pastKeys });
  for (let i = 0; i < 3; i++) await runner.forward(input);
  const times: number[] = [];
  for (let i = 0; i < reps; i++) {
    const t0 = performance.now();
    await runner.forward(input);
    times.push(performance.now() - t0);
  }
  times.sort((a, b) => a - b);
  return times[Math.floor(times.length / 2)]; // median
}

const verifyCost: Record<string, Record<string, number>> = {};
for (const past of [128, 512]) {
  const base = await forwardMs(past, 1, 40);
  verifyCost[`context ${past}`] = { 'ms for 1 token': Number(base.toFixed(3)) };
  for (const T of [4, 8, 16]) verifyCost[`context ${past}`][`${T} tokens / 1`] = Number(((await forwardMs(past, T, 40)) / base).toFixed(3));
}
await runner.release();

// decode ms/token through the whole engine (worker, sampling, KV cache)
const engine = await createEngine({ modelDir: dir, threads, provider: 'cpu' });
const samples: { prompt: string; completion: string }[] = [];
const prompts = ['def fibonacci(n):\n', 'class HTTPServer:\n    """', 'The json module', '>>> sorted([3, 1, 2])\n'];
let tokens = 0;
let ms = 0;
for (const prompt of prompts) {
  const t0 = performance.now();
  let text = '';
  for await (const ev of engine.generateText({
    prompt, maxTokens: 96, minTokens: 0, ignoreEos: false, stop: [], logprobs: null, echo: false,
    sampling: { temperature: 0, topP: 1, topK: 0, presencePenalty: 0, frequencyPenalty: 0 }, speculative: { drafter: 'none' },
  })) {
    if (ev.type === 'text') text += ev.text;
    else tokens += ev.completionTokens;
  }
  ms += performance.now() - t0;
  samples.push({ prompt, completion: text });
}
await engine.close();
const out = {
  machine: `${os.cpus()[0]?.model ?? 'cpu'} x${os.availableParallelism()}`,
  threads,
  dtype: runner.variant.dtype,
  decodeMsPerToken: Number((ms / tokens).toFixed(3)),
  verifyCost,
  samples,
};
writeFileSync(path.join(dir, 'measurements.json'), JSON.stringify(out, null, 2));
console.log(JSON.stringify(out, null, 2));
