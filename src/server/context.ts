// State the routes share, built once per app in app.ts.

import type { Engine } from '../engine/types.ts';
import { ApiError } from '../errors.ts';
import type { ServerConfig } from '../config.ts';
import type { Metrics } from './metrics.ts';

/** Retry-After while the model loads or the server drains: long enough not to hammer, short enough to notice readiness. */
export const UNAVAILABLE_RETRY_AFTER_S = 5;

export interface ServerContext {
  readonly config: ServerConfig;
  readonly metrics: Metrics;
  /** Unix seconds the server started; the model card's `created`. */
  readonly startedAt: number;
  readonly getEngine: () => Engine | undefined;
  /** Generation requests in progress, so shutdown can cut them off when its time is up. */
  readonly inFlight: Set<AbortController>;
  draining: boolean;
}

export function requireEngine(ctx: ServerContext): Engine {
  const engine = ctx.getEngine();
  if (!engine) throw new ApiError('model_loading', undefined, null, UNAVAILABLE_RETRY_AFTER_S);
  return engine;
}
