// Kangaroo (docs/methods.md §3): self-speculation with double early exit. The drafter is the target's
// own first `l` layers plus a small adapter (one attention block, two RMSNorms) ending in the
// target's frozen LM head. It drafts a chain, one token per call of kangaroo/draft.onnx, and stops
// when its top-1 probability falls below η (the low-confidence token is still proposed) or after γ
// tokens. It hands the engine the shallow states and shallow K/V it computed for root + drafts, so
// verification runs only the target's deep layers (kangaroo/deep.onnx): shallow work is not done
// twice. Chains of top-1 picks are verified with the deterministic rule: lossless.
//
// Caches: the shallow layers' K/V for committed rows are the target's own (read from the engine's
// KV cache, only the rows the drafter did not compute itself); the adapter keeps its own one-layer
// K/V per sequence. Both are held head-major as the graph takes its past, [1, kvHeads, stride,
// headDim], with a stride that grows in steps: rows beyond the current length are masked by the
// attention bias, so a call never copies the past to fit it. After verification the adapter
// keeps the rows of root + accepted drafts (the committed ones); since every draft call also runs
// the last draft through the adapter, the "all accepted" case needs nothing extra. Committed rows
// the drafter did not compute (the prompt, steps decoded without drafting) arrive as shallow
// states through `history` and get their adapter K/V from kangaroo/adapter.onnx.
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import ort from 'onnxruntime-node';
import { NEG_BIAS } from '../../model/onnx-layout.ts';
import { chain, DrafterUnavailable, type DraftContext, type Drafter, type DraftTree } from '../Drafter.ts';
import { copyToHeadMajor } from '../../model/onnx-layout.ts';
import { headSession } from '../shared/sessions.ts';
import { DTYPE_SUFFIX, type WeightDtype } from '../../model/config.ts';

/** Confidence below which drafting stops (the token is still proposed), for an adapter whose
 *  manifest has no calibrated threshold: the paper's η. The shipped adapter's manifest sets its
 *  own (its confidence scale depends on the target's entropy); the `kangarooThreshold` setting
 *  overrides both. */
export const KANGAROO_THRESHOLD = 0.6;
/** Most tokens drafted per step (γ). Defaults to `6`. */
export const KANGAROO_MAX_STEPS = 6;

export interface KangarooManifest {
  /** Stop threshold η calibrated for this adapter (its confidence scale depends on the target's
   *  entropy); KANGAROO_THRESHOLD when absent. */
  threshold?: number;
  /** Most tokens drafted per step (γ); KANGAROO_MAX_STEPS when absent. */
  max_steps?: number;
  exit_layer: number;
  layers: number;
  hidden_size: number;
  kv_heads: number;
  head_dim: number;
  parameters: number;
  heldout_top1: number;
}

export function loadKangarooManifest(modelDir: string): KangarooManifest | null {
  const file = path.join(modelDir, 'kangaroo', 'kangaroo.json');
  return existsSync(file) ? JSON.parse(readFileSync(file, 'utf8')) : null;
}

/** The split target graph the engine verifies Kangaroo drafts with, in the target's weight format,
 *  when the model has one. */
export function kangarooDeepGraph(modelDir: string, dtype: WeightDtype): { file: string; fromLayer: number } | null {
  const m = loadKangarooManifest(modelDir);
  const file = path.join(modelDir, 'kangaroo', `deep${DTYPE_SUFFIX[dtype]}.onnx`);
  return m && existsSync(file) ? { file, fromLayer: m.exit_layer } : null;
}

interface SeqState {
  /** Past dimension of every buffer below. */
  stride: number;
  /** Adapter K/V [kvHeads, stride, headDim]; rows [0, len) are committed. */
  k: Float32Array;
  v: Float32Array;
  len: number;
  /** Shallow layers' K/V per layer [kvHeads, stride, headDim]; rows [0, shallowValid) hold the
   *  committed rows (read from the engine's cache or computed here for root + accepted drafts). */
  sk: Float32Array[];
  sv: Float32Array[];
  shallowValid: number;
  /** Shallow states of committed rows at positions >= len, oldest first, waiting for adapter K/V. */
  backlog: Float32Array[];
  backlogFrom: number;
  /** Rows the last draft wrote past `len` (root + drafts), kept or dropped in observe. */
  pending: number;
}

export class KangarooDrafter implements Drafter {
  readonly name = 'kangaroo';
  readonly needs;
  private readonly seqs = new Map<number, SeqState>();
  private readonly W: number;
  private readonly H: number;
  private readonly D: number;
  readonly threshold: number;
  readonly maxSteps: number;

  private constructor(
    private readonly draft: ort.InferenceSession,
    private readonly adapterKv: ort.InferenceSession,
    readonly manifest: KangarooManifest,
    private readonly context: number,
    threshold: number | undefined,
  ) {
    this.W = manifest.kv_heads * manifest.head_dim;
    this.H = manifest.kv_heads;
    this.D = manifest.head_dim;
    this.threshold = threshold ?? manifest.threshold ?? KANGAROO_THRESHOLD;
    this.maxSteps = manifest.max_steps ?? KANGAROO_MAX_STEPS;
    this.needs = { hidden: false, history: 'shallow', pastLayers: manifest.exit_layer, treeMask: true } as const;
  }

  static async load(env: { modelDir: string; dtype: WeightDtype; shallowLayers?: number; contextLength?: number; kangarooThreshold?: number }): Promise<KangarooDrafter> {
    const m = loadKangarooManifest(env.modelDir);
    if (!m) throw new DrafterUnavailable(`no Kangaroo adapter at ${path.join(env.modelDir, 'kangaroo')} (npm run train-drafters -- --model MODEL_DIR --text ... --kinds kangaroo)`);
    if (env.shallowLayers !== undefined && env.shallowLayers !== m.exit_layer)
      throw new DrafterUnavailable(`adapter exits at layer ${m.exit_layer} but the model's hidden_shallow is after layer ${env.shallowLayers}`);
    const dir = path.join(env.modelDir, 'kangaroo');
    return new KangarooDrafter(
      // its shallow layers are the target's own, in the target's weight format (write_graphs.py)
      await headSession(path.join(dir, `draft${DTYPE_SUFFIX[env.dtype]}.onnx`)),
      await headSession(path.join(dir, 'adapter.onnx')),
      m,
      env.contextLength ?? 1024,
      env.kangarooThreshold,
    );
  }

  private state(seqId: number): SeqState {
    let st = this.seqs.get(seqId);
    if (!st) {
      const l = this.manifest.exit_layer;
      const none = () => new Float32Array(0);
      st = {
        stride: 0, k: none(), v: none(), len: 0,
        sk: Array.from({ length: l }, none), sv: Array.from({ length: l }, none), shallowValid: 0,
        backlog: [], backlogFrom: 0, pending: 0,
      };
      this.seqs.set(seqId, st);
    }
    return st;
  }

  /** Grows every buffer of a sequence to a stride of at least `rows` (a quarter more, in steps
   *  of 64 rows), moving each head's rows. */
  private reserve(st: SeqState, rows: number): void {
    if (st.stride >= rows) return;
    const stride = Math.max(rows, Math.min(Math.ceil((rows * 1.25) / 64) * 64, this.context + this.maxSteps + 2));
    const { H, D } = this;
    const move = (old: Float32Array) => {
      const a = new Float32Array(H * stride * D);
      for (let h = 0; h < H && st.stride > 0; h++) a.set(old.subarray(h * st.stride * D, (h + 1) * st.stride * D), h * stride * D);
      return a;
    };
    st.k = move(st.k);
    st.v = move(st.v);
    st.sk = st.sk.map(move);
    st.sv = st.sv.map(move);
    st.stride = stride;
  }

  /** Token-major rows [n, kvHeads * headDim] to positions pos.. of a head-major buffer. */
  private put(src: Float32Array, n: number, out: Float32Array, stride: number, pos: number): void {
    copyToHeadMajor(src, 0, n, out, 0, stride, pos, this.H, this.D);
  }

  async propose(batch: readonly DraftContext[]): Promise<(DraftTree | null)[]> {
    const out: (DraftTree | null)[] = [];
    for (const ctx of batch) out.push(await this.proposeOne(ctx));
    return out;
  }

  private async proposeOne(ctx: DraftContext): Promise<DraftTree | null> {
    const st = this.state(ctx.seqId);
    const committed = ctx.tokens.length - 1; // the root is not cached yet
    this.takeHistory(st, ctx);
    await this.catchUp(st, committed);
    if (st.len !== committed || !ctx.past) return null; // history incomplete: skip this step

    const l = this.manifest.exit_layer;
    const D = this.manifest.hidden_size;
    const W = this.W;
    const maxN = Math.min(ctx.maxNodes, this.maxSteps);
    this.reserve(st, committed + maxN + 1);
    const S = st.stride;
    if (ctx.past.length !== committed || !ctx.past.read(st.sk, st.sv, Math.min(st.shallowValid, committed), S)) return null;
    st.shallowValid = committed;
    const shape = [1, this.H, S, this.D];

    const hidden = new Float32Array((maxN + 1) * D);
    const keys = Array.from({ length: l }, () => new Float32Array((maxN + 1) * W));
    const values = Array.from({ length: l }, () => new Float32Array((maxN + 1) * W));
    const drafts: number[] = [];
    let token = ctx.tokens[committed];
    let lowConfidence = false;
    for (let i = 0; ; i++) {
      const P = committed + i;
      // the adapter: the whole stride is past, its rows [P, S) not yet (or no longer) this
      // sequence's, and the new row comes after it. The target's shallow layers write the new row
      // into their buffer at row P (cache_position) and see rows [0, P]
      const bias = new Float32Array(S + 1).fill(NEG_BIAS, P, S);
      const cacheBias = new Float32Array(S).fill(NEG_BIAS, P + 1);
      const feeds: Record<string, ort.Tensor> = {
        input_ids: new ort.Tensor('int64', BigInt64Array.of(BigInt(token)), [1, 1]),
        position_ids: new ort.Tensor('int64', BigInt64Array.of(BigInt(P)), [1, 1]),
        attention_bias: new ort.Tensor('float32', bias, [1, 1, 1, S + 1]),
        cache_position: new ort.Tensor('int64', BigInt64Array.of(BigInt(P)), [1, 1]),
        cache_attention_bias: new ort.Tensor('float32', cacheBias, [1, 1, 1, S]),
        'adapter_past.key': new ort.Tensor('float32', st.k, shape),
        'adapter_past.value': new ort.Tensor('float32', st.v, shape),
      };
      for (let j = 0; j < l; j++) {
        feeds[`past_key_values.${j}.key`] = new ort.Tensor('float32', st.sk[j], shape);
        feeds[`past_key_values.${j}.value`] = new ort.Tensor('float32', st.sv[j], shape);
      }
      const r = await this.draft.run(feeds);
      hidden.set(r.hidden_shallow.data as Float32Array, i * D);
      for (let j = 0; j < l; j++) {
        const nk = r[`new_key_values.${j}.key`].data as Float32Array;
        const nv = r[`new_key_values.${j}.value`].data as Float32Array;
        this.put(nk, 1, st.sk[j], S, P);
        this.put(nv, 1, st.sv[j], S, P);
        keys[j].set(nk, i * W);
        values[j].set(nv, i * W);
      }
      this.put(r['adapter_new.key'].data as Float32Array, 1, st.k, S, P);
      this.put(r['adapter_new.value'].data as Float32Array, 1, st.v, S, P);
      // this call computed row i's features (the root's, then each draft's); its prediction is the
      // next draft unless drafting is over
      if (lowConfidence || drafts.length >= maxN) break;
      token = Number((r.top_ids.data as BigInt64Array)[0]);
      drafts.push(token);
      if ((r.top_probs.data as Float32Array)[0] < this.threshold) lowConfidence = true;
    }
    st.pending = drafts.length + 1;
    if (drafts.length === 0) return null;
    const rows = drafts.length + 1;
    return {
      ...chain(drafts),
      stoppedEarly: lowConfidence,
      features: {
        layers: l,
        hidden: hidden.subarray(0, rows * D),
        keys: keys.map((a) => a.subarray(0, rows * W)),
        values: values.map((a) => a.subarray(0, rows * W)),
      },
    };
  }

  /** Queues the shallow states of committed rows the adapter has no K/V for yet. */
  private takeHistory(st: SeqState, ctx: DraftContext): void {
    const h = ctx.history;
    if (!h) return;
    const D = this.manifest.hidden_size;
    const n = h.rows.length / D;
    for (let i = 0; i < n; i++) {
      const pos = h.from + i;
      if (pos < st.len) continue; // the drafter computed this row itself
      if (st.backlog.length === 0) st.backlogFrom = pos;
      if (pos !== st.backlogFrom + st.backlog.length) {
        // a gap cannot happen when the engine delivers every row once, in order; start over
        st.backlog = [];
        st.backlogFrom = pos;
      }
      st.backlog.push(h.rows.subarray(i * D, (i + 1) * D));
    }
  }

  /** Adapter K/V for backlog rows, so the adapter cache covers every committed row. */
  private async catchUp(st: SeqState, committed: number): Promise<void> {
    if (st.len >= committed) return;
    const skip = st.len - st.backlogFrom;
    const rows = st.backlog.slice(Math.max(0, skip), Math.max(0, skip) + committed - st.len);
    if (skip < 0 || rows.length !== committed - st.len) return;
    const D = this.manifest.hidden_size;
    const T = rows.length;
    const hidden = new Float32Array(T * D);
    rows.forEach((r, i) => hidden.set(r, i * D));
    const out = await this.adapterKv.run({
      hidden_shallow: new ort.Tensor('float32', hidden, [1, T, D]),
      position_ids: new ort.Tensor('int64', BigInt64Array.from({ length: T }, (_, i) => BigInt(st.len + i)), [1, T]),
    });
    this.reserve(st, committed + this.maxSteps + 1);
    this.put(out['adapter_new.key'].data as Float32Array, T, st.k, st.stride, st.len);
    this.put(out['adapter_new.value'].data as Float32Array, T, st.v, st.stride, st.len);
    st.len = committed;
    st.backlog = [];
  }

  observe(seqId: number, _committed: readonly number[], accepted: number): void {
    const st = this.seqs.get(seqId);
    if (!st || st.pending === 0) return;
    // root + accepted drafts are committed; rejected rows' K/V are simply overwritten later. The
    // shallow rows the drafter computed for them are the ones the engine commits (it verifies with
    // the deep layers on the drafter's shallow states), so they need no reading back.
    const kept = Math.min(accepted + 1, st.pending);
    if (st.shallowValid === st.len) st.shallowValid += kept;
    st.len += kept;
    st.pending = 0;
  }

  release(seqId: number): void {
    this.seqs.delete(seqId);
  }
}
