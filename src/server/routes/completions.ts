// POST /v1/completions

import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { requireEngine, type ServerContext } from '../context.ts';
import { completionLogprobs, eventSources, responseId, speculativeField, tokenSourcesWire, unixSeconds, usageOf } from '../format.ts';
import { collectChoices, streamChoices, withRequestAbort, type StreamFormat } from '../generate.ts';
import { CompletionRequestSchema, CompletionResponseSchema, type CompletionResponse } from '../schemas.ts';
import {
  DEFAULT_COMPLETION_MAX_TOKENS,
  baseRequest,
  checkModel,
  checkTokenIds,
  expandChoices,
  outputOptions,
  promptsOf,
} from '../text-request.ts';

export function completionsRoutes(ctx: ServerContext): FastifyPluginAsyncZod {
  return async (app) => {
    app.post(
      '/v1/completions',
      {
        schema: { body: CompletionRequestSchema, response: { 200: CompletionResponseSchema } },
        config: { needsEngine: true },
      },
      async (request, reply) => {
        const startedAt = performance.now() - reply.elapsedTime;
        const engine = requireEngine(ctx);
        const body = request.body;
        checkModel(engine, body.model);
        const prompts = promptsOf(body.prompt);
        const singleIdPrompt = typeof body.prompt !== 'string' && typeof body.prompt[0] === 'number';
        prompts.forEach((prompt, i) => {
          if (Array.isArray(prompt)) checkTokenIds(engine, prompt, singleIdPrompt ? 'prompt' : `prompt.${i}`);
        });
        const base = baseRequest(body, engine, {
          maxTokens: body.max_tokens ?? DEFAULT_COMPLETION_MAX_TOKENS,
          maxTokensParam: 'max_tokens',
          logprobs: body.logprobs ?? null,
          echo: body.echo ?? false,
        });
        const wantLogprobs = base.logprobs !== null;
        const output = outputOptions(body, ctx.config.streamPacing);
        const id = responseId('cmpl');
        const created = unixSeconds();
        const model = engine.info.modelId;
        const timer = ctx.metrics.startGeneration(startedAt);

        if (body.stream) {
          const includeUsage = output.includeUsage;
          const chunk = (choices: unknown[]) => ({
            id,
            object: 'text_completion',
            created,
            model,
            choices,
            // OpenAI sends usage: null on every chunk but the usage chunk when usage was asked for.
            ...(includeUsage ? { usage: null } : {}),
          });
          const format: StreamFormat = {
            opening: () => undefined,
            text: (index, event) =>
              event.text === '' && !event.logprobs?.length
                ? undefined
                : chunk([
                    {
                      index,
                      text: event.text,
                      logprobs: wantLogprobs ? completionLogprobs(event.logprobs ?? []) : null,
                      finish_reason: null,
                      ...(output.tokenSources ? { token_sources: tokenSourcesWire(eventSources(event)) } : {}),
                    },
                  ]),
            finish: (index, done) => ({
              ...chunk([{ index, text: '', logprobs: null, finish_reason: done.finishReason }]),
              ...speculativeField([{ index, done }]),
            }),
            usage: (usage) => ({ id, object: 'text_completion', created, model, choices: [], usage }),
          };
          await withRequestAbort(ctx, reply, (abort) =>
            streamChoices({
              engine,
              choices: expandChoices(base, prompts, body.n ?? 1, abort.signal),
              abort,
              timer,
              reply,
              format,
              includeUsage,
              pacing: output.pacing,
            }),
          );
          return reply;
        }

        const outputs = await withRequestAbort(ctx, reply, (abort) =>
          collectChoices(engine, expandChoices(base, prompts, body.n ?? 1, abort.signal), abort, timer),
        );
        if (outputs === undefined) return reply;
        const response: CompletionResponse = {
          id,
          object: 'text_completion',
          created,
          model,
          choices: outputs.map((choice) => ({
            index: choice.index,
            text: choice.text,
            logprobs: wantLogprobs ? completionLogprobs(choice.logprobs) : null,
            finish_reason: choice.done.finishReason,
            ...(output.tokenSources ? { token_sources: tokenSourcesWire(choice.sources) } : {}),
          })),
          usage: usageOf(outputs),
          ...speculativeField(outputs),
        };
        return response;
      },
    );
  };
}
