// Graceful shutdown: refuse new work, let in-flight requests finish within the budget, abort what
// is left (streams end with a `shutting_down` error event), then close the engine.

import { setTimeout as sleep } from 'node:timers/promises';
import type { FastifyInstance } from 'fastify';
import type { Engine } from '../engine/types.ts';
import { ApiError } from '../errors.ts';

/** How often connections that went idle during the drain are closed. */
const IDLE_SWEEP_MS = 100;
/** After aborting, how long aborted streams get to write their error event before sockets are cut. */
const ABORT_FLUSH_MS = 1000;

export async function shutdownGracefully(app: FastifyInstance, engine: Engine | undefined, timeoutMs: number): Promise<void> {
  app.specserve.beginShutdown();
  // Stops listening and resolves once every connection has ended. Connections idle right now are
  // closed at once, but a keep-alive connection whose response finishes later, or one a client
  // opened without sending a request yet, would linger for its timeout: once no request is being
  // served, nothing is lost by closing every connection.
  const closed = app.close();
  const sweep = setInterval(() => {
    if (app.specserve.activeRequests === 0) app.server.closeAllConnections();
    else app.server.closeIdleConnections();
  }, IDLE_SWEEP_MS);
  void closed.finally(() => clearInterval(sweep));
  const timedOut = await Promise.race([closed.then(() => false), sleep(timeoutMs, true, { ref: false })]);
  if (timedOut) {
    app.log.warn(`shutdown: ${app.specserve.inFlightCount} request(s) still running after ${timeoutMs} ms; aborting them`);
    app.specserve.abortInFlight(new ApiError('shutting_down', 'The server shut down before this request finished'));
    const flushed = await Promise.race([closed.then(() => true), sleep(ABORT_FLUSH_MS, false, { ref: false })]);
    if (!flushed) app.server.closeAllConnections();
    await closed;
  }
  await engine?.close();
}
