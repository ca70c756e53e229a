// POST /tokenize, POST /detokenize (vLLM-style extras)

import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { requireEngine, type ServerContext } from '../context.ts';
import { DetokenizeRequestSchema, DetokenizeResponseSchema, TokenizeRequestSchema, TokenizeResponseSchema } from '../schemas.ts';
import { checkModel, checkTokenIds } from '../text-request.ts';
import { toChatMessages } from './chat.ts';

export function tokenizeRoutes(ctx: ServerContext): FastifyPluginAsyncZod {
  return async (app) => {
    app.post(
      '/tokenize',
      { schema: { body: TokenizeRequestSchema, response: { 200: TokenizeResponseSchema } }, config: { needsEngine: true } },
      async (request) => {
        const engine = requireEngine(ctx);
        const body = request.body;
        checkModel(engine, body.model);
        // messages are rendered exactly as /v1/chat/completions renders them, so counts match.
        const text = body.messages ? engine.applyChatTemplate(toChatMessages(body.messages)) : (body.prompt ?? '');
        const tokens = engine.tokenize(text);
        return { tokens, count: tokens.length, max_model_len: engine.info.contextLength };
      },
    );

    app.post(
      '/detokenize',
      { schema: { body: DetokenizeRequestSchema, response: { 200: DetokenizeResponseSchema } }, config: { needsEngine: true } },
      async (request) => {
        const engine = requireEngine(ctx);
        checkModel(engine, request.body.model);
        checkTokenIds(engine, request.body.tokens, 'tokens');
        return { prompt: engine.detokenize(request.body.tokens) };
      },
    );
  };
}
