// One request's state in the worker, from admission to its last token. Every stage of a step reads
// and writes this one object; nothing else holds per-request state except the KV cache (by id) and
// the drafters (by id, released when the sequence finishes).
import type { Drafter } from '../drafters/Drafter.ts';
import { Rng } from '../util/rng.ts';
import type { Relax } from './acceptance.ts';
import type { SeqRequest } from './protocol.ts';
import type { TokenCounts } from './sampling.ts';
import type { StopCheck } from './stop.ts';

/** Steps drafting pauses after a failed single-token probe, doubling up to the max. */
const DRAFT_BACKOFF_MIN = 2;
const DRAFT_BACKOFF_MAX = 16;

/**
 * The sequence's own draft budget, adapted to how well its drafter predicts it: halved when a
 * draft is rejected outright, doubled when at least half lands. A rejected single-token draft
 * pauses drafting for a while (doubling up to DRAFT_BACKOFF_MAX steps), so a sequence the drafter
 * cannot predict decodes at plain speed and is probed again now and then.
 */
export class AdaptiveDraftBudget {
  /** Draft tokens this sequence may verify next step (before the step's cap). */
  tokens: number;
  /** Decode steps left before drafting is tried again. */
  private pause = 0;
  /** Next pause length; doubles each time a probe fails. */
  private backoff = DRAFT_BACKOFF_MIN;

  constructor(private readonly max: number) {
    this.tokens = max;
  }

  /** Whether the sequence drafts this step; counts a paused step down. */
  drafts(): boolean {
    if (this.pause === 0) return true;
    this.pause--;
    return false;
  }

  /** After a verified draft of `drafted` tokens, `accepted` of them kept. */
  observe(accepted: number, drafted: number): void {
    if (accepted === 0) {
      if (this.tokens === 1) {
        this.pause = this.backoff;
        this.backoff = Math.min(DRAFT_BACKOFF_MAX, this.backoff * 2);
      }
      this.tokens = Math.max(1, Math.floor(this.tokens / 2));
    } else {
      this.backoff = DRAFT_BACKOFF_MIN;
      if (accepted * 2 >= drafted) this.tokens = Math.min(this.max, this.tokens * 2);
    }
  }
}

/** What the request's done message reports (SpeculationCounts and DecodeTiming in engine/types.ts). */
export interface SequenceStats {
  /** Decode steps that verified at least one draft token. */
  draftSteps: number;
  draftTokens: number;
  /** Draft tokens kept (not counting those past a stop). */
  acceptedTokens: number;
  /** Target forwards this sequence took part in after prefill. */
  decodeSteps: number;
  relaxedSteps: number;
  earlyStops: number;
  fallback?: string;
  /** Where decode time went (DecodeTiming); batched work is shared equally by its sequences. */
  draftMs: number;
  forwardMs: number;
  verifiedTokens: number;
}

export interface SequenceSetup {
  drafter?: Drafter;
  /** Why the request runs without the speculation it asked for. */
  fallback?: string;
  /** The LANTERN relaxation (lossy, opt-in). */
  relax?: Relax;
  stop?: StopCheck | null;
}

export class Sequence {
  readonly id: number;
  /** Prompt + committed output, ending with the root once decoding. */
  readonly tokens: number[];
  /** Prompt tokens already in the KV cache. */
  prefilled = 0;
  /** Last chosen token, not yet in the cache (null while prefilling). */
  root: number | null = null;
  generated = 0;
  readonly counts: TokenCounts = new Map();
  readonly rng: Rng;
  /** Unset when the drafter failed for this sequence (it then decodes plainly). */
  drafter: Drafter | undefined;
  readonly draftBudget: AdaptiveDraftBudget;
  readonly relax: Relax | undefined;
  readonly stop: StopCheck | null;
  readonly stats: SequenceStats;
  /** The client went away; the next step drops the sequence. */
  cancelled = false;
  /** Post-norm hidden state of the last committed row (drafters declaring `needs.hidden`). */
  hidden?: Float32Array;
  /** Committed rows' target states not yet handed to the drafter (drafters declaring `history`). */
  history: Float32Array[] = [];
  historyFrom = 0;
  /** Log-softmax of the last prefilled row, while prompt logprobs are being reported. */
  promptLp?: Float64Array;

  constructor(readonly req: SeqRequest, setup: SequenceSetup = {}) {
    this.id = req.id;
    this.tokens = req.promptIds.slice();
    this.rng = new Rng(req.sampling.seed);
    this.drafter = setup.drafter;
    this.draftBudget = new AdaptiveDraftBudget(req.maxDraftTokens);
    this.relax = setup.relax;
    this.stop = setup.stop ?? null;
    this.stats = {
      draftSteps: 0, draftTokens: 0, acceptedTokens: 0, decodeSteps: 0, relaxedSteps: 0, earlyStops: 0,
      fallback: setup.fallback, draftMs: 0, forwardMs: 0, verifiedTokens: 0,
    };
  }

  get prefilling(): boolean {
    return this.root === null;
  }
}
