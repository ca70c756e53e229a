// The dashboard's and the autoscalers' PromQL against a real Prometheus (Debian's package) scraping
// the real server under traffic: every query must be valid, and every query about something that
// happened must return data. Labels a Kubernetes scrape would add (namespace, pod) are added by
// relabelling, so the queries run exactly as written.
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { parseAllDocuments } from 'yaml';
import { ROOT } from '../helpers/model.ts';
import { startServer, type RunningServer } from '../helpers/server.ts';

const prometheus = spawnSync('sh', ['-c', 'command -v prometheus'], { encoding: 'utf8' }).stdout.trim();
const required = process.env.SPECSERVE_REQUIRE_PROMETHEUS === '1';
if (!prometheus && required) throw new Error('Prometheus is required here (SPECSERVE_REQUIRE_PROMETHEUS=1) and not installed');
const skip = prometheus ? undefined : 'Prometheus is not installed (apt-get install prometheus)';

/** What the pod label looks like for a Deployment's pod, so the KEDA/HPA pod patterns match. */
const POD = 'specserve-7d9f8c6b5-x2x9z';
/** Dashboard panels about events this traffic does not cause: they must be valid, may be empty. */
const MAY_BE_EMPTY = [/429 and 503/, /429 \/ 503/, /fallbacks/i];

const freePort = () =>
  new Promise<number>((resolve) => {
    const server = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });

interface Query {
  where: string;
  expr: string;
}

/** Every query in the dashboard (template variables filled in as Grafana would) and the autoscalers. */
function queries(): Query[] {
  const out: Query[] = [];
  const dashboard = JSON.parse(readFileSync(path.join(ROOT, 'deploy', 'grafana', 'specserve.json'), 'utf8'));
  const fill = (expr: string) =>
    expr
      .replaceAll('$namespace', 'specserve')
      .replaceAll('$pod', '.*')
      .replaceAll('$__rate_interval', '10s')
      .replaceAll('$__range', '1m');
  for (const panel of dashboard.panels ?? []) {
    for (const target of panel.targets ?? []) if (target.expr) out.push({ where: `dashboard: ${panel.title}`, expr: fill(target.expr) });
  }
  const keda = parseAllDocuments(readFileSync(path.join(ROOT, 'deploy', 'k8s', 'autoscaling', 'keda', 'scaledobject.yaml'), 'utf8')).map((d) => d.toJS());
  for (const doc of keda) for (const trigger of doc.spec?.triggers ?? []) out.push({ where: `KEDA trigger ${trigger.name}`, expr: trigger.metadata.query });
  return out;
}

async function promQuery(base: string, expr: string): Promise<{ status: string; error?: string; data?: { result: unknown[] } }> {
  const res = await fetch(`${base}/api/v1/query?query=${encodeURIComponent(expr)}`);
  return res.json();
}

describe('PromQL in deploy/ against Prometheus and the real server', { skip }, () => {
  let server: RunningServer;
  let prom: ChildProcess;
  let promUrl: string;
  let dir: string;

  before(async () => {
    server = await startServer(['--default-drafter', 'prompt-lookup']);
    const port = await freePort();
    promUrl = `http://127.0.0.1:${port}`;
    dir = mkdtempSync(path.join(os.tmpdir(), 'prometheus-'));
    const target = new URL(server.url).host;
    writeFileSync(
      path.join(dir, 'prometheus.yml'),
      `global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: specserve\n    static_configs:\n      - targets: ['${target}']\n        labels:\n          namespace: specserve\n          pod: ${POD}\n`,
    );
    prom = spawn(prometheus, [`--config.file=${path.join(dir, 'prometheus.yml')}`, `--storage.tsdb.path=${path.join(dir, 'data')}`, `--web.listen-address=127.0.0.1:${port}`, '--log.level=warn'], { stdio: 'ignore' });
    for (let i = 0; i < 100; i++) {
      const up = await promQuery(promUrl, 'up{job="specserve"}').catch(() => undefined);
      if ((up?.data?.result.length ?? 0) > 0) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    // traffic for a few scrapes: streamed (TTFT, inter-token latency) with speculation, a queue
    const until = performance.now() + 5_000;
    const client = async () => {
      while (performance.now() < until) {
        const res = await fetch(`${server.url}/v1/completions`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ model: 'specserve-tiny', prompt: 'The socket module provides access to the socket interface. The socket module', max_tokens: 64, temperature: 0, stream: true }),
        });
        await res.text();
      }
    };
    await Promise.all(Array.from({ length: 6 }, client));
    await new Promise((r) => setTimeout(r, 2_500)); // two more scrapes after the last request
  });

  after(async () => {
    prom?.kill('SIGTERM');
    await server?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test('every query is valid PromQL and returns data for what happened', async () => {
    const all = queries();
    assert.ok(all.length >= 20, `only ${all.length} queries found`);
    const empty: string[] = [];
    for (const { where, expr } of all) {
      const result = await promQuery(promUrl, expr);
      assert.equal(result.status, 'success', `${where}: ${result.error}\n${expr}`);
      if (result.data!.result.length === 0 && !MAY_BE_EMPTY.some((re) => re.test(where))) empty.push(`${where}: ${expr}`);
    }
    assert.deepEqual(empty, [], 'queries that returned nothing after traffic');
  });
});
