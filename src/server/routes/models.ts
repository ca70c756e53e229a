// GET /v1/models, GET /v1/models/:id, GET /v1/drafters

import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import type { Engine } from '../../engine/types.ts';
import { ApiError } from '../../errors.ts';
import { requireEngine, type ServerContext } from '../context.ts';
import { DrafterListSchema, ModelCardSchema, ModelListSchema, ModelParamsSchema } from '../schemas.ts';

export function modelRoutes(ctx: ServerContext): FastifyPluginAsyncZod {
  const card = (engine: Engine) => ({
    id: engine.info.modelId,
    object: 'model' as const,
    created: ctx.startedAt,
    owned_by: 'specserve' as const,
    max_model_len: engine.info.contextLength,
  });

  return async (app) => {
    app.get('/v1/models', { schema: { response: { 200: ModelListSchema } }, config: { needsEngine: true } }, async () => ({
      object: 'list' as const,
      data: [card(requireEngine(ctx))],
    }));

    // Wildcard: model ids may contain slashes ("org/name").
    app.get(
      '/v1/models/*',
      { schema: { params: ModelParamsSchema, response: { 200: ModelCardSchema } }, config: { needsEngine: true } },
      async (request) => {
        const engine = requireEngine(ctx);
        const id = request.params['*'];
        if (id !== engine.info.modelId) {
          throw new ApiError('model_not_found', `The model '${id}' does not exist; this server serves '${engine.info.modelId}'`, 'model');
        }
        return card(engine);
      },
    );

    app.get('/v1/drafters', { schema: { response: { 200: DrafterListSchema } }, config: { needsEngine: true } }, async () => {
      const engine = requireEngine(ctx);
      return { object: 'list' as const, default: engine.info.defaultDrafter, data: engine.drafters() };
    });
  };
}
