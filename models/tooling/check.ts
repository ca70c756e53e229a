// Checks a built model folder from the Node side (no Python): the ONNX files agree with the torch
// reference, the two exports agree with each other, prefill-then-decode equals one full forward,
// and a tree mask gives each branch the logits of decoding that branch alone.
// Used by the build (models/build.sh) and by test/models/model-files.test.ts.
//
// usage: node --import tsx models/tooling/check.ts MODEL_DIR
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { DTYPE_SUFFIX, loadModelConfig, WEIGHT_DTYPES, type ModelConfig, type WeightDtype } from '../../src/model/config.ts';
import { Runner, type ForwardOutput } from '../../src/worker/runner.ts';
import { cacheSlots } from '../../src/worker/forward/cache-slots.ts';
import { headMajor } from '../../src/kvcache/paged.ts';

const NEG = -1e9;

export interface CheckResult {
  name: string;
  maxAbsErr: number;
  tolerance: number;
  ok: boolean;
  detail?: string;
}

interface Reference {
  prompt: number[];
  positions: number[];
  logits: number[][];
  hidden: number[][];
  hidden_shallow: number[][];
  greedy: number[];
}

/** Cache for batch 1, token-major [P, KV*hd] per layer, as the graph outputs new rows (its past
 *  input is head-major: `headMajor`). */
class Cache {
  keys: Float32Array[];
  values: Float32Array[];
  length = 0;
  constructor(private readonly cfg: ModelConfig) {
    this.keys = Array.from({ length: cfg.numLayers }, () => new Float32Array(0));
    this.values = Array.from({ length: cfg.numLayers }, () => new Float32Array(0));
  }
  append(out: ForwardOutput, rows: number[]) {
    const W = this.cfg.numKvHeads * this.cfg.headDim;
    for (let l = 0; l < this.cfg.numLayers; l++) {
      const k = new Float32Array((this.length + rows.length) * W);
      const v = new Float32Array((this.length + rows.length) * W);
      k.set(this.keys[l]);
      v.set(this.values[l]);
      rows.forEach((r, i) => {
        k.set(out.keys[l].subarray(r * W, (r + 1) * W), (this.length + i) * W);
        v.set(out.values[l].subarray(r * W, (r + 1) * W), (this.length + i) * W);
      });
      this.keys[l] = k;
      this.values[l] = v;
    }
    this.length += rows.length;
  }
  clone(): Cache {
    const c = new Cache(this.cfg);
    c.keys = this.keys.map((a) => a.slice());
    c.values = this.values.map((a) => a.slice());
    c.length = this.length;
    return c;
  }
}

/** Forward of `tokens` after the cache, with parent links (chain when parents[i] = i - 1), as the
 *  engine runs one: the past buffer has room beyond the cached rows (rounded up to 16, the unused
 *  rows holding garbage that the mask must hide), and each new token takes the engine's cache slot
 *  (cacheSlots: the main chain right after the cache, other tree nodes after it). */
async function specForward(r: Runner, cache: Cache, tokens: number[], parents: number[]): Promise<ForwardOutput> {
  const T = tokens.length;
  const L = cache.length;
  const P = Math.ceil((L + T + 1) / 16) * 16;
  const { numKvHeads: KV, headDim: HD } = r.cfg;
  const depth: number[] = [];
  parents.forEach((p, i) => depth.push(p < 0 ? 0 : depth[p] + 1));
  const slot = cacheSlots(parents).offset;
  const bias = new Float32Array(T * P).fill(NEG);
  for (let t = 0; t < T; t++) {
    bias.fill(0, t * P, t * P + L);
    for (let a = t; a >= 0; a = parents[a]) bias[t * P + L + slot[a]] = 0;
  }
  const padded = (rows: Float32Array) => {
    const out = new Float32Array(KV * P * HD).fill(7);
    const hm = headMajor(rows, L, KV, HD);
    for (let h = 0; h < KV; h++) out.set(hm.subarray(h * L * HD, (h + 1) * L * HD), h * P * HD);
    return out;
  };
  return r.forward({
    batch: 1, newTokens: T, past: P,
    inputIds: BigInt64Array.from(tokens, BigInt),
    positionIds: BigInt64Array.from(depth, (d) => BigInt(L + d)),
    cachePosition: BigInt64Array.from(slot, (o) => BigInt(L + o)),
    attentionBias: bias,
    pastKeys: cache.keys.map(padded),
    pastValues: cache.values.map(padded),
  });
}

const chainParents = (n: number) => Array.from({ length: n }, (_, i) => i - 1);

function maxErr(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

function row(a: Float32Array, i: number, n: number): Float32Array {
  return a.subarray(i * n, (i + 1) * n);
}

function argmax(a: ArrayLike<number>): number {
  let b = 0;
  for (let i = 1; i < a.length; i++) if (a[i] > a[b]) b = i;
  return b;
}

/**
 * Checks one weight format's graphs. fp32 must match the torch reference (within `tolerance`).
 * Every format must give a position the same logits bit for bit whether it is computed in a prompt
 * chunk, a one-token step, a draft chain, a draft tree's main chain or the standard layout:
 * speculative decoding's identity with plain decoding rests on that, so those checks allow no
 * error at all. A tree node off the main chain has masked keys between it and its ancestors, which
 * the attention kernel sums in another order, so it gets `tolerance` (the verifier stops there).
 */
export async function checkModel(dir: string, dtype: WeightDtype = 'fp32', tolerance = 1e-4): Promise<CheckResult[]> {
  const cfg = loadModelConfig(dir);
  if (cfg.layout !== 'speculative') throw new Error('check needs the speculative export');
  const spec = await Runner.create(cfg, { provider: 'cpu', dtype, threads: 1 });
  const stdFile = path.join(cfg.dir, 'onnx', `model${DTYPE_SUFFIX[dtype]}.onnx`);
  const stdCfg: ModelConfig = { ...cfg, onnxPath: stdFile, layout: 'optimum', variants: { [dtype]: { dtype, onnxPath: stdFile, layout: 'optimum' } } };
  const std = await Runner.create(stdCfg, { provider: 'cpu', dtype, threads: 1 });
  const ref: Reference = JSON.parse(readFileSync(path.join(cfg.dir, 'reference.json'), 'utf8'));
  const V = cfg.vocabSize;
  const H = cfg.hiddenSize;
  const results: CheckResult[] = [];
  const add = (name: string, err: number, tol = tolerance, detail?: string) =>
    results.push({ name, maxAbsErr: err, tolerance: tol, ok: err <= tol, detail });

  // 1. torch reference (fp32 only: quantized weights differ from it by design)
  const prompt = ref.prompt;
  const full = await specForward(spec, new Cache(cfg), prompt, chainParents(prompt.length));
  if (dtype === 'fp32') await checkTorch();
  async function checkTorch() {
  let e = 0, eh = 0, es = 0;
  ref.positions.forEach((p, i) => {
    e = Math.max(e, maxErr(row(full.logits, p, V), ref.logits[i]));
    eh = Math.max(eh, maxErr(row(full.hidden!, p, H), ref.hidden[i]));
    es = Math.max(es, maxErr(row(full.hiddenShallow!, p, H), ref.hidden_shallow[i]));
  });
  add('onnx logits vs torch', e);
  add('onnx hidden vs torch', eh);
  add('onnx shallow hidden vs torch', es);

  // greedy continuation with the cache equals torch's full-recompute greedy
  const cache = new Cache(cfg);
  cache.append(full, prompt.map((_, i) => i));
  let next = argmax(row(full.logits, prompt.length - 1, V));
  const greedy: number[] = [];
  for (let s = 0; s < ref.greedy.length; s++) {
    greedy.push(next);
    const out = await specForward(spec, cache, [next], [-1]);
    cache.append(out, [0]);
    next = argmax(out.logits);
  }
  const mismatch = greedy.findIndex((t, i) => t !== ref.greedy[i]);
  add('greedy continuation vs torch (mismatching tokens)', mismatch < 0 ? 0 : ref.greedy.length - mismatch, 0);
  }

  // 2. prefill-then-decode equals one full forward
  const half = 12;
  const c2 = new Cache(cfg);
  const pre = await specForward(spec, c2, prompt.slice(0, half), chainParents(half));
  c2.append(pre, chainParents(half).map((_, i) => i));
  let e2 = 0;
  for (let t = half; t < prompt.length; t++) {
    const out = await specForward(spec, c2, [prompt[t]], [-1]);
    c2.append(out, [0]);
    e2 = Math.max(e2, maxErr(out.logits, row(full.logits, t, V)));
  }
  add('prefill-then-decode vs full forward', e2, 0);

  // 3. standard Optimum export agrees with the speculative one (prefill, then two decode steps)
  const KV = cfg.numKvHeads, D = cfg.headDim, L = cfg.numLayers;
  const emptyStd = Array.from({ length: L }, () => new Float32Array(0));
  const s1 = await std.forward({
    batch: 1, newTokens: prompt.length, past: 0,
    inputIds: BigInt64Array.from(prompt, BigInt), positionIds: BigInt64Array.from(prompt, (_, i) => BigInt(i)),
    attentionMask: new BigInt64Array(prompt.length).fill(1n), pastKeys: emptyStd, pastValues: emptyStd,
  });
  let e3 = maxErr(s1.logits, full.logits);
  let present = { k: s1.keys, v: s1.values };
  let specCache = new Cache(cfg);
  specCache.append(full, prompt.map((_, i) => i));
  let tok = argmax(row(full.logits, prompt.length - 1, V));
  for (let s = 0; s < 2; s++) {
    const P = prompt.length + s;
    const so = await std.forward({
      batch: 1, newTokens: 1, past: P,
      inputIds: BigInt64Array.from([BigInt(tok)]), positionIds: BigInt64Array.from([BigInt(P)]),
      attentionMask: new BigInt64Array(P + 1).fill(1n), pastKeys: present.k, pastValues: present.v,
    });
    const po = await specForward(spec, specCache, [tok], [-1]);
    specCache.append(po, [0]);
    e3 = Math.max(e3, maxErr(so.logits, po.logits));
    // present rows agree with the speculative new rows ([1,KV,S,D] vs [1,1,KV,D])
    for (let l = 0; l < L; l++)
      for (let h = 0; h < KV; h++)
        e3 = Math.max(e3, maxErr(so.keys[l].subarray((h * (P + 1) + P) * D, (h * (P + 1) + P + 1) * D), po.keys[l].subarray(h * D, (h + 1) * D)));
    present = { k: so.keys, v: so.values };
    tok = argmax(po.logits);
  }
  add('optimum export vs speculative export', e3, 0);

  // 4. tree mask: root r with children a, b; a has child c. Each branch equals decoding it alone.
  const base = new Cache(cfg);
  const pre4 = await specForward(spec, base, prompt.slice(0, half), chainParents(half));
  base.append(pre4, chainParents(half).map((_, i) => i));
  const r0 = prompt[half], a = prompt[half + 1], b = (prompt[half + 1] + 7) % V, c = prompt[half + 2];
  const tree = await specForward(spec, base, [r0, a, b, c], [-1, 0, 0, 1]);
  // the main chain (r, a, c) holds the slots right after the cache and must match exactly; b sits
  // after them with a and c masked between, which the attention kernel sums in another order
  const branchErr = async (branch: number[], nodes: number[]) => {
    const cc = base.clone();
    let e = 0;
    for (let i = 0; i < branch.length; i++) {
      const out = await specForward(spec, cc, [branch[i]], [-1]);
      cc.append(out, [0]);
      e = Math.max(e, maxErr(out.logits, row(tree.logits, nodes[i], V)));
    }
    return e;
  };
  add("tree's main chain vs decoding it alone", await branchErr([r0, a, c], [0, 1, 3]), 0);
  add('tree branch off the main chain vs decoding it alone', await branchErr([r0, b], [0, 2]));

  await spec.release();
  await std.release();
  return results;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const dir = process.argv[2];
  if (!dir) {
    console.error('usage: node --import tsx models/tooling/check.ts MODEL_DIR');
    process.exit(2);
  }
  let ok = true;
  const cfg = loadModelConfig(dir);
  for (const dtype of WEIGHT_DTYPES.filter((d) => cfg.variants[d])) {
    const res = await checkModel(dir, dtype);
    for (const r of res) console.log(`[check] ${dtype} ${r.ok ? 'ok  ' : 'FAIL'} ${r.name}: max abs err ${r.maxAbsErr.toExponential(2)} (tol ${r.tolerance})`);
    ok &&= res.every((r) => r.ok);
  }
  process.exit(ok ? 0 : 1);
}
