// POST /v1/chat/completions

import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import type { ChatMessage } from '../../engine/types.ts';
import { requireEngine, type ServerContext } from '../context.ts';
import { chatLogprobs, eventSources, responseId, speculativeField, tokenSourcesWire, unixSeconds, usageOf } from '../format.ts';
import { collectChoices, streamChoices, withRequestAbort, type StreamFormat } from '../generate.ts';
import { ChatRequestSchema, ChatResponseSchema, type ChatRequestMessage, type ChatResponse } from '../schemas.ts';
import { baseRequest, checkModel, expandChoices, outputOptions } from '../text-request.ts';

/** Text parts are joined with newlines, as vLLM does. */
export function toChatMessages(messages: readonly ChatRequestMessage[]): ChatMessage[] {
  return messages.map((message) => ({
    role: message.role,
    content: typeof message.content === 'string' ? message.content : message.content.map((part) => part.text).join('\n'),
  }));
}

export function chatRoutes(ctx: ServerContext): FastifyPluginAsyncZod {
  return async (app) => {
    app.post(
      '/v1/chat/completions',
      {
        schema: { body: ChatRequestSchema, response: { 200: ChatResponseSchema } },
        config: { needsEngine: true },
      },
      async (request, reply) => {
        const startedAt = performance.now() - reply.elapsedTime;
        const engine = requireEngine(ctx);
        const body = request.body;
        checkModel(engine, body.model);
        const prompt = engine.applyChatTemplate(toChatMessages(body.messages));
        // max_completion_tokens supersedes the deprecated max_tokens. With neither, whatever the
        // context leaves after the prompt (as vLLM does); the engine refuses prompt + max_tokens > context.
        const maxTokensParam = body.max_completion_tokens != null ? 'max_completion_tokens' : 'max_tokens';
        const requested = body.max_completion_tokens ?? body.max_tokens;
        const base = baseRequest(body, engine, {
          maxTokens: requested ?? Math.max(1, engine.info.contextLength - engine.tokenize(prompt).length),
          maxTokensParam,
          logprobs: body.logprobs === true ? (body.top_logprobs ?? 0) : null,
          echo: false,
        });
        const wantLogprobs = base.logprobs !== null;
        const output = outputOptions(body, ctx.config.streamPacing);
        const id = responseId('chatcmpl');
        const created = unixSeconds();
        const model = engine.info.modelId;
        const timer = ctx.metrics.startGeneration(startedAt);

        if (body.stream) {
          const includeUsage = output.includeUsage;
          const chunk = (index: number, delta: object, logprobs: unknown, finishReason: string | null, extra: object = {}) => ({
            id,
            object: 'chat.completion.chunk',
            created,
            model,
            choices: [{ index, delta, logprobs, finish_reason: finishReason, ...extra }],
            ...(includeUsage ? { usage: null } : {}),
          });
          const format: StreamFormat = {
            // The SDK's stream helper requires the role first.
            opening: (index) => chunk(index, { role: 'assistant', content: '' }, null, null),
            text: (index, event) =>
              event.text === '' && !event.logprobs?.length
                ? undefined
                : chunk(
                    index,
                    { content: event.text },
                    wantLogprobs ? chatLogprobs(event.logprobs ?? []) : null,
                    null,
                    output.tokenSources ? { token_sources: tokenSourcesWire(eventSources(event)) } : {},
                  ),
            finish: (index, done) => ({ ...chunk(index, {}, null, done.finishReason), ...speculativeField([{ index, done }]) }),
            usage: (usage) => ({ id, object: 'chat.completion.chunk', created, model, choices: [], usage }),
          };
          await withRequestAbort(ctx, reply, (abort) =>
            streamChoices({
              engine,
              choices: expandChoices(base, [prompt], body.n ?? 1, abort.signal),
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
          collectChoices(engine, expandChoices(base, [prompt], body.n ?? 1, abort.signal), abort, timer),
        );
        if (outputs === undefined) return reply;
        const response: ChatResponse = {
          id,
          object: 'chat.completion',
          created,
          model,
          choices: outputs.map((choice) => ({
            index: choice.index,
            message: { role: 'assistant', content: choice.text },
            logprobs: wantLogprobs ? chatLogprobs(choice.logprobs) : null,
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
