// How sensitive the model is to quantizing each layer's keys and values (the calibration behind
// SAQ_DEFAULTS' per-layer widths). For windows of a text: the exact fp32 K/V of every position,
// then one-token forwards at sampled positions past `from`, whose past K/V is held by a SAQ cache
// where everything is 8 bits except one layer's keys or values (8 bits on the newest stair, then
// 4). The mean KL(fp32 || that cache) over the positions, less the all-8-bit KL, is that slot's
// sensitivity s_i. Each bit halves the error, so quarters the KL: a slot at b bits costs about
// s_i * 4^(4 - b). Widths are then allocated greedily (the widening with the largest KL drop per bit
// first) up to a mean width, which sets the bytes.
//   node --import tsx bench/saq-sensitivity.ts --text FILE [--windows 6] [--stride 4]
// Use text the model was trained on (or any that is not the held-out text kv-bench measures).
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { loadModelConfig } from '../src/model/config.ts';
import { chainInput, Runner } from '../src/worker/runner.ts';
import { TextCodec } from '../src/model/text.ts';
import { headMajor, PagedKvCache, type SaqOptions } from '../src/kvcache/paged.ts';

const { values: o } = parseArgs({
  options: {
    model: { type: 'string', default: 'models/specserve-tiny' },
    text: { type: 'string' },
    windows: { type: 'string', default: '6' },
    stride: { type: 'string', default: '4' },
    threads: { type: 'string', default: '2' },
  },
});
if (!o.text) throw new Error('--text FILE is required');
const cfg = loadModelConfig(o.model);
const ids = new TextCodec(cfg.dir).encode(readFileSync(o.text, 'utf8'));
const N = Math.min(1023, cfg.contextLength - 1);
const from = Math.floor(N * 0.75);
const nWin = Number(o.windows);
const stride = Number(o.stride);
if (ids.length < N) throw new Error(`the text has ${ids.length} tokens, fewer than ${N}`);
const offsets = Array.from({ length: nWin }, (_, i) => (nWin === 1 ? 0 : Math.floor((i * (ids.length - N)) / (nWin - 1))));
const shape = { layers: cfg.numLayers, kvHeads: cfg.numKvHeads, headDim: cfg.headDim };
const W = shape.kvHeads * shape.headDim;
const runner = await Runner.create(cfg, { provider: 'cpu', dtype: 'fp32', threads: Number(o.threads) });
if (runner.layout !== 'speculative') throw new Error('needs the speculative ONNX layout (token-major K/V)');

function logSoftmax(x: Float32Array): Float64Array {
  let m = -Infinity;
  for (const v of x) m = Math.max(m, v);
  let s = 0;
  for (const v of x) s += Math.exp(v - m);
  const l = Math.log(s) + m;
  return Float64Array.from(x, (v) => v - l);
}

// exact K/V of each window (chunked causal prefill over fp32 K/V)
const exact: { k: Float32Array[]; v: Float32Array[]; ids: number[] }[] = [];
for (const off of offsets) {
  const w = ids.slice(off, off + N);
  const k = Array.from({ length: shape.layers }, () => new Float32Array(N * W));
  const v = Array.from({ length: shape.layers }, () => new Float32Array(N * W));
  for (let p = 0; p < N; p += 32) {
    const T = Math.min(32, N - p);
    const out = await runner.forward(chainInput(cfg, w.slice(p, p + T), p, {
      keys: k.map((a) => headMajor(a, p, shape.kvHeads, shape.headDim)),
      values: v.map((a) => headMajor(a, p, shape.kvHeads, shape.headDim)),
    }));
    for (let l = 0; l < shape.layers; l++) {
      k[l].set(out.keys[l], p * W);
      v[l].set(out.values[l], p * W);
    }
  }
  exact.push({ k, v, ids: w });
}

/** Log-probabilities at every sampled position of every window, through a cache with `saq`. */
async function logprobs(saq: SaqOptions | null): Promise<Float64Array[]> {
  const res: Float64Array[] = [];
  for (const x of exact) {
    const kv = new PagedKvCache(shape, 1 << 30, 16, saq);
    const pk = Array.from({ length: shape.layers }, () => new Float32Array(N * W));
    const pv = Array.from({ length: shape.layers }, () => new Float32Array(N * W));
    let have = 0;
    for (let p = from; p < N; p += stride) {
      kv.append(0, x.k, x.v, Array.from({ length: p - have }, (_, i) => have + i));
      have = p;
      kv.gather(0, pk, pv, 0, p);
      const out = await runner.forward(chainInput(cfg, [x.ids[p]], p, { keys: pk.map((a) => a.subarray(0, p * W)), values: pv.map((a) => a.subarray(0, p * W)) }));
      res.push(logSoftmax(out.logits));
    }
  }
  return res;
}

const ref = await logprobs(null);
const kl = (lq: Float64Array[]) => {
  let s = 0;
  lq.forEach((q, i) => {
    for (let t = 0; t < q.length; t++) s += Math.exp(ref[i][t]) * (ref[i][t] - q[t]);
  });
  return s / lq.length;
};
const base = kl(await logprobs({ window: 32, step: 32, bits: [8], valueGroup: 32 }));
console.log(`${offsets.length} windows of ${N} tokens, positions ${from}..${N - 1} every ${stride}; KL with everything at 8 bits: ${base.toExponential(2)}`);
const slots: { layer: number; kind: 'keys' | 'values'; s: number }[] = [];
for (let l = 0; l < shape.layers; l++)
  for (const kind of ['keys', 'values'] as const) {
    const layers: NonNullable<SaqOptions['layers']> = [];
    layers[l] = { [kind]: [8, 4] };
    const s = Math.max(kl(await logprobs({ window: 32, step: 32, bits: [8], valueGroup: 32, layers })) - base, 1e-12);
    slots.push({ layer: l, kind, s });
    console.log(`layer ${l} ${kind} at 4 bits: KL +${s.toExponential(2)}`);
  }
const total = slots.reduce((a, x) => a + x.s, 0);
console.log(`shares of the summed KL: ${slots.map((x) => `L${x.layer}${x.kind[0]} ${((100 * x.s) / total).toFixed(0)}%`).join(', ')}`);
// Greedy allocation: from 2 bits everywhere, repeatedly take the widening with the largest KL drop
// per added bit (a slot at b bits costs s_i * 4^(4 - b)) until the mean width is reached.
const WIDTHS = [2, 3, 4, 5, 6, 8];
for (const mean of [5, 5.25, 5.5]) {
  const w = slots.map(() => 0); // index into WIDTHS
  const cost = (i: number, k: number) => slots[i].s * 4 ** (4 - WIDTHS[k]);
  let bits = 2 * slots.length;
  for (;;) {
    let best = -1;
    let gain = 0;
    for (let i = 0; i < slots.length; i++) {
      if (w[i] + 1 >= WIDTHS.length) continue;
      const add = WIDTHS[w[i] + 1] - WIDTHS[w[i]];
      if (bits + add > mean * slots.length) continue;
      const g = (cost(i, w[i]) - cost(i, w[i] + 1)) / add;
      if (g > gain) [best, gain] = [i, g];
    }
    if (best < 0) break;
    bits += WIDTHS[w[best] + 1] - WIDTHS[w[best]];
    w[best]++;
  }
  const kl = slots.reduce((a, _, i) => a + cost(i, w[i]), 0);
  console.log(`mean ${mean} bits (predicted KL ${kl.toExponential(2)}): ${slots.map((x, i) => `L${x.layer}${x.kind[0]} ${WIDTHS[w[i]]}`).join(', ')}`);
}
await runner.release();
