// Shared test setup: an app around a FakeEngine, JSON posting, SSE parsing.

import type { FastifyInstance } from 'fastify';
import { createParser } from 'eventsource-parser';
import { SERVER_DEFAULTS, type ServerConfig } from '../../src/config.ts';
import type { Engine } from '../../src/engine/types.ts';
import { buildApp } from '../../src/server/app.ts';
import { FAKE_MODEL_ID, FakeEngine, type FakeEngineOptions } from './fake-engine.ts';

export const TEST_CONFIG: ServerConfig = {
  apiKey: undefined,
  bodyLimit: 1024 * 1024,
  logLevel: 'silent',
  maxEventLoopDelayMs: 0,
  streamPacing: SERVER_DEFAULTS.streamPacing,
};

export async function makeApp(
  options: { engine?: Engine | null; fake?: FakeEngineOptions; config?: Partial<ServerConfig> } = {},
): Promise<{ app: FastifyInstance; engine: FakeEngine }> {
  const engine = (options.engine === undefined ? new FakeEngine(options.fake) : options.engine) as FakeEngine;
  const app = await buildApp({ getEngine: () => engine ?? undefined, config: { ...TEST_CONFIG, ...options.config } });
  return { app, engine };
}

export async function post(app: FastifyInstance, url: string, body: unknown, headers: Record<string, string> = {}) {
  return app.inject({ method: 'POST', url, payload: body as object, headers });
}

export const completion = (extra: Record<string, unknown> = {}) => ({ model: FAKE_MODEL_ID, prompt: 'hello', ...extra });
export const chat = (extra: Record<string, unknown> = {}) => ({
  model: FAKE_MODEL_ID,
  messages: [{ role: 'user', content: 'hi' }],
  ...extra,
});

/** The `data:` payloads of an SSE body, JSON-decoded except the final "[DONE]". */
export function sseEvents(body: string): unknown[] {
  const events: unknown[] = [];
  const parser = createParser({ onEvent: (event) => events.push(event.data === '[DONE]' ? '[DONE]' : JSON.parse(event.data)) });
  parser.feed(body);
  return events;
}

export interface ErrorBody {
  error: { message: string; type: string; param: string | null; code: string };
}

/** Closes a listening app without waiting for clients' idle keep-alive connections to time out. */
export async function closeNow(app: FastifyInstance): Promise<void> {
  const closing = app.close();
  app.server.closeAllConnections();
  await closing;
}
