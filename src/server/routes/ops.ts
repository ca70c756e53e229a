// GET /health, GET /metrics: public (no API key), for load balancers and Prometheus.

import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { requireEngine, type ServerContext } from '../context.ts';
import { HealthResponseSchema } from '../schemas.ts';

export function opsRoutes(ctx: ServerContext): FastifyPluginAsyncZod {
  return async (app) => {
    // 503 model_loading until the engine is ready, 503 shutting_down while draining (app.ts hook).
    app.get('/health', { schema: { response: { 200: HealthResponseSchema } }, config: { public: true } }, async () => {
      const { info } = requireEngine(ctx);
      return { status: 'ok' as const, model: info.modelId, provider: info.provider, dtype: info.dtype, layout: info.layout };
    });

    app.get(
      '/metrics',
      {
        // Scrapes must keep working while draining or overloaded: that is when they matter.
        config: { public: true, duringShutdown: true, pressureHandler: () => undefined },
      },
      async (_request, reply) => {
        reply.type(ctx.metrics.registry.contentType);
        return ctx.metrics.registry.metrics();
      },
    );
  };
}
