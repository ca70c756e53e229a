// GET / and /playground: the playground page, and its assets under /playground/. Public like
// /health (the page asks for the API key itself and sends it with its API calls). The files are a
// fixed list read once at start, so no request path ever reaches the file system.

import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { FastifyPluginAsync } from 'fastify';

const PAGE_DIR = fileURLToPath(new URL('../playground/', import.meta.url));
const require = createRequire(import.meta.url);
/** A package's own build of a file: its main entry's folder, since the packages do not export these paths. */
const besideMain = (pkg: string, file: string) => path.join(path.dirname(require.resolve(pkg)), file);

const ASSETS: Record<string, { file: string; type: string }> = {
  'app.js': { file: path.join(PAGE_DIR, 'app.js'), type: 'text/javascript; charset=utf-8' },
  'style.css': { file: path.join(PAGE_DIR, 'style.css'), type: 'text/css; charset=utf-8' },
  'vendor/chart.umd.min.js': { file: besideMain('chart.js', 'chart.umd.min.js'), type: 'text/javascript; charset=utf-8' },
  'vendor/eventsource-parser.js': { file: besideMain('eventsource-parser', 'index.js'), type: 'text/javascript; charset=utf-8' },
};

export function playgroundRoutes(): FastifyPluginAsync {
  return async (app) => {
    const page = readFileSync(path.join(PAGE_DIR, 'index.html'));
    const assets = new Map(Object.entries(ASSETS).map(([name, { file, type }]) => [name, { body: readFileSync(file), type }]));
    const servePage = { config: { public: true } };
    for (const url of ['/', '/playground']) {
      app.get(url, servePage, async (_request, reply) => reply.type('text/html; charset=utf-8').header('cache-control', 'no-cache').send(page));
    }
    app.get<{ Params: { '*': string } }>('/playground/*', servePage, async (request, reply) => {
      const asset = assets.get(request.params['*']);
      if (!asset) return reply.callNotFound();
      return reply.type(asset.type).header('cache-control', 'no-cache').send(asset.body);
    });
  };
}
