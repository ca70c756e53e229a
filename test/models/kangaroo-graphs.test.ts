// Kangaroo's split target graphs on the committed model, in every weight format: the draft graph's
// shallow layers equal the full target's first layers (states and K/V) bit for bit, and the deep
// graph fed those states gives the full target's logits bit for bit, after a cached prefix. This is
// what lets the engine verify Kangaroo drafts with the deep layers alone and still promise output
// identical to plain decoding.
import assert from 'node:assert/strict';
import path from 'node:path';
import { test } from 'node:test';
import ort from 'onnxruntime-node';
import { loadKangarooManifest } from '../../src/drafters/kangaroo/index.ts';
import { headMajor } from '../../src/kvcache/paged.ts';
import { DTYPE_SUFFIX, WEIGHT_DTYPES } from '../../src/model/config.ts';
import { DEFAULT_MODEL_DIR } from '../helpers/model.ts';

const NEG = -1e9;

/** The adapter's mask: T new rows appended after P past rows, causal. */
function causal(T: number, P: number): Float32Array {
  const b = new Float32Array(T * (P + T));
  for (let t = 0; t < T; t++) for (let s = 0; s < P + T; s++) b[t * (P + T) + s] = s <= P + t ? 0 : NEG;
  return b;
}

/** The target layers' mask: T new rows in cache slots n.. of an S-row buffer holding n cached rows. */
function slotMask(T: number, n: number, S: number): Float32Array {
  const b = new Float32Array(T * S);
  for (let t = 0; t < T; t++) for (let s = 0; s < S; s++) b[t * S + s] = s <= n + t ? 0 : NEG;
  return b;
}

function maxDiff(a: Float32Array, b: Float32Array): number {
  assert.equal(a.length, b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

for (const dtype of WEIGHT_DTYPES) test(`${dtype}: draft (shallow layers) + deep graphs reproduce the full target`, async () => {
  const man = loadKangarooManifest(DEFAULT_MODEL_DIR);
  assert.ok(man, 'kangaroo/kangaroo.json is committed');
  const cfg = JSON.parse((await import('node:fs')).readFileSync(path.join(DEFAULT_MODEL_DIR, 'config.json'), 'utf8'));
  const L: number = cfg.num_hidden_layers;
  const l = man.exit_layer;
  const KV = man.kv_heads;
  const HD = man.head_dim;
  const D = man.hidden_size;
  const opts = { intraOpNumThreads: 1 };
  const sfx = DTYPE_SUFFIX[dtype];
  const full = await ort.InferenceSession.create(path.join(DEFAULT_MODEL_DIR, cfg.specserve.dtypes[dtype].speculative_onnx), opts);
  const draft = await ort.InferenceSession.create(path.join(DEFAULT_MODEL_DIR, 'kangaroo', `draft${sfx}.onnx`), opts);
  const deep = await ort.InferenceSession.create(path.join(DEFAULT_MODEL_DIR, 'kangaroo', `deep${sfx}.onnx`), opts);
  const ids = [12, 400, 87, 1033, 7, 2500, 99, 3000, 41, 5];
  const P = 6; // cached prefix, then T new tokens
  const T = ids.length - P;
  const i64 = (a: number[]) => BigInt64Array.from(a, BigInt);
  // the graphs output new K/V token-major and take their past head-major; the target layers' past
  // buffers (S rows) have room for the new rows, whose K/V the graph writes at cache_position
  const kvT = (data: Float32Array, n: number) => new ort.Tensor('float32', headMajor(data, n, KV, HD), [1, KV, n, HD]);
  const buffer = (data: Float32Array, n: number, S: number) => {
    const out = new Float32Array(KV * S * HD).fill(3); // rows past n: whatever was there, masked
    const hm = headMajor(data, n, KV, HD);
    for (let h = 0; h < KV; h++) out.set(hm.subarray(h * n * HD, (h + 1) * n * HD), h * S * HD);
    return new ort.Tensor('float32', out, [1, KV, S, HD]);
  };
  const empty = new Float32Array(0);
  const slots = (n: number, T: number) => new ort.Tensor('int64', i64(Array.from({ length: T }, (_, i) => n + i)), [1, T]);

  // the full target over the whole sequence at once
  const fullFeeds: Record<string, ort.Tensor> = {
    input_ids: new ort.Tensor('int64', i64(ids), [1, ids.length]),
    position_ids: new ort.Tensor('int64', i64(ids.map((_, i) => i)), [1, ids.length]),
    cache_position: slots(0, ids.length),
    attention_bias: new ort.Tensor('float32', slotMask(ids.length, 0, ids.length), [1, 1, ids.length, ids.length]),
  };
  for (let i = 0; i < L; i++) for (const kv of ['key', 'value']) fullFeeds[`past_key_values.${i}.${kv}`] = buffer(empty, 0, ids.length);
  const ref = await full.run(fullFeeds);

  // the prefix through the full target (as the engine's prefill does), then T new tokens split
  const prefixFeeds: Record<string, ort.Tensor> = {
    input_ids: new ort.Tensor('int64', i64(ids.slice(0, P)), [1, P]),
    position_ids: new ort.Tensor('int64', i64(ids.slice(0, P).map((_, i) => i)), [1, P]),
    cache_position: slots(0, P),
    attention_bias: new ort.Tensor('float32', slotMask(P, 0, P), [1, 1, P, P]),
  };
  for (let i = 0; i < L; i++) for (const kv of ['key', 'value']) prefixFeeds[`past_key_values.${i}.${kv}`] = buffer(empty, 0, P);
  const pre = await full.run(prefixFeeds);

  const pos = i64(ids.slice(P).map((_, i) => P + i));
  const dFeeds: Record<string, ort.Tensor> = {
    input_ids: new ort.Tensor('int64', i64(ids.slice(P)), [1, T]),
    position_ids: new ort.Tensor('int64', pos, [1, T]),
    attention_bias: new ort.Tensor('float32', causal(T, P), [1, 1, T, P + T]),
    cache_position: slots(P, T),
    cache_attention_bias: new ort.Tensor('float32', slotMask(T, P, 16), [1, 1, T, 16]),
    'adapter_past.key': kvT(new Float32Array(P * KV * HD), P),
    'adapter_past.value': kvT(new Float32Array(P * KV * HD), P),
  };
  for (let i = 0; i < l; i++)
    for (const kv of ['key', 'value']) dFeeds[`past_key_values.${i}.${kv}`] = buffer(pre[`new_key_values.${i}.${kv}`].data as Float32Array, P, 16);
  const d = await draft.run(dFeeds);
  const shallowRef = (ref.hidden_shallow.data as Float32Array).subarray(P * D);
  assert.equal(maxDiff(d.hidden_shallow.data as Float32Array, shallowRef), 0, 'shallow states');
  for (let i = 0; i < l; i++) {
    const W = KV * HD;
    for (const kv of ['key', 'value']) {
      const want = (ref[`new_key_values.${i}.${kv}`].data as Float32Array).subarray(P * W);
      assert.equal(maxDiff(d[`new_key_values.${i}.${kv}`].data as Float32Array, want), 0, `layer ${i} ${kv}s`);
    }
  }
  const top = d.top_ids.data as BigInt64Array;
  const conf = d.top_probs.data as Float32Array;
  assert.equal(top.length, T);
  for (const c of conf) assert.ok(c > 0 && c <= 1, 'confidence is a probability');

  const deepFeeds: Record<string, ort.Tensor> = {
    hidden_shallow: new ort.Tensor('float32', d.hidden_shallow.data as Float32Array, [1, T, D]),
    position_ids: new ort.Tensor('int64', pos, [1, T]),
    cache_position: slots(P, T),
    attention_bias: new ort.Tensor('float32', slotMask(T, P, 16), [1, 1, T, 16]),
  };
  for (let i = l; i < L; i++)
    for (const kv of ['key', 'value']) deepFeeds[`past_key_values.${i}.${kv}`] = buffer(pre[`new_key_values.${i}.${kv}`].data as Float32Array, P, 16);
  const out = await deep.run(deepFeeds);
  const V = cfg.vocab_size;
  const err = maxDiff(out.logits.data as Float32Array, (ref.logits.data as Float32Array).subarray(P * V));
  assert.equal(err, 0, `deep logits differ from the full target by ${err}`);
  await Promise.all([full.release(), draft.release(), deep.release()]);
});

test('the Kangaroo manifest describes the committed files', async () => {
  const { createHash } = await import('node:crypto');
  const { readFileSync } = await import('node:fs');
  const man = JSON.parse(readFileSync(path.join(DEFAULT_MODEL_DIR, 'kangaroo', 'kangaroo.json'), 'utf8'));
  for (const [file, info] of Object.entries(man.files as Record<string, { bytes: number; sha256: string }>)) {
    const data = readFileSync(path.join(DEFAULT_MODEL_DIR, 'kangaroo', file));
    assert.equal(data.length, info.bytes, file);
    assert.equal(createHash('sha256').update(data).digest('hex'), info.sha256, file);
  }
  assert.ok(man.parameters > 0 && man.heldout_top1 > man.heldout_early_exit_top1, 'the adapter improves on plain early exit');
});
