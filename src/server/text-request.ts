// Validated wire bodies → engine TextRequests. Checks that need the loaded engine (model id,
// context length, vocabulary, drafter names) live here because the zod schemas cannot know them.

import type { Engine, SamplingParams, SpeculativeParams, TextRequest } from '../engine/types.ts';
import { ApiError, assertKnownDrafter } from '../errors.ts';
import type { StreamPacing } from './pacing.ts';
import type { ChatRequest, CompletionRequest } from './schemas.ts';

export const DEFAULT_TEMPERATURE = 1;
export const DEFAULT_TOP_P = 1;
/** OpenAI's completions default. Chat defaults to the context left after the prompt. */
export const DEFAULT_COMPLETION_MAX_TOKENS = 16;

type CommonBody = CompletionRequest | ChatRequest;

export function checkModel(engine: Engine, model: string | null | undefined): void {
  if (model != null && model !== engine.info.modelId) {
    throw new ApiError(
      'model_not_found',
      `The model '${model}' does not exist; this server serves '${engine.info.modelId}'`,
      'model',
    );
  }
}

export function checkMaxTokens(engine: Engine, maxTokens: number, param: string): void {
  if (maxTokens > engine.info.contextLength) {
    throw new ApiError(
      'invalid_request',
      `'${param}' is ${maxTokens}, more than the model's context length of ${engine.info.contextLength} tokens`,
      param,
    );
  }
}

export function checkTokenIds(engine: Engine, ids: readonly number[], param: string): void {
  const vocabSize = engine.info.vocabSize;
  const bad = ids.findIndex((id) => id >= vocabSize);
  if (bad >= 0) {
    throw new ApiError('invalid_request', `Token id ${ids[bad]} is outside the vocabulary (size ${vocabSize})`, `${param}.${bad}`);
  }
}

function samplingOf(body: CommonBody): SamplingParams {
  const topK = body.top_k ?? 0;
  return {
    temperature: body.temperature ?? DEFAULT_TEMPERATURE,
    topP: body.top_p ?? DEFAULT_TOP_P,
    // OpenAI has no top_k; vLLM uses -1 for "off", the engine 0.
    topK: topK < 0 ? 0 : topK,
    seed: body.seed ?? undefined,
    presencePenalty: body.presence_penalty ?? 0,
    frequencyPenalty: body.frequency_penalty ?? 0,
  };
}

function speculativeOf(body: CommonBody, engine: Engine): SpeculativeParams | null {
  const spec = body.speculative;
  if (spec == null) return null;
  const drafter = spec.drafter ?? engine.info.defaultDrafter;
  assertKnownDrafter(drafter, engine.drafters());
  return {
    drafter,
    maxDraftTokens: spec.max_draft_tokens ?? undefined,
    acceptance: spec.acceptance ?? undefined,
    lanternK: spec.lantern_k ?? undefined,
    lanternDelta: spec.lantern_delta ?? undefined,
  };
}

/** Fields shared by every choice of one request (prompt and seed are per choice). */
export type BaseRequest = Omit<TextRequest, 'prompt' | 'signal'>;

export function baseRequest(
  body: CommonBody,
  engine: Engine,
  fields: { maxTokens: number; maxTokensParam: string; logprobs: number | null; echo: boolean },
): BaseRequest {
  checkMaxTokens(engine, fields.maxTokens, fields.maxTokensParam);
  const minTokens = body.min_tokens ?? 0;
  if (minTokens > fields.maxTokens) {
    throw new ApiError('invalid_request', `'min_tokens' (${minTokens}) must not exceed '${fields.maxTokensParam}' (${fields.maxTokens})`, 'min_tokens');
  }
  const stop = body.stop == null ? [] : typeof body.stop === 'string' ? [body.stop] : body.stop;
  return {
    maxTokens: fields.maxTokens,
    minTokens,
    ignoreEos: body.ignore_eos ?? false,
    stop,
    sampling: samplingOf(body),
    logprobs: fields.logprobs,
    echo: fields.echo,
    speculative: speculativeOf(body, engine),
  };
}

export interface Choice {
  /** `choices[].index` in the response: promptIndex * n + i. */
  index: number;
  promptIndex: number;
  request: TextRequest;
}

/**
 * n choices per prompt, each its own engine call. A seeded request gives choice i the seed
 * `seed + i`, so choices differ yet each is reproducible (and independent of the other prompts).
 */
export function expandChoices(base: BaseRequest, prompts: (string | number[])[], n: number, signal: AbortSignal): Choice[] {
  const choices: Choice[] = [];
  prompts.forEach((prompt, promptIndex) => {
    for (let i = 0; i < n; i++) {
      const seed = base.sampling.seed === undefined ? undefined : base.sampling.seed + i;
      choices.push({
        index: promptIndex * n + i,
        promptIndex,
        request: { ...base, prompt, sampling: { ...base.sampling, seed }, signal },
      });
    }
  });
  return choices;
}

/** `prompt` as a list of prompts, each text or token ids. */
export function promptsOf(prompt: CompletionRequest['prompt']): (string | number[])[] {
  if (typeof prompt === 'string') return [prompt];
  const first = prompt[0];
  if (typeof first === 'number') return [prompt as number[]];
  return prompt as string[] | number[][];
}

/** What a request asked to get back besides the text, resolved once for its endpoint. */
export interface OutputOptions {
  /** Streaming: a final chunk with usage. */
  includeUsage: boolean;
  /** `token_sources` on every choice (streaming: on every text chunk). */
  tokenSources: boolean;
  pacing: StreamPacing;
}

export function outputOptions(body: CommonBody, serverPacing: StreamPacing): OutputOptions {
  const tokenSources = body.stream_options?.include_token_sources === true || body.include_token_sources === true;
  // an echoed prompt was not generated by anyone: the sources could not add up to the text
  if (tokenSources && 'echo' in body && body.echo === true) {
    throw new ApiError('invalid_request', 'include_token_sources cannot be combined with echo', 'include_token_sources');
  }
  return {
    includeUsage: body.stream_options?.include_usage === true,
    tokenSources,
    pacing: body.stream_options?.pacing ?? serverPacing,
  };
}
