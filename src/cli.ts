// Entry point: `npm start -- --port 9000`. Listens first so /health answers 503 while the model
// loads, then loads the engine, then marks the server ready.

import { CommanderError } from 'commander';
import closeWithGrace from 'close-with-grace';
import { Registry, collectDefaultMetrics } from 'prom-client';
import { ConfigError, loadConfig, SHUTDOWN_MARGIN_MS, toEngineOptions, type Config } from './config.ts';
import type { Engine } from './engine/types.ts';
import { buildApp } from './server/app.ts';
import { shutdownGracefully } from './server/shutdown.ts';

/** Exit code for a bad command line or configuration. */
const EXIT_CONFIG = 2;

function readConfig(): Config {
  try {
    return loadConfig(process.argv.slice(2), process.env);
  } catch (error) {
    if (error instanceof CommanderError) {
      // commander has already printed help, the version or its own error message.
      process.exit(error.exitCode === 0 ? 0 : EXIT_CONFIG);
    }
    if (error instanceof ConfigError) {
      console.error(`specserve: ${error.message}`);
      process.exit(EXIT_CONFIG);
    }
    throw error;
  }
}

const config = readConfig();
const registry = new Registry();
collectDefaultMetrics({ register: registry, prefix: 'specserve_' });

let engine: Engine | undefined;
const app = await buildApp({ getEngine: () => engine, config, registry });

closeWithGrace({ delay: config.shutdownTimeoutMs + SHUTDOWN_MARGIN_MS, logger: app.log }, async ({ signal, err }) => {
  if (err) app.log.error({ err }, 'shutting down after an uncaught error');
  else app.log.info(`${signal ?? 'shutdown'} received; draining (up to ${config.shutdownTimeoutMs} ms)`);
  await shutdownGracefully(app, engine, config.shutdownTimeoutMs);
});

await app.listen({ host: config.host, port: config.port });

try {
  // Imported only now so the listener is up (answering 503) while onnxruntime and the model load.
  const { createEngine } = await import('./engine/index.ts');
  const { engineMetricsHooks } = await import('./engine/metrics.ts');
  const log = (level: 'info' | 'warn' | 'error', msg: string) => app.log[level](msg);
  engine = await createEngine(toEngineOptions(config), engineMetricsHooks(registry, log));
} catch (error) {
  app.log.fatal({ err: error }, 'failed to load the model');
  await app.close();
  process.exit(1);
}

const address = app.server.address();
const port = typeof address === 'object' && address !== null ? address.port : config.port;
const host = config.host.includes(':') ? `[${config.host}]` : config.host;
app.log.info(`specserve ready: model=${engine.info.modelId}, provider=${engine.info.provider}, url=http://${host}:${port}`);
