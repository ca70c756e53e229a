// node --import tsx bench/kangaroo-cost.ts [model dir] — what Kangaroo's graphs cost on this
// machine: one draft call, deep-layer verification of 4 rows and a full target step, each alone,
// then 3 draft calls + verification back to back as the decode loop runs them (where the graphs'
// weights evict each other from the CPU cache). Single-threaded sessions, 200-token past.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import ort from 'onnxruntime-node';

const dir = process.argv[2] ?? path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'models', 'specserve-tiny');
const o = { intraOpNumThreads: 1, interOpNumThreads: 1, graphOptimizationLevel: 'all' as const };
const full = await ort.InferenceSession.create(path.join(dir, 'onnx', 'decoder_spec.onnx'), o);
const draft = await ort.InferenceSession.create(path.join(dir, 'kangaroo', 'draft.onnx'), o);
const deep = await ort.InferenceSession.create(path.join(dir, 'kangaroo', 'deep.onnx'), o);
const l: number = JSON.parse(readFileSync(path.join(dir, 'kangaroo', 'kangaroo.json'), 'utf8')).exit_layer;
const P = 200, KV = 2, HD = 64, D = 256, T = 4, L = 6;
const kv = (n: number) => new ort.Tensor('float32', new Float32Array(n * KV * HD), [1, KV, n, HD]);
const one = () => new ort.Tensor('int64', new BigInt64Array(1), [1, 1]);
const bias1 = () => new ort.Tensor('float32', new Float32Array(P + 1), [1, 1, 1, P + 1]);
const g: Record<string, ort.Tensor> = { input_ids: one(), position_ids: one(), attention_bias: bias1(), 'adapter_past.key': kv(P), 'adapter_past.value': kv(P) };
for (let i = 0; i < l; i++) for (const x of ['key', 'value']) g[`past_key_values.${i}.${x}`] = kv(P);
const d: Record<string, ort.Tensor> = {
  hidden_shallow: new ort.Tensor('float32', new Float32Array(T * D), [1, T, D]),
  position_ids: new ort.Tensor('int64', new BigInt64Array(T), [1, T]),
  attention_bias: new ort.Tensor('float32', new Float32Array(T * (P + T)), [1, 1, T, P + T]),
};
for (let i = l; i < L; i++) for (const x of ['key', 'value']) d[`past_key_values.${i}.${x}`] = kv(P);
const f: Record<string, ort.Tensor> = { input_ids: one(), position_ids: one(), attention_bias: bias1() };
for (let i = 0; i < L; i++) for (const x of ['key', 'value']) f[`past_key_values.${i}.${x}`] = kv(P);

async function ms(fn: () => Promise<unknown>, n = 200): Promise<number> {
  for (let i = 0; i < 10; i++) await fn();
  const t0 = performance.now();
  for (let i = 0; i < n; i++) await fn();
  return (performance.now() - t0) / n;
}
const draftMs = await ms(() => draft.run(g));
const deepMs = await ms(() => deep.run(d));
const fullMs = await ms(() => full.run(f));
const loopMs = await ms(async () => {
  for (let i = 0; i < 3; i++) await draft.run(g);
  await deep.run(d);
});
console.log(`exit layer ${l} of ${L}: draft call ${draftMs.toFixed(2)} ms, deep verify of ${T} rows ${deepMs.toFixed(2)} ms, full target step ${fullMs.toFixed(2)} ms`);
console.log(`3 drafts + verify in a loop ${loopMs.toFixed(2)} ms (${(3 * draftMs + deepMs).toFixed(2)} ms from the calls alone) = ${(loopMs / fullMs).toFixed(2)} target steps`);
