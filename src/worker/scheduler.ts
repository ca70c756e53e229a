// One decode step, stage by stage, with continuous batching: prompt chunks and decode rows (root +
// draft tree) of every running sequence go through one target forward per step.
//
//   admit    admit.ts            waiting requests join the batch while it and the KV budget allow
//   plan     plan.ts             each sequence gets a prompt chunk or a decode row with a draft limit
//   propose  propose.ts          drafters hang their trees below the roots
//   forward  forward/*.ts        one forward per group of rows, in the model's ONNX layout
//   verify   verify.ts           the target decides which draft path is kept, and the bonus token
//   commit   commit.ts           kept rows enter the KV cache; rejected rows never do
//   emit     emit.ts             tokens go out; EOS, max_tokens and stop strings end the sequence
import type { Drafter } from '../drafters/Drafter.ts';
import type { PagedKvCache } from '../kvcache/paged.ts';
import type { Relax } from './acceptance.ts';
import { Batch } from './admit.ts';
import { commitRows } from './commit.ts';
import { DraftCapPolicy } from './draft-policy.ts';
import { Emitter } from './emit.ts';
import { graphLayout, type ForwardFn, type ForwardPass, type GraphLayout, type LayoutModel } from './forward/layout.ts';
import { relax, type LanternNeighbours } from './lantern.ts';
import { planRows, resolveDraftPolicy, type DraftPolicy, type DraftPolicyName, type GoodputStep, type Row } from './plan.ts';
import { propose } from './propose.ts';
import type { ForwardOutput } from './runner.ts';
import type { FromWorker, SeqRequest } from './protocol.ts';
import { Sequence } from './sequence.ts';
import type { StopChecks } from './stop.ts';
import { TargetDistribution, verifyRow } from './verify.ts';

export type { ForwardFn } from './forward/layout.ts';

export interface SchedulerModel extends LayoutModel {
  contextLength: number;
  eosTokenIds: number[];
}

export interface SchedulerOptions {
  /** Most sequences decoded together in one forward. */
  maxBatchSize: number;
  /** Requests waiting beyond the batch before new ones get a 429. */
  maxQueuedRequests: number;
  /** Prompt tokens prefilled per step over the whole batch. */
  prefillChunk: number;
  /** Defaults to 'goodput'. */
  draftPolicy?: DraftPolicyName;
  /** Keep decode batches' past K/V between steps and copy only new rows (fp32 cache). Defaults to
   *  true; false rebuilds it every step, for comparison. */
  keepBatchPast?: boolean;
}

export interface SchedulerDeps {
  model: SchedulerModel;
  /** The target model (the Runner, or a fake one in tests). */
  target: ForwardFn;
  kv: PagedKvCache;
  drafters: ReadonlyMap<string, Drafter>;
  options: SchedulerOptions;
  /** Where the worker's messages go. */
  send: (m: FromWorker) => void;
  /** LANTERN's neighbour sets, when the model folder has them. */
  lantern?: LanternNeighbours | null;
  /** Stop-string checks (they need the tokenizer); without them stop strings are not checked. */
  stops?: StopChecks;
}

export class Scheduler {
  /** The goodput policy's measurements (reported in the worker's load messages). */
  readonly draftCaps = new DraftCapPolicy();
  private readonly batch: Batch;
  private readonly layout: GraphLayout;
  private readonly policy: DraftPolicy;
  private readonly target: TargetDistribution;
  private readonly emitter: Emitter;

  constructor(private readonly deps: SchedulerDeps) {
    const { model, kv, options, send } = deps;
    this.batch = new Batch({ kv, maxBatchSize: options.maxBatchSize, maxQueuedRequests: options.maxQueuedRequests, send });
    this.layout = graphLayout(deps.target, { model, kv, keepBatchPast: options.keepBatchPast ?? true });
    this.policy = resolveDraftPolicy(options.draftPolicy ?? 'goodput', this.draftCaps);
    const eos = new Set(model.eosTokenIds);
    this.target = new TargetDistribution(eos);
    this.emitter = new Emitter(send, eos, model.contextLength, (s, reason) => this.batch.finish(s, reason));
  }

  get load() {
    return { running: this.batch.running.length, waiting: this.batch.waiting.length };
  }

  idle(): boolean {
    return this.batch.running.length === 0 && this.batch.waiting.length === 0;
  }

  submit(req: SeqRequest): void {
    let drafter: Drafter | undefined;
    let fallback: string | undefined;
    let relaxFn: Relax | undefined;
    if (req.acceptance === 'lantern') {
      const neighbours = this.deps.lantern;
      const params = { k: req.lanternK, delta: req.lanternDelta };
      if (neighbours) relaxFn = (p, x) => relax(p, x, neighbours.get(x), params);
      else fallback = 'LANTERN needs lantern/neighbours.json in the model folder; decoding losslessly';
    }
    if (req.drafter !== 'none') {
      drafter = this.deps.drafters.get(req.drafter);
      if (!drafter) fallback = `drafter ${req.drafter} is not available on this model`;
    }
    this.batch.enqueue(new Sequence(req, { drafter, fallback, relax: relaxFn, stop: this.deps.stops?.(req) }));
  }

  cancel(id: number): void {
    this.batch.cancel(id);
  }

  /** Fails every request (the worker is shutting down or broken). */
  failAll(message: string): void {
    this.batch.failAll(message);
  }

  /** Runs one step; returns false when there was nothing to do. */
  async step(): Promise<boolean> {
    const { kv, model } = this.deps;
    this.batch.reap(Date.now());
    this.batch.admit();
    const running = this.batch.running;
    if (running.length === 0) {
      this.layout.idle();
      return false;
    }
    const t0 = performance.now();
    const { cap, goodput } = this.policy.choose(running);
    const planned = planRows(running, cap, { kv, contextLength: model.contextLength, prefillChunk: this.deps.options.prefillChunk });
    await propose(planned, { kv, hiddenSize: model.hiddenSize, layout: this.layout });
    // each row reserves the KV room its commit may take, so the rows of one step cannot all count
    // the same free blocks; a row that gets none is evicted
    const rows = planned.filter((r) => kv.reserve(r.seq.id, r.tokens.length) || this.evict(r.seq));
    if (rows.length === 0) return true;
    let prefillMs = 0;
    for (const group of this.layout.groups(rows)) {
      const tg = performance.now();
      try {
        const pass = await this.layout.run(group);
        if (group[0].kind === 'decode') {
          // charged before the rows are processed, which may finish their sequences
          const ms = (performance.now() - tg) / group.length;
          for (const r of group) r.seq.stats.forwardMs += ms;
        }
        this.afterForward(pass, goodput);
      } catch (err) {
        // a failed forward fails the sequences in it, not the worker
        for (const r of group) {
          if (this.batch.running.includes(r.seq)) this.batch.fail(r.seq, 'internal_error', `forward failed: ${(err as Error).message}`);
        }
      }
      if (group[0].kind === 'prefill') prefillMs += performance.now() - tg;
    }
    // goodput: tokens the decode rows emitted per ms of drafting + verification
    goodput?.record(performance.now() - t0 - prefillMs);
    return true;
  }

  /** KV exhausted mid-decode: the sequence fails with a 429 rather than deadlocking the batch. */
  private evict(s: Sequence): false {
    this.batch.fail(s, 'queue_full', 'KV cache budget exhausted');
    return false;
  }

  private afterForward({ rows, out }: ForwardPass, goodput: GoodputStep | null): void {
    const V = this.deps.model.vocabSize;
    const T = out.logits.length / (rows.length * V);
    rows.forEach((r, b) => {
      const base = b * T; // the row's first token in the [rows * newTokens] flattening
      const logitsAt = (node: number) => out.logits.subarray((base + node) * V, (base + node + 1) * V);
      if (r.kind === 'prefill') this.afterPrefill(r, out, base, logitsAt);
      else this.afterDecode(r, out, base, logitsAt, goodput);
    });
  }

  private afterPrefill(r: Row, out: ForwardOutput, base: number, logitsAt: (node: number) => Float32Array): void {
    const s = r.seq;
    const n = r.tokens.length;
    commitRows(this.deps.kv, s, out, base, r.tokens.map((_, i) => i), this.deps.model.hiddenSize);
    if (s.req.promptLogprobs) this.emitter.promptLogprobs(s, r, logitsAt);
    s.prefilled += n;
    if (s.prefilled < s.req.promptIds.length) return;
    if (s.req.maxTokens === 0) return this.batch.finish(s, 'length');
    // the first generated token, from the prompt's last position
    const first = logitsAt(n - 1);
    this.emitter.tokens(s, [this.target.choose(s, first)], [first], { step: 0, drafted: 0, accepted: 0, cap: 0 });
  }

  private afterDecode(r: Row, out: ForwardOutput, base: number, logitsAt: (node: number) => Float32Array, goodput: GoodputStep | null): void {
    const s = r.seq;
    s.stats.decodeSteps++;
    s.stats.verifiedTokens += r.tokens.length;
    const result = verifyRow(r, logitsAt, this.deps.model.vocabSize, this.target);
    const drafted = r.tokens.length - 1;
    const accepted = result.path.length - 1;
    commitRows(this.deps.kv, s, out, base, result.path, this.deps.model.hiddenSize);
    const tokens = [...result.path.slice(1).map((n) => r.tokens[n]), result.bonus];
    const origin = { step: s.stats.decodeSteps, drafted, accepted, cap: r.draftLimit };
    const kept = this.emitter.tokens(s, tokens, result.path.map(logitsAt), origin, (kept) => {
      if (drafted === 0) return;
      // tokens past EOS / max_tokens / a stop string were verified but not emitted: not accepted
      const acceptedKept = Math.min(accepted, kept);
      s.stats.draftSteps++;
      s.stats.draftTokens += drafted;
      s.stats.acceptedTokens += acceptedKept;
      if (r.tree?.stoppedEarly) s.stats.earlyStops++;
      s.draftBudget.observe(accepted, drafted);
      this.deps.send({
        type: 'spec_step', drafter: s.req.drafter, drafted, accepted: acceptedKept,
        acceptedPositions: Array.from({ length: acceptedKept }, (_, i) => i),
      });
    });
    goodput?.count(kept, result.path.slice(1).map((n) => n - 1));
    if (this.batch.running.includes(s)) s.drafter?.observe?.(s.id, tokens, accepted, drafted);
  }
}
