// Engine results → OpenAI wire pieces shared by both endpoints (logprobs, usage, speculation stats).

import { randomUUID } from 'node:crypto';
import type { SpeculationStats, TextEvent, TokenLogprob, TokenSource } from '../engine/types.ts';
import type { ChatLogprobs, CompletionLogprobs, SpeculativeStatsWire, TokenSourceWire, Usage } from './schemas.ts';

export type TextChunk = Extract<TextEvent, { type: 'text' }>;
export type DoneEvent = Extract<TextEvent, { type: 'done' }>;

export function responseId(prefix: 'cmpl' | 'chatcmpl'): string {
  return `${prefix}-${randomUUID().replaceAll('-', '')}`;
}

export function unixSeconds(): number {
  return Math.floor(Date.now() / 1000);
}

export function completionLogprobs(tokens: readonly TokenLogprob[]): CompletionLogprobs {
  return {
    tokens: tokens.map((t) => t.token),
    token_logprobs: tokens.map((t) => t.logprob),
    // The first echoed prompt token has nothing to condition on: null, as OpenAI sends it.
    top_logprobs: tokens.map((t) => (t.logprob === null ? null : Object.fromEntries(t.top.map((top) => [top.token, top.logprob])))),
    text_offset: tokens.map((t) => t.textOffset),
  };
}

const utf8Bytes = (token: string) => Array.from(Buffer.from(token, 'utf8'));

export function chatLogprobs(tokens: readonly TokenLogprob[]): ChatLogprobs {
  return {
    content: tokens.map((t) => ({
      token: t.token,
      // Chat never echoes the prompt, so every token has a logprob; guard anyway.
      logprob: t.logprob ?? 0,
      bytes: utf8Bytes(t.token),
      top_logprobs: t.top.map((top) => ({ token: top.token, logprob: top.logprob, bytes: utf8Bytes(top.token) })),
    })),
  };
}

/** Prompt tokens count once per prompt (all n choices share it), as OpenAI and vLLM bill them. */
export function usageOf(outputs: readonly { promptIndex: number; done: DoneEvent }[]): Usage {
  const promptTokens = new Map<number, number>();
  let completionTokens = 0;
  for (const { promptIndex, done } of outputs) {
    promptTokens.set(promptIndex, done.promptTokens);
    completionTokens += done.completionTokens;
  }
  const prompt = [...promptTokens.values()].reduce((sum, tokens) => sum + tokens, 0);
  return { prompt_tokens: prompt, completion_tokens: completionTokens, total_tokens: prompt + completionTokens };
}

export function speculativeWire(index: number, stats: SpeculationStats): SpeculativeStatsWire {
  return {
    index,
    drafter: stats.drafter,
    draft_steps: stats.draftSteps,
    draft_tokens: stats.draftTokens,
    accepted_tokens: stats.acceptedTokens,
    mean_acceptance_length: stats.meanAcceptanceLength,
    acceptance: stats.lossy ? 'lantern' : 'lossless',
    ...(stats.lossy ? { lossy: { policy: stats.lossy.policy, k: stats.lossy.k, delta: stats.lossy.delta, relaxed_steps: stats.lossy.relaxedSteps } } : {}),
    ...(stats.fallback ? { fallback: stats.fallback } : {}),
  };
}

/** The `speculative` field for a set of finished choices; absent when no choice speculated. */
export function speculativeField(outputs: readonly { index: number; done: DoneEvent }[]): { speculative?: SpeculativeStatsWire[] } {
  const stats = outputs.flatMap(({ index, done }) => (done.speculation ? [speculativeWire(index, done.speculation)] : []));
  return stats.length > 0 ? { speculative: stats } : {};
}

export function tokenSourcesWire(sources: readonly TokenSource[]): TokenSourceWire[] {
  return sources.map((s) => ({
    text: s.text,
    source: s.source,
    step: s.step,
    position: s.position,
    drafted: s.drafted,
    draft_cap: s.cap,
    token_id: s.tokenId,
    ...(s.logprob === undefined ? {} : { logprob: s.logprob }),
  }));
}

/** The sources of a text event's text (none for an echoed prompt). */
export function eventSources(event: TextChunk): TokenSource[] {
  return event.parts?.flatMap((part) => part.sources) ?? [];
}
