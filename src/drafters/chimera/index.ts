// Chimera (docs/methods.md §4): a trigram encoder over the last three tokens plus one full-context
// decoder layer that attends over the target's own post-final-norm hidden states of every committed
// row, with residual heads on (target hidden state at the root's parent, draft representation)
// through the target's frozen LM head. Trained by models/tooling/chimera.py.
//
// Run time, per sequence: the layer's K/V projections of committed target rows are cached
// (bounded by the context length, freed in `release`). One onnxruntime call per proposal, batched
// over the sequences: `chimera_draft{K}.onnx` absorbs the rows committed since the last proposal
// (returning their K/V for the cache) and drafts K depths along the greedy path, each depth's query
// attending over the cached context, the drafter's own outputs for the path so far (standing in for
// the target states not computed yet) and its trigram code. The tree is that path plus the top
// siblings at every depth, reranked to `maxNodes` by cumulative log-probability. Children are
// top-k picks: deterministic, verified with q = 1, lossless.
//
// Why one call and a path-with-siblings tree rather than a beam grown depth by depth: at this model
// size one draft-step call costs a sizeable share of a whole target step (~2 ms), mostly fixed
// per-call work, so K calls of a beam search cost more than they win.
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import ort from 'onnxruntime-node';
import { NEG_BIAS } from '../../model/onnx-layout.ts';
import { DrafterUnavailable, type DraftContext, type Drafter, type DraftTree } from '../Drafter.ts';
import { rerank, sharpen, type Candidate } from '../shared/tree.ts';

/** Candidates per depth (the path node and its best siblings). Defaults to `4`. */
export const CHIMERA_BRANCH = 4;
/**
 * Sharpening of the drafter's per-depth distribution (renormalised over its top-10, `sharpen`) before the
 * rerank: p^a / sum p^a. Distilled on the target's soft distribution, the drafter's top-1 is
 * right ~80% of the time on greedy text but carries far less probability, so raw cumulative scores
 * keep shallow siblings over the deeper path nodes that are accepted more often. Measured on the
 * bench prompts (mean accepted per step, 8 nodes): raw 2.14, renormalised 2.32, a = 2 2.58,
 * a = 4 2.63. Defaults to `3`.
 */
export const CHIMERA_SHARPEN = 3;


export interface ChimeraManifest {
  kind: 'chimera';
  depths: number;
  /** deepest chimera_draft{K}.onnx (depths past `depths` reuse the last trained head) */
  draft_depths: number;
  topk: number;
  hidden_size: number;
  kv_heads: number;
  head_dim: number;
  context: number;
  heldout_top1: number[];
}

/** Per-sequence cache of the full-context layer's K/V of committed target rows. */
interface SeqCache {
  keys: Float32Array; // [context, KV, hd]
  values: Float32Array;
  length: number;
}

/** A sequence drafted for in this call, with the rows it brings. */
interface Work {
  ctx: DraftContext;
  cache: SeqCache;
  /** [n, D] newly committed target rows (rows [cache.length, cache.length + n)) */
  rows: Float32Array;
}

export class ChimeraDrafter implements Drafter {
  readonly name = 'chimera';
  readonly needs = { hidden: 'last', history: 'final', treeMask: true } as const;
  private readonly caches = new Map<number, SeqCache>();
  private readonly row: number; // floats per cached row (KV * hd)

  private constructor(
    private readonly project: ort.InferenceSession,
    /** draft[K - 1] drafts K depths */
    private readonly draft: ort.InferenceSession[],
    readonly manifest: ChimeraManifest,
  ) {
    this.row = manifest.kv_heads * manifest.head_dim;
  }

  static async load(env: { modelDir: string }): Promise<ChimeraDrafter> {
    const dir = path.join(env.modelDir, 'chimera');
    const file = path.join(dir, 'chimera.json');
    if (!existsSync(file)) throw new DrafterUnavailable(`no Chimera drafter at ${file} (npm run train-drafters -- --model MODEL_DIR --text ... --kinds chimera)`);
    const manifest = JSON.parse(readFileSync(file, 'utf8')) as ChimeraManifest;
    // The graphs' weights are external data: the drafter's own (chimera.bin) and the target's LM
    // head, stored once for every head graph in heads/embed.f32. onnxruntime refuses external files
    // outside a graph's folder, so both are handed over in memory.
    const external = [
      { path: 'chimera.bin', file: path.join(dir, 'chimera.bin') },
      { path: 'embed.f32', file: path.join(env.modelDir, 'heads', 'embed.f32') },
    ];
    for (const e of external) if (!existsSync(e.file)) throw new DrafterUnavailable(`missing ${e.file}`);
    const externalData = external.map((e) => ({ path: e.path, data: readFileSync(e.file) }));
    // small graphs: one intra-op thread, so their pools cannot spin against the target's
    const session = (name: string) => {
      const f = path.join(dir, name);
      if (!existsSync(f)) throw new DrafterUnavailable(`missing ${f}`);
      return ort.InferenceSession.create(f, { interOpNumThreads: 1, intraOpNumThreads: 1, graphOptimizationLevel: 'all', externalData });
    };
    const project = await session('chimera_project.onnx');
    const draft: ort.InferenceSession[] = [];
    for (let k = 1; k <= manifest.draft_depths; k++) draft.push(await session(`chimera_draft${k}.onnx`));
    return new ChimeraDrafter(project, draft, manifest);
  }

  /** Committed rows cached for a sequence (for tests and metrics). */
  cachedRows(seqId: number): number {
    return this.caches.get(seqId)?.length ?? 0;
  }

  private cacheFor(ctx: DraftContext): { cache: SeqCache; rows: Float32Array } {
    let cache = this.caches.get(ctx.seqId);
    if (!cache) {
      const n = this.manifest.context * this.row;
      cache = { keys: new Float32Array(n), values: new Float32Array(n), length: 0 };
      this.caches.set(ctx.seqId, cache);
    }
    const rows = ctx.history?.rows ?? new Float32Array(0);
    const n = rows.length / this.manifest.hidden_size;
    if (n > 0 && ctx.history!.from !== cache.length) throw new Error(`chimera: history rows from ${ctx.history!.from}, cache holds ${cache.length}`);
    if (cache.length + n > this.manifest.context) throw new Error(`chimera: ${cache.length + n} rows exceed the context of ${this.manifest.context}`);
    return { cache, rows };
  }

  private store(cache: SeqCache, keys: Float32Array, values: Float32Array, n: number): void {
    cache.keys.set(keys.subarray(0, n * this.row), cache.length * this.row);
    cache.values.set(values.subarray(0, n * this.row), cache.length * this.row);
    cache.length += n;
  }

  /** Caches the new rows of sequences that get no draft this call (one project call). */
  private async absorb(list: { cache: SeqCache; rows: Float32Array }[]): Promise<void> {
    const D = this.manifest.hidden_size;
    list = list.filter((p) => p.rows.length > 0);
    const total = list.reduce((a, p) => a + p.rows.length / D, 0);
    if (total === 0) return;
    const hidden = new Float32Array(total * D);
    const positions = new BigInt64Array(total);
    let o = 0;
    for (const p of list) {
      hidden.set(p.rows, o * D);
      for (let i = 0; i < p.rows.length / D; i++) positions[o + i] = BigInt(p.cache.length + i);
      o += p.rows.length / D;
    }
    const out = await this.project.run({
      hidden: new ort.Tensor('float32', hidden, [total, D]),
      positions: new ort.Tensor('int64', positions, [total]),
    });
    o = 0;
    for (const p of list) {
      const n = p.rows.length / D;
      this.store(p.cache, (out.keys.data as Float32Array).subarray(o * this.row), (out.values.data as Float32Array).subarray(o * this.row), n);
      o += n;
    }
  }

  async propose(batch: readonly DraftContext[]): Promise<(DraftTree | null)[]> {
    const { hidden_size: D, kv_heads: KV, head_dim: HD } = this.manifest;
    const R = this.row;
    const work: Work[] = [];
    const idle: { cache: SeqCache; rows: Float32Array }[] = [];
    for (const ctx of batch) {
      const c = this.cacheFor(ctx);
      const n = c.rows.length / D;
      // the root sits at position L = committed rows; its parent's state is ctx.hidden
      const ok = ctx.hidden && ctx.maxNodes >= 1 && c.cache.length + n >= 1 && ctx.tokens.length === c.cache.length + n + 1;
      if (ok) work.push({ ctx, ...c });
      else idle.push(c);
    }
    await this.absorb(idle);
    if (work.length === 0) return batch.map(() => null);

    const S = work.length;
    const K = Math.min(this.draft.length, Math.max(...work.map((w) => w.ctx.maxNodes)));
    // cached context (at least one row: padding is masked) and new rows, padded across the batch
    const C = Math.max(1, ...work.map((w) => w.cache.length));
    const N = Math.max(1, ...work.map((w) => w.rows.length / D));
    let ctxKeys: Float32Array;
    let ctxValues: Float32Array;
    const ctxBias = new Float32Array(S * C);
    if (S === 1 && work[0].cache.length === C) {
      ctxKeys = work[0].cache.keys.subarray(0, C * R); // a view: no copy at batch 1
      ctxValues = work[0].cache.values.subarray(0, C * R);
    } else {
      ctxKeys = new Float32Array(S * C * R);
      ctxValues = new Float32Array(S * C * R);
      work.forEach((w, s) => {
        const n = w.cache.length;
        ctxKeys.set(w.cache.keys.subarray(0, n * R), s * C * R);
        ctxValues.set(w.cache.values.subarray(0, n * R), s * C * R);
        ctxBias.fill(NEG_BIAS, s * C + n, (s + 1) * C);
      });
    }
    const newHidden = new Float32Array(S * N * D);
    const newPositions = new BigInt64Array(S * N);
    const newBias = new Float32Array(S * N);
    const hiddenLast = new Float32Array(S * D);
    const trigram = new BigInt64Array(S * 3);
    const positions = new BigInt64Array(S);
    work.forEach((w, s) => {
      const n = w.rows.length / D;
      newHidden.set(w.rows, s * N * D);
      for (let i = 0; i < N; i++) newPositions[s * N + i] = BigInt(w.cache.length + i);
      newBias.fill(NEG_BIAS, s * N + n, (s + 1) * N);
      hiddenLast.set(w.ctx.hidden!, s * D);
      const L = w.ctx.tokens.length - 1;
      for (let j = 0; j < 3; j++) trigram[s * 3 + j] = BigInt(w.ctx.tokens[Math.max(0, L - 2 + j)]);
      positions[s] = BigInt(L);
    });
    const out = await this.draft[K - 1].run({
      ctx_keys: new ort.Tensor('float32', ctxKeys, [S, C, KV, HD]),
      ctx_values: new ort.Tensor('float32', ctxValues, [S, C, KV, HD]),
      ctx_bias: new ort.Tensor('float32', ctxBias, [S, C]),
      new_hidden: new ort.Tensor('float32', newHidden, [S, N, D]),
      new_positions: new ort.Tensor('int64', newPositions, [S, N]),
      new_bias: new ort.Tensor('float32', newBias, [S, N]),
      hidden_last: new ort.Tensor('float32', hiddenLast, [S, D]),
      trigram_ids: new ort.Tensor('int64', trigram, [S, 3]),
      positions: new ort.Tensor('int64', positions, [S]),
    });
    const ids = out.topk_ids.data as BigInt64Array; // [S, K, k]
    const lps = out.topk_logprobs.data as Float32Array;
    const k = (out.topk_ids.dims as number[])[2];
    sharpen(lps, k, CHIMERA_SHARPEN);
    const newKeys = out.new_keys.data as Float32Array; // [S, N, KV, hd]
    const newValues = out.new_values.data as Float32Array;
    const trees = new Map<DraftContext, DraftTree | null>();
    work.forEach((w, s) => {
      this.store(w.cache, newKeys.subarray(s * N * R), newValues.subarray(s * N * R), w.rows.length / D);
      // depth d's candidates hang below the path node of depth d - 1 (rank 0 of that depth)
      const cands: Candidate[] = [];
      let parent = -1;
      let base = 0;
      const depth = Math.min(K, w.ctx.maxNodes);
      for (let d = 0; d < depth; d++) {
        const o = (s * K + d) * k;
        const first = cands.length;
        for (let c = 0; c < Math.min(CHIMERA_BRANCH, k); c++) {
          cands.push({ token: Number(ids[o + c]), parent, score: base + lps[o + c], depth: d + 1 });
        }
        parent = first;
        base = cands[first].score;
      }
      trees.set(w.ctx, rerank(cands, w.ctx.maxNodes));
    });
    return batch.map((c) => trees.get(c) ?? null);
  }

  release(seqId: number): void {
    this.caches.delete(seqId);
  }
}
