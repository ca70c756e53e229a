// The step loop: continuous batching of prefill chunks and decode steps (with draft trees) into
// one target forward per step, verification, KV commit and token emission.
//
// One step:
//   admit waiting requests (FCFS) while the batch and the KV budget allow
//   → each running sequence contributes either a prompt chunk or root + draft tree
//   → one forward over the batch
//   → per sequence: commit prompt rows, or verify the tree, keep root + accepted rows, emit
//     accepted tokens + the bonus token (the next root, not cached until the next step)
import type { DraftContext, Drafter, DraftTree } from '../drafters/Drafter.ts';
import { BatchPast } from '../kvcache/batch-past.ts';
import type { PagedKvCache } from '../kvcache/paged.ts';
import { verifyGreedy, verifySampled, type Relax, type VerifyTree } from './acceptance.ts';
import { DraftCapPolicy } from './draft-policy.ts';
import { relax, type LanternNeighbours } from './lantern.ts';
import type { FromWorker, SeqRequest, StepOrigin, WireLogprob } from './protocol.ts';
import { NEG_BIAS as NEG, type DeepInput, type ForwardInput, type ForwardOutput } from './runner.ts';
import { argmax, logSoftmax, penalize, Rng, sampleFrom, topN, warp, type TokenCounts } from './sampling.ts';

/** Steps drafting pauses after a failed single-token probe, doubling up to the max. */
const DRAFT_BACKOFF_MIN = 2;
const DRAFT_BACKOFF_MAX = 16;
/**
 * The 'static' draft policy: draft tokens verified per step over the whole batch. Verifying extra
 * tokens is nearly free while a forward is bound by reading weights (small batches) and costs full
 * price once it is bound by compute (large batches), so each sequence's share shrinks as the batch
 * grows. The default 'goodput' policy (draft-policy.ts) measures instead of assuming.
 */
const DRAFT_TOKENS_PER_STEP = 32;

export interface ForwardFn {
  readonly layout: 'speculative' | 'optimum';
  forward(x: ForwardInput): Promise<ForwardOutput>;
  /** The target's layers [fromLayer, L) as a graph of their own, when the model has one. */
  readonly deep?: { fromLayer: number } | null;
  forwardDeep?(x: DeepInput): Promise<ForwardOutput>;
}

export interface SchedulerModel {
  vocabSize: number;
  numLayers: number;
  numKvHeads: number;
  headDim: number;
  hiddenSize: number;
  contextLength: number;
  eosTokenIds: number[];
}

export interface SchedulerOptions {
  maxBatchSize: number;
  maxQueuedRequests: number;
  prefillChunk: number;
  draftPolicy?: 'goodput' | 'static';
  /** Keep decode batches' past K/V between steps and copy only new rows (fp32 cache; default on).
   *  Off rebuilds it every step, for comparison. */
  keepBatchPast?: boolean;
}

interface Seq {
  req: SeqRequest;
  /** prompt + committed output, ending with the root once decoding. */
  tokens: number[];
  /** Prompt tokens already in the KV cache. */
  prefilled: number;
  /** Last chosen token, not yet in the cache (null while prefilling). */
  root: number | null;
  generated: number;
  counts: TokenCounts;
  rng: Rng;
  drafter?: Drafter;
  draftBudget: number;
  /** Decode steps left before drafting is tried again (speculation paused while it does not pay). */
  draftPause: number;
  /** Next pause length; doubles each time a probe fails. */
  draftBackoff: number;
  stats: {
    draftSteps: number; draftTokens: number; acceptedTokens: number; decodeSteps: number; relaxedSteps: number;
    earlyStops: number; fallback?: string;
    /** Where decode time went (see DecodeTiming); batched work is shared equally by its sequences. */
    draftMs: number; forwardMs: number; verifiedTokens: number;
  };
  /** The LANTERN relaxation for this request (lossy, opt-in), or undefined. */
  relax?: Relax;
  cancelled: boolean;
  /** Post-norm hidden state of the last committed row (for drafters that need it). */
  hidden?: Float32Array;
  /** Committed rows' target states not yet handed to the drafter (drafters declaring `history`). */
  history: Float32Array[];
  historyFrom: number;
  /** Log-softmax of the last prefilled row, while prompt logprobs are being reported. */
  promptLp?: Float64Array;
}

/** One row of the batched forward. */
interface Row {
  seq: Seq;
  tokens: number[];
  parents: number[];
  depth: number[];
  /** Set when the forward's input is built: cacheSlots(parents). */
  slots?: CacheSlots;
  kind: 'prefill' | 'decode';
  tree?: DraftTree;
  /** Decode rows: the most draft nodes planRows allowed (0 when the sequence did not draft). */
  cap?: number;
}

export class Scheduler {
  private readonly waiting: Seq[] = [];
  private readonly running: Seq[] = [];
  private readonly eos: Set<number>;
  private buffers = new Map<string, Float32Array>();
  /** The kept past of each kind of forward: `${kind}:${fromLayer}` (decode, Kangaroo's deep-only
   *  decode, prompt chunks). */
  private readonly pastViews = new Map<string, BatchPast>();
  readonly draftCaps = new DraftCapPolicy();
  /** Tokens the current step's decode rows emitted under its cap and would have emitted under
   *  each smaller one (for the goodput policy); null when the policy made no choice. */
  private outcome: { caps: number[]; tokens: number[] } | null = null;

  constructor(
    private readonly model: SchedulerModel,
    private readonly runner: ForwardFn,
    private readonly kv: PagedKvCache,
    private readonly drafters: Map<string, Drafter>,
    private readonly opts: SchedulerOptions,
    private readonly emit: (msg: FromWorker) => void,
    private readonly lantern: LanternNeighbours | null = null,
  ) {
    this.eos = new Set(model.eosTokenIds);
  }

  get load() {
    return { running: this.running.length, waiting: this.waiting.length };
  }

  idle(): boolean {
    return this.running.length === 0 && this.waiting.length === 0;
  }

  submit(req: SeqRequest): void {
    if (this.waiting.length >= this.opts.maxQueuedRequests) {
      this.emit({ type: 'error', id: req.id, code: 'queue_full', message: `queue is full (${this.opts.maxQueuedRequests} waiting)` });
      return;
    }
    let drafter: Drafter | undefined;
    let fallback: string | undefined;
    let relaxFn: Relax | undefined;
    if (req.acceptance === 'lantern') {
      const neighbours = this.lantern;
      const params = { k: req.lanternK, delta: req.lanternDelta };
      if (neighbours) relaxFn = (p, x) => relax(p, x, neighbours.get(x), params);
      else fallback = 'LANTERN needs lantern/neighbours.json in the model folder; decoding losslessly';
    }
    if (req.drafter !== 'none') {
      drafter = this.drafters.get(req.drafter);
      if (!drafter) fallback = `drafter ${req.drafter} is not available on this model`;
    }
    this.waiting.push({
      req,
      tokens: req.promptIds.slice(),
      prefilled: 0,
      root: null,
      generated: 0,
      counts: new Map(),
      rng: new Rng(req.sampling.seed),
      drafter,
      draftBudget: req.maxDraftTokens,
      draftPause: 0,
      draftBackoff: DRAFT_BACKOFF_MIN,
      stats: { draftSteps: 0, draftTokens: 0, acceptedTokens: 0, decodeSteps: 0, relaxedSteps: 0, earlyStops: 0, fallback, draftMs: 0, forwardMs: 0, verifiedTokens: 0 },
      relax: relaxFn,
      cancelled: false,
      history: [],
      historyFrom: 0,
    });
  }

  cancel(id: number): void {
    for (const s of this.running) if (s.req.id === id) s.cancelled = true;
    const i = this.waiting.findIndex((s) => s.req.id === id);
    if (i >= 0) this.waiting.splice(i, 1);
  }

  /** Fails every request (worker shutting down or broken). */
  failAll(message: string): void {
    for (const s of [...this.running, ...this.waiting]) {
      this.emit({ type: 'error', id: s.req.id, code: 'internal_error', message });
      this.finish(s, null);
    }
    this.waiting.length = 0;
  }

  /** Runs one step; returns false when there was nothing to do. */
  async step(): Promise<boolean> {
    this.reap();
    this.admit();
    if (this.running.length === 0) {
      for (const v of this.pastViews.values()) v.clear(); // idle: hand the batch buffers back
      return false;
    }
    const t0 = performance.now();
    let prefillMs = 0;
    const { rows, capChoice } = await this.planRows();
    this.outcome = capChoice
      ? { caps: this.draftCaps.caps.slice(0, capChoice.arm + 1), tokens: new Array(capChoice.arm + 1).fill(0) }
      : null;
    if (rows.length === 0) return true;
    // Rows of one forward are padded to the longest: a 256-token prompt chunk in the same forward
    // as 1-token decode rows would make every decode row cost 256 positions. Decode rows (root +
    // tree) go together, prompt chunks separately. The Optimum layout builds its causal mask in the
    // graph, so there each row runs alone and draft trees are limited to chains (see planRows).
    // Rows whose drafter already ran the target's shallow layers (Kangaroo) are verified by the
    // deep layers alone.
    const deep = (r: Row) => r.tree?.features !== undefined;
    const groups =
      this.runner.layout === 'speculative'
        ? [
            rows.filter((r) => r.kind === 'decode' && deep(r)),
            rows.filter((r) => r.kind === 'decode' && !deep(r)),
            rows.filter((r) => r.kind === 'prefill'),
          ].filter((g) => g.length)
        : rows.map((r) => [r]);
    for (const group of groups) {
      const tg = performance.now();
      try {
        // a decode forward's time is charged to its sequences before processRows (which may finish them)
        const charge = () => {
          if (group[0].kind !== 'decode') return;
          const ms = (performance.now() - tg) / group.length;
          for (const r of group) r.seq.stats.forwardMs += ms;
        };
        if (deep(group[0])) {
          const { rows: ordered, input } = this.buildDeepInput(group);
          const out = await this.runner.forwardDeep!(input);
          charge();
          this.processRows(ordered, this.withShallow(ordered, out, input.hidden), ordered.length);
        } else if (this.runner.layout === 'speculative') {
          const { rows: ordered, input } = this.buildSpecInput(group);
          const out = await this.runner.forward(input);
          charge();
          this.processRows(ordered, out, ordered.length);
        } else {
          const out = await this.runner.forward(this.buildOptimumInput(group[0]));
          charge();
          this.processRows(group, this.optimumToRows(group[0], out), 1);
        }
      } catch (err) {
        // a failed forward fails the sequences in it, not the worker
        for (const r of group) {
          if (!this.running.includes(r.seq)) continue;
          this.emit({ type: 'error', id: r.seq.req.id, code: 'internal_error', message: `forward failed: ${(err as Error).message}` });
          this.finish(r.seq, null);
        }
      }
      if (group[0].kind === 'prefill') prefillMs += performance.now() - tg;
    }
    // goodput: tokens the decode rows emitted per ms of drafting + verification
    if (capChoice && this.outcome) {
      this.draftCaps.record(capChoice.batch, capChoice.arm, { ms: performance.now() - t0 - prefillMs, tokens: this.outcome.tokens }, capChoice.drafter);
    }
    return true;
  }

  private reap(): void {
    const now = Date.now();
    for (const s of [...this.running]) {
      if (s.cancelled) this.finish(s, null);
      else if (s.req.deadline && now > s.req.deadline) {
        this.emit({ type: 'error', id: s.req.id, code: 'request_timeout', message: 'request exceeded its deadline' });
        this.finish(s, null);
      }
    }
  }

  private admit(): void {
    while (this.waiting.length && this.running.length < this.opts.maxBatchSize) {
      const s = this.waiting[0];
      // reserve room for the prompt and one step of lookahead (root + drafts): reserved blocks
      // count as used, so the next admission cannot count them as free too
      const need = s.req.promptIds.length + s.req.maxDraftTokens + 1;
      if (!this.kv.reserve(s.req.id, need)) {
        if (this.running.length === 0) {
          this.waiting.shift();
          this.emit({ type: 'error', id: s.req.id, code: 'queue_full', message: 'request does not fit in the KV cache budget' });
          continue;
        }
        return; // wait for running sequences to free blocks
      }
      this.waiting.shift();
      this.running.push(s);
    }
  }

  /** This step's rows, and the goodput policy's cap choice for it (null when it made none). */
  private async planRows(): Promise<{ rows: Row[]; capChoice: { batch: number; arm: number; drafter: string } | null }> {
    const rows: Row[] = [];
    let prefillBudget = this.opts.prefillChunk;
    const drafting: { seq: Seq; row: Row; maxNodes: number }[] = [];
    const decoding = this.running.filter((s) => s.root !== null);
    let batchShare = Math.floor(DRAFT_TOKENS_PER_STEP / this.running.length);
    let capChoice: { batch: number; arm: number; drafter: string } | null = null;
    const names = new Set(decoding.filter((s) => s.drafter).map((s) => s.drafter!.name));
    if (this.opts.draftPolicy !== 'static' && names.size > 0) {
      // measured per drafter: their costs and hit rates differ too much to share one estimate
      const drafter = names.size === 1 ? [...names][0] : 'mixed';
      const choice = this.draftCaps.choose(decoding.length, drafter);
      capChoice = { batch: decoding.length, arm: choice.arm, drafter };
      batchShare = choice.cap;
    }
    for (const s of this.running) {
      if (s.root === null) {
        if (prefillBudget <= 0) continue; // next step: decode streams must not stall behind prompts
        const n = Math.min(prefillBudget, s.req.promptIds.length - s.prefilled);
        prefillBudget -= n;
        const toks = s.req.promptIds.slice(s.prefilled, s.prefilled + n);
        rows.push({ seq: s, tokens: toks, parents: toks.map((_, i) => i - 1), depth: toks.map((_, i) => i), kind: 'prefill' });
      } else {
        const row: Row = { seq: s, tokens: [s.root], parents: [-1], depth: [0], kind: 'decode', cap: 0 };
        rows.push(row);
        if (s.drafter && s.draftPause > 0) s.draftPause--;
        else if (s.drafter) {
          const L = this.kv.length(s.req.id);
          const room = Math.min(
            s.draftBudget,
            batchShare,
            this.model.contextLength - L - 1,
            s.req.maxTokens - s.generated - 1, // never draft past max_tokens
            // every row of the step reads the cache as it is now: none may sit where plain decoding
            // would already read rows a SAQ demotion rewrote
            this.kv.tokensUntilRewrite(s.req.id) - 1,
          );
          if (room > 0) {
            row.cap = room;
            drafting.push({ seq: s, row, maxNodes: room });
          }
        }
      }
    }
    // drafters propose for their whole batch at once
    const byDrafter = new Map<Drafter, typeof drafting>();
    for (const d of drafting) {
      const list = byDrafter.get(d.seq.drafter!) ?? [];
      list.push(d);
      byDrafter.set(d.seq.drafter!, list);
    }
    for (const [drafter, list] of byDrafter) {
      let trees: (DraftTree | null)[];
      const td = performance.now();
      try {
        trees = await drafter.propose(list.map((d) => this.draftContext(d.seq, d.maxNodes)));
        const ms = (performance.now() - td) / list.length;
        for (const d of list) d.seq.stats.draftMs += ms;
      } catch (err) {
        // a broken drafter costs speed, never correctness: plain decoding for these sequences
        for (const d of list) {
          d.seq.stats.fallback = `drafter ${drafter.name} failed: ${(err as Error).message}`;
          d.seq.drafter = undefined;
          drafter.release(d.seq.req.id);
        }
        continue;
      }
      list.forEach((d, i) => {
        let tree = trees[i];
        if (!tree || tree.tokens.length === 0) return;
        if (this.runner.layout === 'optimum') tree = firstChain(tree);
        tree = truncateTree(tree, d.maxNodes);
        const n = tree.tokens.length;
        if (tree.features && !this.featuresFit(tree, n)) tree = { ...tree, features: undefined };
        if (!this.kv.canGrow(d.seq.req.id, n + 1)) return;
        d.row.tree = tree;
        for (let j = 0; j < n; j++) {
          const p = tree.parents[j];
          if (p >= j) throw new Error(`drafter ${drafter.name}: node ${j} has parent ${p}`);
          d.row.tokens.push(tree.tokens[j]);
          d.row.parents.push(p + 1); // shift: node 0 of the row is the root
          d.row.depth.push(d.row.depth[p + 1] + 1);
        }
      });
    }
    // each row reserves the KV room its commit may take, so the rows of one step cannot all count
    // the same free blocks (checked one by one, two rows could each fit and together not, and the
    // second commit failed the request with a 500); a row that gets no room is preempted
    return { rows: rows.filter((r) => this.kv.reserve(r.seq.req.id, r.tokens.length) || this.preempt(r)), capChoice };
  }

  private draftContext(s: Seq, maxNodes: number): DraftContext {
    const d = s.drafter!;
    const ctx: DraftContext = { seqId: s.req.id, tokens: s.tokens, maxNodes, hidden: s.hidden };
    if (d.needs.history) {
      const n = s.history.length;
      const D = this.model.hiddenSize;
      const rows = new Float32Array(n * D);
      s.history.forEach((h, i) => rows.set(h, i * D));
      ctx.history = { from: s.historyFrom, rows };
      s.historyFrom += n;
      s.history = [];
    }
    const layers = d.needs.pastLayers;
    if (layers)
      ctx.readPast = (keys, values, from, past) => {
        const len = this.kv.length(s.req.id);
        if (len > past) return -1;
        if (!this.kv.rowsStable) return this.kv.gatherLayers(s.req.id, 0, layers, keys, values, 0, past);
        this.kv.gatherRange(s.req.id, 0, layers, from, len, keys, values, 0, past);
        return len;
      };
    return ctx;
  }

  /** KV exhausted: the newest running sequence fails rather than deadlocking the batch. */
  private preempt(r: Row): boolean {
    this.emit({ type: 'error', id: r.seq.req.id, code: 'queue_full', message: 'KV cache budget exhausted' });
    this.finish(r.seq, null);
    return false;
  }

  private buf(name: string, n: number): Float32Array {
    let b = this.buffers.get(name);
    if (!b || b.length < n) {
      b = new Float32Array(Math.max(n, (b?.length ?? 0) * 2));
      this.buffers.set(name, b);
    }
    return b.subarray(0, n);
  }

  /** Drafter-computed shallow features are usable when they match the deep graph and the row. */
  private featuresFit(tree: DraftTree, n: number): boolean {
    const f = tree.features!;
    const W = this.model.numKvHeads * this.model.headDim;
    const rows = n + 1;
    return (
      this.runner.deep?.fromLayer === f.layers &&
      f.hidden.length === rows * this.model.hiddenSize &&
      f.keys.length === f.layers &&
      f.keys.every((k, i) => k.length === rows * W && f.values[i].length === rows * W)
    );
  }

  private buildSpecInput(group: Row[]): { rows: Row[]; input: ForwardInput } {
    const { rows, input } = this.batchInput(group, 0);
    const inputIds = new BigInt64Array(input.batch * input.newTokens);
    rows.forEach((r, b) => r.tokens.forEach((tok, t) => (inputIds[b * input.newTokens + t] = BigInt(tok))));
    return { rows, input: { ...input, inputIds } };
  }

  /** Input of the deep graph: the rows' shallow states instead of token ids, past of the deep
   *  layers only. */
  private buildDeepInput(group: Row[]): { rows: Row[]; input: DeepInput } {
    const from = this.runner.deep!.fromLayer;
    const { rows, input } = this.batchInput(group, from);
    const D = this.model.hiddenSize;
    const hidden = new Float32Array(input.batch * input.newTokens * D);
    rows.forEach((r, b) => hidden.set(r.tree!.features!.hidden, b * input.newTokens * D));
    return { rows, input: { ...input, hidden } };
  }

  /** The deep graph's output completed with the drafter's shallow K/V and states (`hiddenShallow`:
   *  the deep input's states), laid out like a full forward's ([batch, newTokens, ...] per layer). */
  private withShallow(rows: Row[], out: ForwardOutput, hiddenShallow: Float32Array): ForwardOutput {
    const B = rows.length;
    const T = Math.max(...rows.map((r) => r.tokens.length));
    const from = this.runner.deep!.fromLayer;
    const W = this.model.numKvHeads * this.model.headDim;
    const keys: Float32Array[] = [];
    const values: Float32Array[] = [];
    for (let l = 0; l < from; l++) {
      const k = new Float32Array(B * T * W);
      const v = new Float32Array(B * T * W);
      rows.forEach((r, b) => {
        k.set(r.tree!.features!.keys[l], b * T * W);
        v.set(r.tree!.features!.values[l], b * T * W);
      });
      keys.push(k);
      values.push(v);
    }
    return { logits: out.logits, hidden: out.hidden, hiddenShallow, keys: [...keys, ...out.keys], values: [...values, ...out.values] };
  }

  /** Positions, tree bias and past K/V of target layers [fromLayer, L) for a batch of rows. Decode
   *  batches over an fp32 cache read their past from a view kept between steps (`BatchPast`), in
   *  the view's order: the rows come back in the order the input uses. */
  private batchInput(group: Row[], fromLayer: number) {
    const { numLayers, numKvHeads, headDim } = this.model;
    const W = numKvHeads * headDim;
    const B = group.length;
    const T = Math.max(...group.map((r) => r.tokens.length));
    let rows = group;
    let P: number;
    let pastKeys: Float32Array[] = [];
    let pastValues: Float32Array[] = [];
    const view = this.pastView(group[0].kind, fromLayer);
    if (view) {
      const v = view.prepare(group.map((r) => r.seq.req.id), T);
      rows = v.order.map((i) => group[i]);
      P = v.stride;
      pastKeys = v.keys;
      pastValues = v.values;
    } else {
      P = Math.max(...group.map((r) => this.kv.length(r.seq.req.id))) + T;
      for (let l = fromLayer; l < numLayers; l++) {
        pastKeys.push(this.buf(`k${l}`, B * P * W));
        pastValues.push(this.buf(`v${l}`, B * P * W));
      }
      group.forEach((r, b) => this.kv.gatherLayers(r.seq.req.id, fromLayer, numLayers, pastKeys, pastValues, b, P));
    }
    // row b's new token t takes cache slot L_b + t of the past buffer (rows padded to T too, into
    // slots no real token sees), and attends to the L_b cached rows and its ancestors' slots
    const positionIds = new BigInt64Array(B * T);
    const cachePosition = new BigInt64Array(B * T);
    const bias = new Float32Array(B * T * P).fill(NEG);
    rows.forEach((r, b) => {
      const L = this.kv.length(r.seq.req.id);
      const slots = (r.slots = cacheSlots(r.parents));
      for (let t = 0; t < T; t++) cachePosition[b * T + t] = BigInt(L + (t < r.tokens.length ? slots.offset[t] : t));
      for (let t = 0; t < r.tokens.length; t++) {
        positionIds[b * T + t] = BigInt(L + r.depth[t]);
        const rowOff = (b * T + t) * P;
        bias.fill(0, rowOff, rowOff + L);
        for (let a = t; a >= 0; a = r.parents[a]) bias[rowOff + L + slots.offset[a]] = 0;
      }
    });
    return { rows, input: { batch: B, newTokens: T, past: P, positionIds, cachePosition, attentionBias: bias, pastKeys, pastValues } };
  }

  /** The kept past of layers [fromLayer, L) for one kind of forward: a long prompt's chunks, like
   *  decode steps, would otherwise copy (and under SAQ dequantize) the whole past every time. */
  private pastView(kind: Row['kind'], fromLayer: number): BatchPast | null {
    if (this.opts.keepBatchPast === false) return null;
    const key = `${kind}:${fromLayer}`;
    let v = this.pastViews.get(key);
    if (!v) {
      v = new BatchPast(this.kv, fromLayer, this.model.numLayers);
      this.pastViews.set(key, v);
    }
    return v;
  }

  private buildOptimumInput(r: Row): ForwardInput {
    const T = r.tokens.length;
    const P = this.kv.length(r.seq.req.id);
    const { numLayers, numKvHeads, headDim } = this.model;
    const pastKeys: Float32Array[] = [];
    const pastValues: Float32Array[] = [];
    for (let l = 0; l < numLayers; l++) {
      pastKeys.push(this.buf(`k${l}`, P * numKvHeads * headDim));
      pastValues.push(this.buf(`v${l}`, P * numKvHeads * headDim));
    }
    this.kv.gather(r.seq.req.id, pastKeys, pastValues, 0, P);
    return {
      batch: 1,
      newTokens: T,
      past: P,
      inputIds: BigInt64Array.from(r.tokens, BigInt),
      positionIds: BigInt64Array.from(r.depth, (d) => BigInt(P + d)),
      attentionMask: new BigInt64Array(P + T).fill(1n),
      pastKeys,
      pastValues,
    };
  }

  /** Optimum present is [1, KV, P+T, hd]: cut out the T new rows as [T, KV, hd]. */
  private optimumToRows(r: Row, out: ForwardOutput): ForwardOutput {
    const T = r.tokens.length;
    const P = this.kv.length(r.seq.req.id);
    const { numKvHeads: H, headDim: D } = this.model;
    const cut = (a: Float32Array) => {
      const o = new Float32Array(T * H * D);
      for (let h = 0; h < H; h++)
        for (let t = 0; t < T; t++) o.set(a.subarray((h * (P + T) + P + t) * D, (h * (P + T) + P + t + 1) * D), (t * H + h) * D);
      return o;
    };
    return { logits: out.logits, keys: out.keys.map(cut), values: out.values.map(cut) };
  }

  private processRows(rows: Row[], out: ForwardOutput, B: number): void {
    const T = out.logits.length / (B * this.model.vocabSize);
    const V = this.model.vocabSize;
    const W = this.model.numKvHeads * this.model.headDim;
    const Hd = this.model.hiddenSize;
    rows.forEach((r, b) => {
      const s = r.seq;
      const base = b * T; // first token index of this row in the [B*T] flattening
      const logitsAt = (node: number) => out.logits.subarray((base + node) * V, (base + node + 1) * V);
      const commit = (nodes: number[]) => {
        const ok = this.kv.append(s.req.id, out.keys, out.values, nodes.map((n) => base + n));
        if (!ok) throw new Error('KV append beyond reservation');
        if (out.hidden) {
          const last = base + nodes[nodes.length - 1];
          s.hidden = out.hidden.slice(last * Hd, (last + 1) * Hd);
        }
        const kind = s.drafter?.needs.history;
        const src = kind === 'final' ? out.hidden : kind === 'shallow' ? out.hiddenShallow : undefined;
        if (src) for (const n of nodes) s.history.push(src.slice((base + n) * Hd, (base + n + 1) * Hd));
      };
      if (r.kind === 'prefill') {
        const n = r.tokens.length;
        commit(r.tokens.map((_, i) => i));
        if (s.req.promptLogprobs) this.emitPromptLogprobs(s, r, logitsAt);
        s.prefilled += n;
        if (s.prefilled < s.req.promptIds.length) return;
        if (s.req.maxTokens === 0) return this.finish(s, 'length');
        // first generated token, from the last prompt position
        const tok = this.choose(s, logitsAt(n - 1), 0);
        this.accept(s, [tok], [logitsAt(n - 1)], { step: 0, drafted: 0, accepted: 0, cap: 0 });
        return;
      }
      // decode: verify root + draft tree
      s.stats.decodeSteps++;
      s.stats.verifiedTokens += r.tokens.length;
      const vt: VerifyTree = {
        tokens: Int32Array.from(r.tokens),
        parents: Int32Array.from(r.parents),
        kind: r.tree?.kind ?? 'deterministic',
        draftProbs: r.tree?.probs ? shiftProbs(r.tree.probs, V) : undefined,
        exact: r.slots?.onChain,
      };
      const pathTokens = (node: number) => {
        const toks: number[] = [];
        for (let a = node; a > 0; a = r.parents[a]) toks.push(r.tokens[a]);
        return toks; // excludes the root, whose count is already in s.counts
      };
      const countsAt = (node: number) => {
        if (node === 0) return s.counts;
        const c = new Map(s.counts);
        for (const t of pathTokens(node)) c.set(t, (c.get(t) ?? 0) + 1);
        return c;
      };
      const depthGenerated = (node: number) => s.generated + r.depth[node];
      const onRelaxed = () => s.stats.relaxedSteps++;
      const result =
        s.req.sampling.temperature === 0
          ? verifyGreedy(
              vt,
              (node) => this.greedyToken(s, logitsAt(node), countsAt(node), depthGenerated(node)),
              s.relax && { relax: s.relax, onRelaxed, distAt: (node) => this.dist(s, logitsAt(node), countsAt(node), depthGenerated(node), 1) },
            )
          : verifySampled(vt, (node) => this.dist(s, logitsAt(node), countsAt(node), depthGenerated(node)), s.rng, s.relax, onRelaxed);
      const drafted = r.tokens.length - 1;
      const acceptedN = result.path.length - 1;
      commit(result.path);
      const emitted = result.path.slice(1).map((n) => r.tokens[n]);
      emitted.push(result.bonus);
      const sourceLogits = result.path.map((n) => logitsAt(n));
      // the step's stats are counted before accept() can finish the sequence (its done message
      // carries them), but they need how many emitted tokens it kept
      const origin: StepOrigin = { step: s.stats.decodeSteps, drafted, accepted: acceptedN, cap: r.cap ?? 0 };
      const kept = this.accept(s, emitted, sourceLogits, origin, (kept) => {
        if (drafted === 0) return;
        // tokens past EOS / max_tokens were verified but not emitted: they do not count as accepted
        const acceptedKept = Math.min(acceptedN, kept);
        s.stats.draftSteps++;
        s.stats.draftTokens += drafted;
        if (r.tree?.stoppedEarly) s.stats.earlyStops++;
        s.stats.acceptedTokens += acceptedKept;
        this.adapt(s, acceptedN, drafted);
        this.emit({
          type: 'spec_step', drafter: s.req.drafter, drafted, accepted: acceptedKept,
          acceptedPositions: Array.from({ length: acceptedKept }, (_, i) => i),
        });
      });
      if (this.outcome) {
        // trees are cut to a cap by prefix (truncateTree): under cap c the step would have verified
        // the first c nodes and accepted the part of its accepted path among them
        const o = this.outcome;
        const onPath = result.path.slice(1).map((n) => n - 1);
        o.caps.forEach((c, i) => (o.tokens[i] += Math.min(kept, 1 + onPath.filter((j) => j < c).length)));
      }
      if (this.running.includes(s)) s.drafter?.observe?.(s.req.id, emitted, acceptedN, drafted);
    });
  }

  /**
   * Per-sequence draft budget: halve it when a draft is rejected outright, double it when at least
   * half lands. A rejected single-token draft pauses drafting for a while (doubling up to
   * DRAFT_BACKOFF_MAX steps), so a sequence the drafter cannot predict decodes at plain speed and
   * is probed again now and then.
   */
  private adapt(s: Seq, accepted: number, drafted: number): void {
    const max = s.req.maxDraftTokens;
    if (accepted === 0) {
      if (s.draftBudget === 1) {
        s.draftPause = s.draftBackoff;
        s.draftBackoff = Math.min(DRAFT_BACKOFF_MAX, s.draftBackoff * 2);
      }
      s.draftBudget = Math.max(1, Math.floor(s.draftBudget / 2));
    } else {
      s.draftBackoff = DRAFT_BACKOFF_MIN;
      if (accepted * 2 >= drafted) s.draftBudget = Math.min(max, s.draftBudget * 2);
    }
  }

  private maskEos(s: Seq, generated: number): boolean {
    return generated < s.req.minTokens;
  }

  private greedyToken(s: Seq, logits: Float32Array, counts: TokenCounts, generated: number): number {
    const x = penalize(logits, s.req.sampling, counts);
    if (!this.maskEos(s, generated)) return argmax(x);
    const y = x === logits ? Float32Array.from(x) : x;
    for (const e of this.eos) y[e] = -Infinity;
    return argmax(y);
  }

  /** The distribution plain sampling would draw from; `temperature` overrides for LANTERN greedy,
   *  which needs the target's soft distribution (temperature 1) rather than the one-hot argmax. */
  private dist(s: Seq, logits: Float32Array, counts: TokenCounts, generated: number, temperature?: number): Float64Array {
    let x = logits;
    if (this.maskEos(s, generated)) {
      x = Float32Array.from(logits);
      for (const e of this.eos) x[e] = -Infinity;
    }
    const params = temperature === undefined ? s.req.sampling : { ...s.req.sampling, temperature, topK: 0, topP: 1 };
    return warp(x, params, counts);
  }

  private choose(s: Seq, logits: Float32Array, depth: number): number {
    if (s.req.sampling.temperature === 0) return this.greedyToken(s, logits, s.counts, s.generated + depth);
    return sampleFrom(this.dist(s, logits, s.counts, s.generated + depth), s.rng);
  }

  /** Appends emitted tokens, stopping at EOS / max_tokens / context; returns how many were kept.
   *  `beforeFinish` gets that count before a stop finishes the sequence (and emits its done). */
  private accept(s: Seq, emitted: number[], sourceLogits: Float32Array[], origin: StepOrigin, beforeFinish?: (kept: number) => void): number {
    const ids: number[] = [];
    const lps: WireLogprob[] = [];
    let finish: 'stop' | 'length' | null = null;
    for (let i = 0; i < emitted.length; i++) {
      const tok = emitted[i];
      ids.push(tok);
      s.generated++;
      s.tokens.push(tok);
      s.counts.set(tok, (s.counts.get(tok) ?? 0) + 1);
      if (s.req.logprobs !== null) {
        const lp = logSoftmax(sourceLogits[i]);
        lps.push({ id: tok, logprob: lp[tok], top: topN(lp, s.req.logprobs) });
      }
      if (this.eos.has(tok) && !s.req.ignoreEos && s.generated >= s.req.minTokens) finish = 'stop';
      else if (s.generated >= s.req.maxTokens) finish = 'length';
      else if (s.tokens.length >= this.model.contextLength) finish = 'length'; // no position left for the next token
      if (finish) break;
    }
    s.root = ids[ids.length - 1];
    this.emit({ type: 'tokens', id: s.req.id, ids, logprobs: s.req.logprobs !== null ? lps : undefined, origin });
    beforeFinish?.(ids.length);
    if (finish) this.finish(s, finish);
    return ids.length;
  }

  /** Log-probabilities of prompt tokens (echo + logprobs); a chunk's first token is scored with the
   *  previous chunk's last row, kept in `promptLp`. */
  private emitPromptLogprobs(s: Seq, r: Row, logitsAt: (n: number) => Float32Array): void {
    const prompt = s.req.promptIds;
    const topK = s.req.logprobs ?? 0;
    const entries: WireLogprob[] = [];
    for (let i = 0; i < r.tokens.length; i++) {
      const pos = s.prefilled + i;
      const prev = pos === 0 ? null : i === 0 ? s.promptLp! : logSoftmax(logitsAt(i - 1));
      entries.push(prev ? { id: prompt[pos], logprob: prev[prompt[pos]], top: topN(prev, topK) } : { id: prompt[pos], logprob: null, top: [] });
    }
    s.promptLp = logSoftmax(logitsAt(r.tokens.length - 1));
    this.emit({ type: 'prompt_logprobs', id: s.req.id, entries });
  }

  private finish(s: Seq, reason: 'stop' | 'length' | null): void {
    const i = this.running.indexOf(s);
    if (i >= 0) this.running.splice(i, 1);
    const kvUsage = this.kv.release(s.req.id);
    s.drafter?.release(s.req.id);
    // cancelled (disconnect, stop string) or failed: no done message, but its KV use still counts
    if (!reason && kvUsage) this.emit({ type: 'released', id: s.req.id, kvPeakBytes: kvUsage.peakBytes });
    if (reason) {
      const st = s.stats;
      this.emit({
        type: 'done',
        id: s.req.id,
        finishReason: reason,
        promptTokens: s.req.promptIds.length,
        completionTokens: s.generated,
        kvPeakBytes: kvUsage?.peakBytes ?? 0,
        timing: { decodeSteps: st.decodeSteps, draftMs: st.draftMs, forwardMs: st.forwardMs, verifiedTokens: st.verifiedTokens },
        spec:
          s.req.drafter !== 'none'
            ? {
                drafter: s.req.drafter, draftSteps: st.draftSteps, draftTokens: st.draftTokens, acceptedTokens: st.acceptedTokens,
                decodeSteps: st.decodeSteps, earlyStops: st.earlyStops, fallback: st.fallback,
                lantern: s.relax ? { k: s.req.lanternK, delta: s.req.lanternDelta, relaxedSteps: st.relaxedSteps } : undefined,
              }
            : undefined,
      });
    }
  }
}

export interface CacheSlots {
  /** [nodes] the node's cache slot, after the sequence's cached rows. */
  offset: number[];
  /** [nodes] 1 on the main chain. */
  onChain: Uint8Array;
}

/**
 * Where a row's new tokens go in the past buffer. The graph sums a query's attention over keys by
 * slot (models/tooling/graph.py, _slot_index), so a node gets exactly the logits of decoding its path
 * one token at a time only when its ancestors hold the slots right after the cached rows, in order,
 * with no other key between them. One path can have that: the main chain (root, its first child,
 * that node's first child, ...; drafters list their likeliest child first) takes slots 0, 1, 2, ...
 * after the cache, every other node the slots after it. Prompt chunks and draft chains are all
 * main chain. Verification stops at an accepted node off the chain (VerifyTree.exact).
 */
export function cacheSlots(parents: number[]): CacheSlots {
  const n = parents.length;
  const offset = new Array<number>(n).fill(-1);
  const onChain = new Uint8Array(n);
  let next = 0;
  for (let node = 0; node >= 0; ) {
    offset[node] = next++;
    onChain[node] = 1;
    const child = parents.indexOf(node, node + 1);
    node = child;
  }
  for (let i = 0; i < n; i++) if (offset[i] < 0) offset[i] = next++;
  return { offset, onChain };
}

/** A draft tree's q rows are per draft node; the verify tree has the root in front. */
function shiftProbs(probs: Float32Array, V: number): Float32Array {
  const out = new Float32Array(probs.length + V);
  out.set(probs, V);
  return out;
}

/** The first n nodes (still ancestor-closed: parents come before children). */
function truncateTree(tree: DraftTree, n: number): DraftTree {
  if (tree.tokens.length <= n) return tree;
  const V = tree.probs ? tree.probs.length / tree.tokens.length : 0;
  const f = tree.features;
  const rowsOf = (a: Float32Array) => a.slice(0, (a.length / (tree.tokens.length + 1)) * (n + 1)); // root + first n nodes
  return {
    tokens: tree.tokens.slice(0, n), parents: tree.parents.slice(0, n), kind: tree.kind, probs: tree.probs?.slice(0, n * V),
    stoppedEarly: tree.stoppedEarly,
    features: f && { layers: f.layers, hidden: rowsOf(f.hidden), keys: f.keys.map(rowsOf), values: f.values.map(rowsOf) },
  };
}

/** The first root-to-leaf chain of a tree (for models that cannot take a tree mask). */
function firstChain(tree: DraftTree): DraftTree {
  const keep: number[] = [];
  for (let i = 0; i < tree.tokens.length; i++) {
    if (tree.parents[i] === (keep.length ? keep[keep.length - 1] : -1)) keep.push(i);
  }
  return {
    tokens: Int32Array.from(keep, (i) => tree.tokens[i]),
    parents: Int32Array.from(keep, (_, j) => j - 1),
    kind: tree.kind,
    probs: tree.probs ? concatRows(tree.probs, keep, tree.probs.length / tree.tokens.length) : undefined,
  };
}

function concatRows(a: Float32Array, rows: number[], V: number): Float32Array {
  const out = new Float32Array(rows.length * V);
  rows.forEach((r, j) => out.set(a.subarray(r * V, (r + 1) * V), j * V));
  return out;
}
