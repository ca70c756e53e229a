// The contract between the HTTP layer (src/server/) and the engine (src/engine/).
// The server validates and shapes requests; the engine tokenizes, schedules, decodes and
// detokenizes. Everything here is plain data so it can also cross the worker boundary.

export interface SamplingParams {
  /** 0 = greedy. */
  temperature: number;
  /** 1 = off. */
  topP: number;
  /** 0 = off. */
  topK: number;
  /** Same seed and request → same output. Undefined = a fresh random seed. */
  seed?: number;
  presencePenalty: number;
  frequencyPenalty: number;
}

export interface SpeculativeParams {
  /** A drafter name from `engine.drafters()`, or "none" for plain decoding. */
  drafter: string;
  /** Upper bound on draft tokens verified per step (tree nodes excluding the root). */
  maxDraftTokens?: number;
  /** "lossless" (default) or the opt-in lossy LANTERN relaxed acceptance. */
  acceptance?: 'lossless' | 'lantern';
  /** LANTERN neighbourhood size k (defaults in the policy). */
  lanternK?: number;
  /** LANTERN total-variation budget delta (defaults in the policy). */
  lanternDelta?: number;
}

export interface TextRequest {
  /** Text (tokenized by the engine) or token ids. */
  prompt: string | number[];
  maxTokens: number;
  /** vLLM extension: EOS and stop strings are ignored until this many tokens. */
  minTokens: number;
  /** vLLM extension: keep generating past EOS. */
  ignoreEos: boolean;
  /** Stop strings; matched across token boundaries and never emitted. */
  stop: string[];
  sampling: SamplingParams;
  /** Top-N log-probabilities per generated token, or null. */
  logprobs: number | null;
  /** Return the prompt in front of the completion (with its logprobs when logprobs is set). */
  echo: boolean;
  /** null = the server's default drafter. */
  speculative: SpeculativeParams | null;
  signal?: AbortSignal;
}

export interface TopLogprob {
  token: string;
  logprob: number;
}

export interface TokenLogprob {
  token: string;
  tokenId: number;
  /** null for the first prompt token (nothing to condition on). */
  logprob: number | null;
  top: TopLogprob[];
  /** Character offset of this token in the returned text (prompt text included when echoed). */
  textOffset: number;
}

export type FinishReason = 'stop' | 'length';

/** What the worker counts of a request's speculation (statistic definitions: stats.ts). */
export interface SpeculationCounts {
  drafter: string;
  /** Decode steps that verified at least one draft token. */
  draftSteps: number;
  /** Draft tokens verified. */
  draftTokens: number;
  /** Draft tokens the target kept (those past a stop excluded). */
  acceptedTokens: number;
  /** Draft steps the drafter ended early because its confidence fell (Kangaroo's second exit). */
  earlyStops?: number;
  /** Set when a lossy policy decided any acceptance. */
  lossy?: { policy: 'lantern'; k: number; delta: number; relaxedSteps: number };
  /** Why the request ran without speculation, when it asked for it and could not have it. */
  fallback?: string;
}

export interface SpeculationStats extends SpeculationCounts {
  /** 1 + acceptedTokens / draftSteps: tokens per verified draft step, the bonus token included
   *  (stats.ts meanAcceptanceLength). 1 when nothing was drafted. */
  meanAcceptanceLength: number;
}

/**
 * Where a request's decode steps spent their time in the worker (prefill excluded): drafting (the
 * drafter's calls before each step's target forward) and the target forward that verified the
 * root and draft tokens (for Kangaroo rows, the deep layers), building its inputs (batch past,
 * attention bias) included. Work done for a batch of sequences is shared equally among them. The
 * rest of a step (verification logic, sampling, KV bookkeeping, messages) is neither.
 */
export interface DecodeTiming {
  /** Target forwards this request took part in after prefill. */
  decodeSteps: number;
  draftMs: number;
  forwardMs: number;
  /** Tokens the decode forwards verified for this request: one root per step plus its draft nodes. */
  verifiedTokens: number;
}

/** Where a stretch of generated text came from. */
export interface TokenSource {
  text: string;
  /** 'draft': proposed by the drafter and confirmed by the target; 'target': the target's own
   *  token (a plain step's token, or the correction/bonus token after a draft). */
  source: 'draft' | 'target';
  /** The decode step that produced the token: 0 is the token read off the prompt's last position. */
  step: number;
  /** The token's place among its step's tokens; for a draft token, its position in the draft. */
  position: number;
  /** Draft tokens the target verified in that step. */
  drafted: number;
  /** The most draft tokens the server allowed in that step (0: it did not draft). */
  cap: number;
  tokenId: number;
  /** The token's log-probability, when the request asked for logprobs. */
  logprob?: number;
}

/** One generated token's share of a text event: the text that became final when it arrived (stop
 *  strings and partial characters can hold text back, so it may hold earlier tokens' text too),
 *  and that text's sources. The tail flushed at the end has no token of its own. */
export interface TextPart {
  text: string;
  tokenId?: number;
  logprob?: TokenLogprob;
  sources: TokenSource[];
}

export type TextEvent =
  | {
      type: 'text';
      text: string;
      tokenIds: number[];
      logprobs?: TokenLogprob[];
      /** Generated text only (an echoed prompt has none): `text` is the concatenation of the parts. */
      parts?: TextPart[];
    }
  | {
      type: 'done';
      finishReason: FinishReason;
      promptTokens: number;
      completionTokens: number;
      timing?: DecodeTiming;
      speculation?: SpeculationStats;
    };

export interface ChatMessage {
  role: 'system' | 'user' | 'assistant' | 'developer' | 'tool';
  content: string;
}

import type { DrafterInfo } from '../drafters/index.ts';

export type { DrafterInfo };

export interface EngineInfo {
  modelId: string;
  contextLength: number;
  /** Execution provider actually in use. */
  provider: 'cuda' | 'cpu';
  /** Weight format of the target graph in use. */
  dtype: import('../model/config.ts').WeightDtype;
  /** Which ONNX layout the model folder has. */
  layout: import('../model/config.ts').GraphLayoutName;
  vocabSize: number;
  defaultDrafter: string;
}

export interface EngineLoad {
  running: number;
  waiting: number;
}

export interface Engine {
  readonly info: EngineInfo;
  /** Streams text for one choice. Throws EngineError for request-level problems. */
  generateText(req: TextRequest): AsyncIterable<TextEvent>;
  tokenize(text: string): number[];
  detokenize(ids: number[]): string;
  /** Renders the chat template with the generation prompt appended. */
  applyChatTemplate(messages: ChatMessage[]): string;
  drafters(): DrafterInfo[];
  load(): EngineLoad;
  close(): Promise<void>;
}
