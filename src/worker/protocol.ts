// Messages between the main thread (src/engine/engine.ts) and the inference worker
// (src/worker/worker.ts). Token ids only, except stop strings, which the worker checks as it emits.
import type { DrafterInfo, SamplingParams, SpeculationCounts } from '../engine/types.ts';
import type { GraphLayoutName, WeightDtype } from '../model/config.ts';

export interface SeqRequest {
  id: number;
  promptIds: number[];
  maxTokens: number;
  minTokens: number;
  ignoreEos: boolean;
  sampling: SamplingParams & { seed: number };
  /** Top-N logprobs per generated token, or null. */
  logprobs: number | null;
  /** Log-probabilities of the prompt tokens (echo with logprobs). */
  promptLogprobs: boolean;
  /** Stop strings: the worker ends the sequence on the token that completes one. */
  stop: string[];
  /** Drafter name or 'none'. */
  drafter: string;
  maxDraftTokens: number;
  /** 'lantern' = the opt-in lossy relaxed acceptance (docs/methods.md §6). */
  acceptance: 'lossless' | 'lantern';
  lanternK: number;
  lanternDelta: number;
  /** Absolute deadline (ms since epoch), 0 = none. */
  deadline: number;
}

export interface WireLogprob {
  id: number;
  /** null for the first prompt token. */
  logprob: number | null;
  top: { id: number; logprob: number }[];
}

/**
 * How the tokens of one `tokens` message were made: they are one decode step's output for one
 * sequence, the first `accepted` drafted and confirmed by the target, the rest (the correction or
 * bonus token) the target's own.
 */
export interface StepOrigin {
  /** The sequence's decode step: 0 for the token read off the prompt's last position. */
  step: number;
  /** Draft tokens the target verified in the step (tree nodes under the root). */
  drafted: number;
  accepted: number;
  /** The most draft tokens the scheduler allowed the row in the step (0 when it did not draft). */
  cap: number;
}

export type DraftCapSnapshot = import('./draft-policy.ts').DraftCapSnapshot;

export type DecodeTiming = import('../engine/types.ts').DecodeTiming;

export type ToWorker =
  | { type: 'submit'; req: SeqRequest }
  | { type: 'cancel'; id: number }
  | { type: 'shutdown' };

export type FromWorker =
  | { type: 'ready'; info: WorkerInfo }
  | { type: 'fatal'; message: string }
  | { type: 'log'; level: 'info' | 'warn'; message: string }
  | { type: 'tokens'; id: number; ids: number[]; logprobs?: WireLogprob[]; origin: StepOrigin }
  | { type: 'prompt_logprobs'; id: number; entries: WireLogprob[] }
  | {
      type: 'done';
      id: number;
      finishReason: 'stop' | 'length';
      promptTokens: number;
      completionTokens: number;
      /** Most KV cache bytes the request held at once (PagedKvCache.usage().peakBytes). */
      kvPeakBytes: number;
      timing: DecodeTiming;
      /** Set when the request asked for a drafter (fallback says why it could not have one). */
      spec?: SpeculationCounts;
    }
  | { type: 'error'; id: number; code: 'queue_full' | 'internal_error' | 'request_timeout'; message: string }
  | {
      type: 'load'; running: number; waiting: number; kv: import('../kvcache/paged.ts').KvStats;
      /** The goodput policy's current best draft cap per batch-size class. */
      draftCaps?: DraftCapSnapshot[];
    }
  | { type: 'spec_step'; drafter: string; drafted: number; accepted: number; acceptedPositions: number[] }
  /** A sequence left without a done message (cancelled or failed): what it held of the KV cache. */
  | { type: 'released'; id: number; kvPeakBytes: number }
  /** Everything the scheduler said during one synchronous stretch of a step (one message per step
   *  instead of one per sequence: at 16 streams that was 16 structured clones a step). */
  | { type: 'batch'; messages: FromWorker[] };

export interface WorkerInfo {
  provider: 'cuda' | 'cpu';
  /** Weight format of the target graph in use. */
  dtype: WeightDtype;
  layout: GraphLayoutName;
  drafters: DrafterInfo[];
}

export interface WorkerInit {
  modelDir: string;
  provider: 'auto' | 'cuda' | 'cpu';
  dtype: WeightDtype | 'auto';
  threads: number;
  spinThreads: boolean;
  maxBatchSize: number;
  maxQueuedRequests: number;
  kvCacheBytes: number;
  kvCache: 'fp32' | 'saq';
  prefillChunk: number;
  draftPolicy: 'goodput' | 'static';
  kangarooThreshold: number | undefined;
}
