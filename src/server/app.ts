// Assembles the fastify app: zod validation, error mapping, request ids, hooks (pressure, metrics,
// auth, lifecycle) and the routes. The engine arrives later through getEngine(), so the server can
// listen (and answer /health with 503) while the model loads.

import { randomUUID } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import underPressure from '@fastify/under-pressure';
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import { serializerCompiler, type ZodTypeProvider } from 'fastify-type-provider-zod';
import { Registry } from 'prom-client';
import type { ServerConfig } from '../config.ts';
import type { Engine } from '../engine/types.ts';
import { ApiError } from '../errors.ts';
import { createApiKeyCheck } from './auth.ts';
import { UNAVAILABLE_RETRY_AFTER_S, requireEngine, type ServerContext } from './context.ts';
import { registerErrorHandlers } from './error-handler.ts';
import { createMetrics, type Metrics } from './metrics.ts';
import { chatRoutes } from './routes/chat.ts';
import { completionsRoutes } from './routes/completions.ts';
import { modelRoutes } from './routes/models.ts';
import { playgroundRoutes } from './routes/playground.ts';
import { opsRoutes } from './routes/ops.ts';
import { tokenizeRoutes } from './routes/tokenize.ts';
import { validatorCompiler } from './validation.ts';

/** Retry-After for 503 `overloaded`: the event-loop delay is re-sampled every second. */
const OVERLOADED_RETRY_AFTER_S = 2;

declare module 'fastify' {
  interface FastifyContextConfig {
    /** No API key needed (health checks, scrapes). */
    public?: boolean;
    /** 503 `model_loading` before the body is even read while the engine is not ready. */
    needsEngine?: boolean;
    /** Still served while draining for shutdown. */
    duringShutdown?: boolean;
  }
  interface FastifyInstance {
    specserve: SpecserveHandle;
  }
}

/** What the CLI (shutdown) and the engine (metrics) need from a built app. */
export interface SpecserveHandle {
  /** `metrics.registry` is the prom-client Registry served at /metrics; the engine may register into it. */
  readonly metrics: Metrics;
  /** From now on new requests get 503 `shutting_down`; in-flight ones continue. */
  beginShutdown(): void;
  /** Aborts every running generation (streams end with an error event carrying `reason`). */
  abortInFlight(reason: ApiError): void;
  /** Generation requests running (their engine calls can be aborted). */
  readonly inFlightCount: number;
  /** HTTP requests of any kind between arrival and the end of their response. */
  readonly activeRequests: number;
}

export interface BuildAppOptions {
  getEngine: () => Engine | undefined;
  config: ServerConfig;
  /** Defaults to a fresh Registry. */
  registry?: Registry;
}

const REQUEST_ID = /^[\w.:@/+=-]{1,128}$/;

/** Honours a sane client/proxy `x-request-id` so logs line up across hops; otherwise a UUID. */
function requestId(req: IncomingMessage): string {
  const given = req.headers['x-request-id'];
  return typeof given === 'string' && REQUEST_ID.test(given) ? given : randomUUID();
}

// under-pressure throws an instance of this; being an ApiError, the error handler needs no special case.
class OverloadedError extends ApiError {
  constructor() {
    super('overloaded', undefined, null, OVERLOADED_RETRY_AFTER_S);
  }
}

export async function buildApp(opts: BuildAppOptions): Promise<FastifyInstance> {
  const { config, getEngine } = opts;
  const app = Fastify({
    logger: { level: config.logLevel },
    bodyLimit: config.bodyLimit,
    genReqId: requestId,
    // Draining is answered by our own hook in the error-table format, not fastify's bare 503.
    return503OnClosing: false,
  }).withTypeProvider<ZodTypeProvider>();

  let activeRequests = 0;
  const ctx: ServerContext = {
    config,
    metrics: createMetrics(opts.registry ?? new Registry(), () => getEngine()?.load()),
    startedAt: Math.floor(Date.now() / 1000),
    getEngine,
    inFlight: new Set(),
    draining: false,
  };
  app.decorate('specserve', {
    metrics: ctx.metrics,
    beginShutdown: () => {
      ctx.draining = true;
    },
    abortInFlight: (reason: ApiError) => {
      for (const controller of ctx.inFlight) controller.abort(reason);
    },
    get inFlightCount() {
      return ctx.inFlight.size;
    },
    get activeRequests() {
      return activeRequests;
    },
  } satisfies SpecserveHandle);

  app.setValidatorCompiler(validatorCompiler);
  app.setSerializerCompiler(serializerCompiler);
  // Only JSON is spoken; without this a text/plain body would reach validation and get a vaguer 400.
  app.removeContentTypeParser('text/plain');
  registerErrorHandlers(app, config.bodyLimit);

  // Hooks run in this order. Bookkeeping first, so even shed or refused requests are counted.
  app.addHook('onRequest', async (request: FastifyRequest, reply: FastifyReply) => {
    reply.header('x-request-id', request.id);
    activeRequests++;
    // 'close' fires for every response, streamed (hijacked) ones included, and when the client leaves early.
    reply.raw.once('close', () => {
      activeRequests--;
      const status = reply.raw.writableEnded ? reply.raw.statusCode : 499;
      ctx.metrics.observeRequest(request.routeOptions.url ?? 'unmatched', status, reply.elapsedTime / 1000);
    });
  });
  // Then shed load before doing any work for the request.
  await app.register(underPressure, {
    maxEventLoopDelay: config.maxEventLoopDelayMs,
    retryAfter: OVERLOADED_RETRY_AFTER_S,
    customError: OverloadedError,
  });

  if (config.apiKey !== undefined) app.addHook('onRequest', createApiKeyCheck(config.apiKey));
  app.addHook('onRequest', async (request: FastifyRequest) => {
    const routeConfig = request.routeOptions.config;
    if (ctx.draining && routeConfig?.duringShutdown !== true) {
      throw new ApiError('shutting_down', undefined, null, UNAVAILABLE_RETRY_AFTER_S);
    }
    if (routeConfig?.needsEngine === true) requireEngine(ctx);
  });

  await app.register(opsRoutes(ctx));
  await app.register(modelRoutes(ctx));
  await app.register(tokenizeRoutes(ctx));
  await app.register(completionsRoutes(ctx));
  await app.register(chatRoutes(ctx));
  await app.register(playgroundRoutes());
  return app;
}
