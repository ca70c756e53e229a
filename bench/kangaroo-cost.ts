// node --import tsx bench/kangaroo-cost.ts [model dir] — what Kangaroo's graphs cost on this
// machine: one draft call, deep-layer verification of 4 rows and a full target step, each alone,
// then 3 draft calls + verification back to back as the decode loop runs them (where the graphs'
// weights evict each other from the CPU cache). Single-threaded sessions, 200-token past.
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import ort from 'onnxruntime-node';
import { loadKangarooManifest } from '../src/drafters/kangaroo/index.ts';
import { loadModelConfig } from '../src/model/config.ts';
import { pastFeeds, pastTensor, rowFeeds, stepFeeds } from './feeds.ts';

const dir = process.argv[2] ?? path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'models', 'specserve-tiny');
const o = { intraOpNumThreads: 1, interOpNumThreads: 1, graphOptimizationLevel: 'all' as const };
const full = await ort.InferenceSession.create(path.join(dir, 'onnx', 'decoder_spec.onnx'), o);
const draft = await ort.InferenceSession.create(path.join(dir, 'kangaroo', 'draft.onnx'), o);
const deep = await ort.InferenceSession.create(path.join(dir, 'kangaroo', 'deep.onnx'), o);
const cfg = loadModelConfig(dir);
const manifest = loadKangarooManifest(dir);
if (!manifest) throw new Error(`no Kangaroo adapter in ${dir}`);
const l = manifest.exit_layer;
const L = cfg.numLayers, P = 200, T = 4;
const one = stepFeeds(cfg, 1, P); // a one-token step: input_ids, positions, cache slot, mask and every layer's past
// a draft call: the target's shallow layers in cache slots (one more row of buffer), the adapter
// appending its row after its P-row past
const slot = rowFeeds(1, P);
const g: Record<string, ort.Tensor> = {
  input_ids: one.input_ids, position_ids: one.position_ids, cache_position: slot.cache_position, cache_attention_bias: slot.attention_bias,
  attention_bias: new ort.Tensor('float32', new Float32Array(P + 1), [1, 1, 1, P + 1]),
  ...pastFeeds(cfg, 0, l, P + 1), 'adapter_past.key': pastTensor(cfg, P), 'adapter_past.value': pastTensor(cfg, P),
};
const d: Record<string, ort.Tensor> = {
  hidden_shallow: new ort.Tensor('float32', new Float32Array(T * cfg.hiddenSize), [1, T, cfg.hiddenSize]),
  ...rowFeeds(T, P), ...pastFeeds(cfg, l, L, P + T),
};

async function ms(fn: () => Promise<unknown>, n = 200): Promise<number> {
  for (let i = 0; i < 10; i++) await fn();
  const t0 = performance.now();
  for (let i = 0; i < n; i++) await fn();
  return (performance.now() - t0) / n;
}
const draftMs = await ms(() => draft.run(g));
const deepMs = await ms(() => deep.run(d));
const fullMs = await ms(() => full.run(one));
const loopMs = await ms(async () => {
  for (let i = 0; i < 3; i++) await draft.run(g);
  await deep.run(d);
});
console.log(`exit layer ${l} of ${L}: draft call ${draftMs.toFixed(2)} ms, deep verify of ${T} rows ${deepMs.toFixed(2)} ms, full target step ${fullMs.toFixed(2)} ms`);
console.log(`3 drafts + verify in a loop ${loopMs.toFixed(2)} ms (${(3 * draftMs + deepMs).toFixed(2)} ms from the calls alone) = ${(loopMs / fullMs).toFixed(2)} target steps`);
