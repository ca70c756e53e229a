// Wire schemas (OpenAI format, see shared/docs/openai-api.md). Route types are inferred from these
// through the zod type provider, so the request and response shapes are written once, here.
// Optional OpenAI fields are `nullish`: SDKs and frameworks send `null` for "not set".

import { z } from 'zod';
import { STREAM_PACINGS } from './pacing.ts';
import { CHAT_UNSUPPORTED, COMPLETION_UNSUPPORTED, UNSUPPORTED_ISSUE, refuseUnsupported, unsupportedMessage } from './unsupported.ts';

/** Choices per prompt. */
export const MAX_N = 16;
/** Stop strings per request (OpenAI allows 4; vLLM more). */
export const MAX_STOP = 16;
/** Top-N log-probabilities per token. */
export const MAX_LOGPROBS = 20;

// ---- request pieces ----------------------------------------------------------------------------

const tokenId = z.number().int().min(0);

const speculativeSchema = z
  .object({
    /** Defaults to the server's default drafter. */
    drafter: z.string().min(1).nullish(),
    max_draft_tokens: z.number().int().min(1).nullish(),
    acceptance: z.enum(['lossless', 'lantern']).nullish(),
    lantern_k: z.number().int().min(1).nullish(),
    lantern_delta: z.number().gt(0).max(1).nullish(),
  })
  .superRefine((spec, ctx) => {
    // LANTERN knobs without asking for LANTERN would be silently ignored.
    for (const field of ['lantern_k', 'lantern_delta'] as const) {
      if (spec[field] != null && spec.acceptance !== 'lantern') {
        ctx.addIssue({ code: 'custom', path: [field], message: `${field} requires acceptance "lantern"` });
      }
    }
  });

const sharedFields = {
  model: z.string({ error: (issue) => (issue.input === undefined ? 'model is required' : undefined) }).min(1),
  temperature: z.number().min(0).max(2).nullish(),
  top_p: z.number().gt(0).max(1).nullish(),
  /** -1 or 0 = off. */
  top_k: z.number().int().min(-1).nullish(),
  seed: z.number().int().nullish(),
  n: z.number().int().min(1).max(MAX_N).nullish(),
  stop: z.union([z.string().min(1), z.array(z.string().min(1)).max(MAX_STOP)]).nullish(),
  presence_penalty: z.number().min(-2).max(2).nullish(),
  frequency_penalty: z.number().min(-2).max(2).nullish(),
  stream: z.boolean().nullish(),
  stream_options: z
    .object({
      include_usage: z.boolean().nullish(),
      /** This project's extension: each chunk's choice says which tokens were drafted. */
      include_token_sources: z.boolean().nullish(),
      /** This project's extension: 'smooth' spreads a step's tokens over the step interval. */
      pacing: z.enum(STREAM_PACINGS).nullish(),
    })
    .nullish(),
  /** This project's extension: `choices[i].token_sources` (streaming: in every chunk). */
  include_token_sources: z.boolean().nullish(),
  user: z.string().nullish(),
  /** vLLM extension. */
  ignore_eos: z.boolean().nullish(),
  /** vLLM extension. */
  min_tokens: z.number().int().min(0).nullish(),
  /** This project's extension. */
  speculative: speculativeSchema.nullish(),
};

function streamOptionsNeedStream(body: { stream?: boolean | null; stream_options?: unknown }, ctx: z.RefinementCtx) {
  if (body.stream_options != null && body.stream !== true) {
    ctx.addIssue({ code: 'custom', path: ['stream_options'], message: 'stream_options is only allowed when stream is true' });
  }
}

// A non-text part is a known OpenAI feature (images, audio, files) this server cannot honour.
const contentPart = z
  .looseObject({ type: z.string() })
  .superRefine((part, ctx) => {
    if (part.type !== 'text') {
      ctx.addIssue({
        code: 'custom',
        path: ['type'],
        message: `content part type '${part.type}' is not supported; only 'text'`,
        params: UNSUPPORTED_ISSUE,
      });
    }
  })
  .pipe(z.object({ type: z.literal('text'), text: z.string() }));

const messageSchema = z
  .looseObject({
    role: z.enum(['system', 'user', 'assistant', 'developer', 'tool']),
    content: z.union([z.string(), z.array(contentPart)], { error: 'content must be a string or an array of content parts' }),
    name: z.string().nullish(),
  })
  .superRefine((message, ctx) => {
    for (const field of ['tool_calls', 'function_call']) {
      const value = message[field];
      if (value != null && !(Array.isArray(value) && value.length === 0)) {
        ctx.addIssue({ code: 'custom', path: [field], message: unsupportedMessage(field), params: UNSUPPORTED_ISSUE });
      }
    }
  });

const messagesSchema = z.array(messageSchema).min(1, 'messages must not be empty');

// ---- requests ----------------------------------------------------------------------------------

export const CompletionRequestSchema = z
  .looseObject({
    ...sharedFields,
    prompt: z.union([z.string(), z.array(z.string()).min(1), z.array(tokenId).min(1), z.array(z.array(tokenId).min(1)).min(1)], {
      error: (issue) =>
        issue.input === undefined
          ? 'prompt is required'
          : 'prompt must be a string, an array of strings, an array of token ids or an array of token-id arrays',
    }),
    /** 0 is allowed: with `echo` it scores the prompt without generating. */
    max_tokens: z.number().int().min(0).nullish(),
    logprobs: z.number().int().min(0).max(MAX_LOGPROBS).nullish(),
    echo: z.boolean().nullish(),
    best_of: z.number().int().min(1).nullish(),
  })
  .superRefine(streamOptionsNeedStream)
  .superRefine((body, ctx) => {
    if (body.best_of != null && body.best_of < (body.n ?? 1)) {
      ctx.addIssue({ code: 'custom', path: ['best_of'], message: 'best_of must be greater than or equal to n' });
    }
  })
  .superRefine(refuseUnsupported(COMPLETION_UNSUPPORTED));
export type CompletionRequest = z.output<typeof CompletionRequestSchema>;

export const ChatRequestSchema = z
  .looseObject({
    ...sharedFields,
    messages: messagesSchema,
    max_tokens: z.number().int().min(1).nullish(),
    max_completion_tokens: z.number().int().min(1).nullish(),
    logprobs: z.boolean().nullish(),
    top_logprobs: z.number().int().min(0).max(MAX_LOGPROBS).nullish(),
  })
  .superRefine(streamOptionsNeedStream)
  .superRefine((body, ctx) => {
    if (body.top_logprobs != null && body.logprobs !== true) {
      ctx.addIssue({ code: 'custom', path: ['top_logprobs'], message: 'top_logprobs requires logprobs to be true' });
    }
  })
  .superRefine(refuseUnsupported(CHAT_UNSUPPORTED));
export type ChatRequest = z.output<typeof ChatRequestSchema>;
export type ChatRequestMessage = ChatRequest['messages'][number];

export const TokenizeRequestSchema = z
  .looseObject({
    model: z.string().nullish(),
    prompt: z.string().optional(),
    messages: messagesSchema.optional(),
  })
  .superRefine((body, ctx) => {
    if ((body.prompt === undefined) === (body.messages === undefined)) {
      ctx.addIssue({ code: 'custom', path: ['prompt'], message: 'give exactly one of prompt or messages' });
    }
  });
export type TokenizeRequest = z.output<typeof TokenizeRequestSchema>;

export const DetokenizeRequestSchema = z.looseObject({
  model: z.string().nullish(),
  tokens: z.array(tokenId),
});

/** Model ids may contain slashes ("org/name"), hence a wildcard. */
export const ModelParamsSchema = z.object({ '*': z.string() });

// ---- responses ---------------------------------------------------------------------------------

const usageSchema = z.object({
  prompt_tokens: z.number().int(),
  completion_tokens: z.number().int(),
  total_tokens: z.number().int(),
});
export type Usage = z.output<typeof usageSchema>;

/** Per-choice speculation stats: this project's extra top-level field `speculative`. */
export const speculativeStatsSchema = z.object({
  index: z.number().int(),
  drafter: z.string(),
  /** Verification steps that checked at least one draft token. */
  draft_steps: z.number().int(),
  draft_tokens: z.number().int(),
  accepted_tokens: z.number().int(),
  /** 1 + accepted_tokens / draft_steps: tokens per verified draft step, the bonus token included (1.0 = no gain; src/engine/stats.ts). */
  mean_acceptance_length: z.number(),
  /** "lantern" means a lossy policy decided at least one acceptance. */
  acceptance: z.enum(['lossless', 'lantern']),
  /** Present when the lossy LANTERN policy was used; `relaxed_steps` counts acceptances it relaxed. */
  lossy: z.object({ policy: z.literal('lantern'), k: z.number(), delta: z.number(), relaxed_steps: z.number().int() }).optional(),
  /** Why the request ran without speculation when it asked for it. */
  fallback: z.string().optional(),
});
export type SpeculativeStatsWire = z.output<typeof speculativeStatsSchema>;

const finishReason = z.enum(['stop', 'length']);

/** A stretch of generated text and where it came from (`include_token_sources`). */
export const tokenSourceSchema = z.object({
  text: z.string(),
  /** draft: proposed by the drafter and confirmed by the target; target: the target's own token. */
  source: z.enum(['draft', 'target']),
  /** The decode step that made the token (0: read off the prompt's last position). */
  step: z.number().int(),
  /** Its place among the step's tokens; for a draft token, its position in the draft (from 0). */
  position: z.number().int(),
  /** Draft tokens the target verified in that step. */
  drafted: z.number().int(),
  /** The most draft tokens the server allowed in that step (0: it did not draft). */
  draft_cap: z.number().int(),
  token_id: z.number().int(),
  logprob: z.number().optional(),
});
export type TokenSourceWire = z.output<typeof tokenSourceSchema>;

export const completionLogprobsSchema = z.object({
  tokens: z.array(z.string()),
  token_logprobs: z.array(z.number().nullable()),
  top_logprobs: z.array(z.record(z.string(), z.number()).nullable()),
  text_offset: z.array(z.number().int()),
});
export type CompletionLogprobs = z.output<typeof completionLogprobsSchema>;

const chatTopLogprobSchema = z.object({ token: z.string(), logprob: z.number(), bytes: z.array(z.number().int()).nullable() });
export const chatLogprobsSchema = z.object({
  content: z.array(chatTopLogprobSchema.extend({ top_logprobs: z.array(chatTopLogprobSchema) })),
});
export type ChatLogprobs = z.output<typeof chatLogprobsSchema>;

export const CompletionResponseSchema = z.object({
  id: z.string(),
  object: z.literal('text_completion'),
  created: z.number().int(),
  model: z.string(),
  choices: z.array(
    z.object({
      index: z.number().int(),
      text: z.string(),
      logprobs: completionLogprobsSchema.nullable(),
      finish_reason: finishReason,
      token_sources: z.array(tokenSourceSchema).optional(),
    }),
  ),
  usage: usageSchema,
  speculative: z.array(speculativeStatsSchema).optional(),
});
export type CompletionResponse = z.output<typeof CompletionResponseSchema>;

export const ChatResponseSchema = z.object({
  id: z.string(),
  object: z.literal('chat.completion'),
  created: z.number().int(),
  model: z.string(),
  choices: z.array(
    z.object({
      index: z.number().int(),
      message: z.object({ role: z.literal('assistant'), content: z.string() }),
      logprobs: chatLogprobsSchema.nullable(),
      finish_reason: finishReason,
      token_sources: z.array(tokenSourceSchema).optional(),
    }),
  ),
  usage: usageSchema,
  speculative: z.array(speculativeStatsSchema).optional(),
});
export type ChatResponse = z.output<typeof ChatResponseSchema>;

export const ModelCardSchema = z.object({
  id: z.string(),
  object: z.literal('model'),
  created: z.number().int(),
  owned_by: z.literal('specserve'),
  max_model_len: z.number().int(),
});
export const ModelListSchema = z.object({ object: z.literal('list'), data: z.array(ModelCardSchema) });

export const DrafterListSchema = z.object({
  object: z.literal('list'),
  /** The drafter used when a request does not choose one. */
  default: z.string(),
  data: z.array(
    z.object({ name: z.string(), available: z.boolean(), reason: z.string().optional(), description: z.string() }),
  ),
});

export const TokenizeResponseSchema = z.object({
  tokens: z.array(z.number().int()),
  count: z.number().int(),
  max_model_len: z.number().int(),
});
export const DetokenizeResponseSchema = z.object({ prompt: z.string() });

export const HealthResponseSchema = z.object({
  status: z.literal('ok'),
  model: z.string(),
  provider: z.enum(['cuda', 'cpu']),
  /** Weight format of the target graph served (`--dtype`). */
  dtype: z.enum(['fp32', 'int8', 'int4']),
  layout: z.enum(['speculative', 'optimum']),
});
