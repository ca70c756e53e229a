// Planning a step: which rows go into this step's forward, and how many draft tokens each decoding
// sequence may verify (its draft limit). The limit is the smallest of:
//   the sequence's own adaptive budget (sequence.ts AdaptiveDraftBudget),
//   the step's cap from the draft policy (static share or measured goodput, resolved once),
//   the room left in the context, in max_tokens, and before a SAQ demotion rewrites rows.
import type { DraftTree } from '../drafters/Drafter.ts';
import type { PagedKvCache } from '../kvcache/paged.ts';
import { DraftCapPolicy } from './draft-policy.ts';
import type { CacheSlots } from './forward/cache-slots.ts';
import type { Sequence } from './sequence.ts';

/**
 * The 'static' draft policy: draft tokens verified per step over the whole batch. Verifying extra
 * tokens is nearly free while a forward is bound by reading weights (small batches) and costs full
 * price once it is bound by compute (large batches), so each sequence's share shrinks as the batch
 * grows. The default 'goodput' policy (draft-policy.ts) measures instead of assuming.
 */
export const STATIC_DRAFT_TOKENS_PER_STEP = 32;

/** One row of the batched forward: a prompt chunk, or a root with its draft tree below it. */
export interface Row {
  seq: Sequence;
  kind: 'prefill' | 'decode';
  /** [nodes] tokens; for a decode row node 0 is the root. */
  tokens: number[];
  /** [nodes] parent node, -1 for the first. */
  parents: number[];
  /** [nodes] distance from the first node. */
  depth: number[];
  /** Decode rows: the most draft nodes the row may carry (0 when it does not draft). */
  draftLimit: number;
  /** The drafter's tree, as the row carries it (cut to its draft limit and the graph's shape). */
  tree?: DraftTree;
  /** Set when the forward's input is built (forward/cache-slots.ts). */
  slots?: CacheSlots;
}

/** The step's cap on draft tokens per sequence, and the goodput bookkeeping when measured. */
export interface StepCap {
  cap: number;
  goodput: GoodputStep | null;
}

/** How a step's cap is chosen. */
export interface DraftPolicy {
  choose(running: readonly Sequence[]): StepCap;
}

export type DraftPolicyName = 'goodput' | 'static';

export function resolveDraftPolicy(name: DraftPolicyName, caps: DraftCapPolicy): DraftPolicy {
  const staticShare = (running: readonly Sequence[]): StepCap => ({ cap: Math.floor(STATIC_DRAFT_TOKENS_PER_STEP / running.length), goodput: null });
  switch (name) {
    case 'static':
      return { choose: staticShare };
    case 'goodput':
      return {
        choose(running) {
          const decoding = running.filter((s) => !s.prefilling);
          const names = new Set(decoding.flatMap((s) => (s.drafter ? [s.drafter.name] : [])));
          // nobody drafts: the cap is unused
          if (names.size === 0) return staticShare(running);
          // measured per drafter: their costs and hit rates differ too much to share one estimate
          const drafter = names.size === 1 ? [...names][0] : 'mixed';
          const { cap, arm } = caps.choose(decoding.length, drafter);
          return { cap, goodput: new GoodputStep(caps, decoding.length, arm, drafter) };
        },
      };
    default:
      throw new Error(`unhandled draft policy ${name satisfies never}`);
  }
}

/**
 * What one step tells the goodput policy: the tokens its decode rows emitted under the cap it ran,
 * and what they would have emitted under each smaller cap. Trees are cut to a cap by prefix
 * (propose.ts truncateTree), so under cap c a row would have verified its first c nodes and kept
 * the part of its accepted path among them.
 */
export class GoodputStep {
  /** Per cap up to the chosen one: tokens emitted / that would have been. */
  readonly tokens: number[];
  private readonly caps: readonly number[];

  constructor(
    private readonly policy: DraftCapPolicy,
    private readonly batch: number,
    private readonly arm: number,
    private readonly drafter: string,
  ) {
    this.caps = policy.caps.slice(0, arm + 1);
    this.tokens = new Array(arm + 1).fill(0);
  }

  /** A decode row emitted `kept` tokens; `acceptedNodes` are its accepted draft nodes (0-based). */
  count(kept: number, acceptedNodes: readonly number[]): void {
    this.caps.forEach((c, i) => (this.tokens[i] += Math.min(kept, 1 + acceptedNodes.filter((j) => j < c).length)));
  }

  /** The step's decode time (drafting + verification, prefill excluded). */
  record(ms: number): void {
    this.policy.record(this.batch, this.arm, { ms, tokens: this.tokens }, this.drafter);
  }
}

export interface PlanEnv {
  kv: PagedKvCache;
  contextLength: number;
  prefillChunk: number;
}

/** This step's rows, in running order: prompt chunks up to the prefill budget, one decode row per
 *  decoding sequence with its draft limit set. */
export function planRows(running: readonly Sequence[], stepCap: number, env: PlanEnv): Row[] {
  const rows: Row[] = [];
  let prefillBudget = env.prefillChunk;
  for (const s of running) {
    if (s.prefilling) {
      if (prefillBudget <= 0) continue; // next step: decode streams must not stall behind prompts
      const n = Math.min(prefillBudget, s.req.promptIds.length - s.prefilled);
      prefillBudget -= n;
      const tokens = s.req.promptIds.slice(s.prefilled, s.prefilled + n);
      rows.push({ seq: s, kind: 'prefill', tokens, parents: tokens.map((_, i) => i - 1), depth: tokens.map((_, i) => i), draftLimit: 0 });
      continue;
    }
    const row: Row = { seq: s, kind: 'decode', tokens: [s.root!], parents: [-1], depth: [0], draftLimit: 0 };
    rows.push(row);
    if (s.drafter && s.draftBudget.drafts()) {
      const cached = env.kv.length(s.id);
      row.draftLimit = Math.max(0, Math.min(
        s.draftBudget.tokens,
        stepCap,
        env.contextLength - cached - 1,
        s.req.maxTokens - s.generated - 1, // never draft past max_tokens
        // every row of the step reads the cache as it is now: none may sit where plain decoding
        // would already read rows a SAQ demotion rewrote
        env.kv.tokensUntilRewrite(s.id) - 1,
      ));
    }
  }
  return rows;
}
