// node --import tsx bench/graph-past.ts --a OLD.onnx --a-layout token [--b NEW.onnx] [--shapes JSON]
// Times two exports of the target's speculative graph on the same inputs, alternating call by call,
// at several (batch, new tokens, past) shapes: how a change to the graph (such as the layout of its
// past K/V input) moves the forward alone, without the engine around it. An older export comes out
// of git, e.g. `git show 2e587f0:models/specserve-tiny/onnx/decoder_spec.onnx > /tmp/old.onnx` (the
// last one whose past was token-major); `--a models/specserve-tiny/onnx/model.onnx --a-layout
// optimum` compares with the standard export the transformers.js peer runs (it also returns the
// whole present K/V). Inputs are random; only the time is compared.
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Command } from 'commander';
import ort from 'onnxruntime-node';
import { loadModelConfig } from '../src/engine/model-config.ts';
import { median } from './report.ts';

const MODEL = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'models', 'specserve-tiny');
const o = new Command()
  .requiredOption('--a <file>', 'first graph')
  .option('--a-layout <layout>', "its past layout: 'token' ([B, P, KV, hd]), 'head' ([B, KV, P, hd]) or 'optimum' (the standard export: head-major past, attention_mask instead of attention_bias)", 'head')
  .option('--b <file>', 'second graph', path.join(MODEL, 'onnx', 'decoder_spec.onnx'))
  .option('--b-layout <layout>', 'its past layout', 'head')
  .option('--shapes <json>', '[batch, new tokens, past] triples', '[[1,1,200],[1,8,200],[4,1,200],[16,1,200],[16,4,200],[16,1,600],[32,1,250]]')
  .option('--calls <n>', 'calls of each graph per shape', (v) => parseInt(v, 10), 100)
  .option('--threads <n>', 'onnxruntime intra-op threads', (v) => parseInt(v, 10), 2)
  .parse()
  .opts();

const cfg = loadModelConfig(MODEL);
const opts: ort.InferenceSession.SessionOptions = {
  graphOptimizationLevel: 'all', interOpNumThreads: 1, executionMode: 'sequential', intraOpNumThreads: o.threads,
  extra: { session: { intra_op: { allow_spinning: '0' } } },
};
const graphs = [
  { file: o.a, layout: o.aLayout, session: await ort.InferenceSession.create(o.a, opts) },
  { file: o.b, layout: o.bLayout, session: await ort.InferenceSession.create(o.b, opts) },
];
const { numLayers: L, numKvHeads: KV, headDim: HD } = cfg;
console.log(`${graphs[0].file} (${graphs[0].layout}-major past) vs ${graphs[1].file} (${graphs[1].layout}-major past), threads=${o.threads}, median of ${o.calls} calls each`);
for (const [B, T, P] of JSON.parse(o.shapes) as [number, number, number][]) {
  const past = Array.from({ length: 2 * L }, () => Float32Array.from({ length: B * P * KV * HD }, () => Math.random() - 0.5));
  const feeds = graphs.map((g) => {
    const f: Record<string, ort.Tensor> = {
      input_ids: new ort.Tensor('int64', new BigInt64Array(B * T).fill(5n), [B, T]),
      position_ids: new ort.Tensor('int64', new BigInt64Array(B * T).fill(BigInt(P)), [B, T]),
    };
    if (g.layout === 'optimum') f.attention_mask = new ort.Tensor('int64', new BigInt64Array(B * (P + T)).fill(1n), [B, P + T]);
    else f.attention_bias = new ort.Tensor('float32', new Float32Array(B * T * (P + T)), [B, 1, T, P + T]);
    for (let l = 0; l < L; l++)
      for (const [i, kv] of ['key', 'value'].entries())
        f[`past_key_values.${l}.${kv}`] = new ort.Tensor('float32', past[2 * l + i], g.layout === 'token' ? [B, P, KV, HD] : [B, KV, P, HD]);
    return f;
  });
  const ms: number[][] = [[], []];
  for (let c = 0; c < o.calls + 5; c++)
    for (const i of c % 2 ? [1, 0] : [0, 1]) {
      const t = performance.now();
      await graphs[i].session.run(feeds[i]);
      if (c >= 5) ms[i].push(performance.now() - t);
    }
  const [a, b] = ms.map(median);
  console.log(`batch ${B}, ${T} new, past ${P}: ${a.toFixed(2)} ms vs ${b.toFixed(2)} ms, b is ${(a / b).toFixed(2)}x as fast`);
}
