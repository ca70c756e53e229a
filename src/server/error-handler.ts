// Every error response goes through here, shaped by the one table in src/errors.ts. Fastify's own
// errors (bad JSON, body limit, content type) are mapped onto table codes; anything unexpected is a
// 500 `internal_error` whose details go to the log, never to the client.

import type { IncomingMessage } from 'node:http';
import type { FastifyError, FastifyInstance, FastifyReply } from 'fastify';
import { ApiError } from '../errors.ts';

/** Seconds sent in Retry-After for a 429/503 whose ApiError does not say. */
export const DEFAULT_RETRY_AFTER_S = 1;

/** The most of an oversized body read (and thrown away) so its sender can read the 413. */
export const OVERSIZED_DRAIN_BYTES = 64 * 1024 * 1024;
const OVERSIZED_DRAIN_MS = 15_000;

/**
 * Reads and discards the rest of a request body. A 413 sent while the client is still uploading,
 * on a connection that then closes, reaches the client as a reset mid-upload (EPIPE), not as the
 * 413; once the upload is complete the client reads the answer. Bodies beyond the cap are cut off.
 */
function discardBody(raw: IncomingMessage, capBytes: number, timeoutMs: number): Promise<void> {
  if (raw.complete || raw.destroyed) return Promise.resolve();
  return new Promise((resolve) => {
    let seen = 0;
    const finish = () => {
      clearTimeout(timer);
      raw.off('data', onData);
      raw.off('end', finish);
      raw.off('close', finish);
      raw.off('error', finish);
      resolve();
    };
    const onData = (chunk: Buffer) => {
      seen += chunk.length;
      if (seen > capBytes) finish();
    };
    const timer = setTimeout(finish, timeoutMs);
    raw.on('data', onData);
    raw.once('end', finish);
    raw.once('close', finish);
    raw.once('error', finish);
    raw.resume();
  });
}

export function sendError(reply: FastifyReply, error: ApiError): FastifyReply {
  reply.code(error.status);
  if (error.status === 429 || error.status === 503) {
    reply.header('retry-after', String(error.retryAfter ?? DEFAULT_RETRY_AFTER_S));
  }
  return reply.send(error.toJSON());
}

export function toApiError(error: unknown, bodyLimit: number): ApiError {
  if (error instanceof ApiError) return error;
  const fastifyError = error as Partial<FastifyError> | undefined;
  switch (fastifyError?.code) {
    case 'FST_ERR_CTP_INVALID_JSON_BODY':
      return new ApiError('invalid_json');
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
      return new ApiError('invalid_json', 'Request body is empty but Content-Type is application/json');
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return new ApiError('body_too_large', `Request body is larger than the limit of ${bodyLimit} bytes`);
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return new ApiError('unsupported_media_type', 'Unsupported Content-Type; send application/json');
  }
  // Other client errors fastify detects (bad Content-Length, malformed URL): their messages carry no internals.
  const status = fastifyError?.statusCode;
  if (typeof status === 'number' && status >= 400 && status < 500 && typeof fastifyError?.message === 'string') {
    return new ApiError('invalid_request', fastifyError.message);
  }
  return new ApiError('internal_error');
}

export function registerErrorHandlers(app: FastifyInstance, bodyLimit: number): void {
  app.setErrorHandler(async (error, request, reply) => {
    const apiError = toApiError(error, bodyLimit);
    // real faults get the stack; expected refusals (loading, draining, overloaded, 4xx) one line
    if (apiError.status === 500) request.log.error({ err: error }, `request failed: ${apiError.code}`);
    else if (apiError.status >= 500) request.log.warn({ code: apiError.code }, apiError.message);
    else request.log.info({ code: apiError.code, param: apiError.param }, apiError.message);
    if (apiError.code === 'body_too_large') await discardBody(request.raw, OVERSIZED_DRAIN_BYTES, OVERSIZED_DRAIN_MS);
    return sendError(reply, apiError);
  });

  app.setNotFoundHandler((request, reply) => {
    const url = request.url.length > 200 ? `${request.url.slice(0, 200)}…` : request.url;
    return sendError(reply, new ApiError('not_found', `No route for ${request.method} ${url}`));
  });
}
