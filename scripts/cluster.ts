// npm run cluster -- --replicas N --port P [-- server flags...]
//
// Several specserve replicas on one host behind HAProxy: replicas on 127.0.0.1:P+1 … P+N, the
// balancer on P (least connections, active health checks on /health, timeouts long enough for SSE
// streams, retries on another replica when one refuses or is draining). A replica that dies is
// restarted. Ctrl-C / SIGTERM drains the replicas (each finishes its in-flight requests, up to its
// --shutdown-timeout-ms), then stops HAProxy. It is the way to use a many-core host with several
// engines, and a small model of the Kubernetes setup in deploy/k8s (readiness = HAProxy's health
// check, preStop + drain = the replica's own SIGTERM handling).
//
// Its own status lines start with "cluster:" (replica ready/exited/restarting, HAProxy marking a
// replica up or down, ready), so scripts and tests can follow it.

import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { Command, InvalidArgumentError } from 'commander';
import { aptInstall } from './apt.ts';
import { integerOption } from './cli-options.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const HOST = '127.0.0.1';
/** Restart delays after a replica dies: doubled while it keeps dying young, reset once it lived. */
const RESTART_MIN_MS = 1_000;
const RESTART_MAX_MS = 30_000;
const LIVED_MS = 30_000;

const positive = (name: string, min = 1, max = 65535) => integerOption(name, min, max);

const program = new Command()
  .name('cluster')
  .description('N specserve replicas behind HAProxy on one host; server flags after "--" go to every replica')
  .option('--replicas <n>', 'replicas to run', positive('--replicas', 1, 64), 2)
  .option('--port <n>', 'balancer port; replicas use the next N ports', positive('--port', 1, 65000), 8000)
  .option('--host <addr>', 'address the balancer listens on (replicas always listen on 127.0.0.1)', HOST)
  .option('--threads <n>', 'onnxruntime threads per replica (default: the cores but one, shared out, at least 1)', positive('--threads', 1, 1024))
  .option('--health-interval-ms <n>', "HAProxy's health check interval: how fast a dead or draining replica leaves the rotation", positive('--health-interval-ms', 100, 60_000), 500)
  .option('--haproxy <path>', 'HAProxy binary (installed with apt-get when missing and allowed)', 'haproxy')
  .argument('[server-flags...]', 'flags for every replica (after "--"), e.g. -- --api-key KEY --default-drafter prompt-lookup')
  .showHelpAfterError();

function haproxyConfig(o: { host: string; port: number; replicas: number; healthIntervalMs: number; socket: string }): string {
  const servers = Array.from({ length: o.replicas }, (_, i) => `  server r${i + 1} ${HOST}:${o.port + i + 1}`).join('\n');
  return `# written by scripts/cluster.ts
global
  maxconn 4096
  # read by the cluster command: it calls the cluster ready once HAProxy sees every replica up
  stats socket ${o.socket} mode 600 level user

defaults
  mode http
  timeout connect 2s
  # streams: a long answer may take minutes; the replicas send an SSE comment every 15 s
  timeout client 10m
  timeout server 10m
  timeout http-request 60s
  timeout http-keep-alive 10s
  timeout queue 30s
  # tokens are small writes that must leave at once: without this HAProxy merges them, which
  # measured ~8 ms more to the first token than talking to a replica directly
  option http-no-delay
  # a request that reached a replica that was dead, or draining (503), is sent to another one;
  # retrying needs the request buffered, which small API requests are
  option http-buffer-request
  retries 3
  option redispatch 1
  retry-on conn-failure empty-response 503

frontend specserve
  bind ${o.host}:${o.port}
  default_backend replicas

backend replicas
  balance leastconn
  option httpchk
  http-check send meth GET uri /health
  http-check expect status 200
  # /health answers 503 from the moment a replica starts draining: one failed check takes it out
  default-server check inter ${o.healthIntervalMs} fastinter ${o.healthIntervalMs} downinter ${o.healthIntervalMs} fall 1 rise 1
  http-response set-header x-specserve-replica %[srv_name]
${servers}
`;
}

const log = (message: string) => console.log(`cluster: ${message}`);

/** The HAProxy binary, installing Debian's package when it is missing and we may. */
function findHaproxy(requested: string): string {
  const which = (bin: string) => spawnSync('sh', ['-c', `command -v ${bin} || ([ -x /usr/sbin/${bin} ] && echo /usr/sbin/${bin})`], { encoding: 'utf8' }).stdout.trim();
  const found = requested.includes('/') ? requested : which(requested);
  if (found) return found;
  aptInstall(['haproxy'], { why: 'HAProxy is not installed', otherwise: 'or pass --haproxy PATH', log });
  const installed = which('haproxy');
  if (!installed) throw new Error('haproxy not found after installing it');
  return installed;
}

async function healthy(url: string): Promise<boolean> {
  try {
    return (await fetch(`${url}/health`, { signal: AbortSignal.timeout(1_000) })).status === 200;
  } catch {
    return false;
  }
}

/** Each replica's state as HAProxy sees it (UP, DOWN, …), from its stats socket's CSV. */
function serverStates(socket: string): Promise<Map<string, string>> {
  return new Promise((resolve) => {
    let csv = '';
    const conn = net.connect(socket, () => conn.end('show stat\n'));
    conn.setEncoding('utf8');
    conn.on('data', (chunk: string) => (csv += chunk));
    conn.on('error', () => resolve(new Map()));
    conn.on('close', () => {
      const [header, ...rows] = csv.trim().split('\n');
      const cols = (header ?? '').replace(/^# /, '').split(',');
      const [sv, status] = [cols.indexOf('svname'), cols.indexOf('status')];
      resolve(new Map(rows.map((row) => row.split(',')).filter((c) => /^r\d+$/.test(c[sv] ?? '')).map((c) => [c[sv], c[status]])));
    });
  });
}

class Replica {
  child: ChildProcess | undefined;
  startedAt = 0;
  restartDelay = RESTART_MIN_MS;
  everReady = false;
  constructor(
    readonly name: string,
    readonly port: number,
    readonly args: string[],
  ) {}

  get url(): string {
    return `http://${HOST}:${this.port}`;
  }
}

async function main(): Promise<void> {
  program.parse();
  const o = program.opts<{ replicas: number; port: number; host: string; threads?: number; healthIntervalMs: number; haproxy: string }>();
  const serverFlags = program.args;
  if (serverFlags.some((f) => f === '--port' || f === '--host' || f.startsWith('--port=') || f.startsWith('--host='))) {
    throw new InvalidArgumentError('--port and --host are the cluster\'s to choose: give --port before "--"');
  }
  const haproxyBin = findHaproxy(o.haproxy);
  // one core stays for the HTTP threads and HAProxy, as the server's own --threads 0 leaves one
  const threads = o.threads ?? Math.max(1, Math.floor((os.availableParallelism() - 1) / o.replicas));
  const base = ['--import', 'tsx', path.join(ROOT, 'src', 'cli.ts'), '--host', HOST, '--threads', String(threads)];
  const quiet = serverFlags.some((f) => f.startsWith('--log-level')) ? [] : ['--log-level', 'warn'];
  const replicas = Array.from({ length: o.replicas }, (_, i) => new Replica(`r${i + 1}`, o.port + i + 1, [...base, '--port', String(o.port + i + 1), ...quiet, ...serverFlags]));

  const dir = mkdtempSync(path.join(os.tmpdir(), 'specserve-cluster-'));
  const cfg = path.join(dir, 'haproxy.cfg');
  const socket = path.join(dir, 'haproxy.sock');
  writeFileSync(cfg, haproxyConfig({ ...o, socket }));
  const check = spawnSync(haproxyBin, ['-c', '-q', '-f', cfg], { encoding: 'utf8' });
  if (check.status !== 0) throw new Error(`HAProxy rejected its configuration (${cfg}):\n${check.stderr}${check.stdout}`);

  let stopping = false;
  const start = (r: Replica) => {
    r.startedAt = Date.now();
    const child = spawn(process.execPath, r.args, { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    r.child = child;
    const relay = (stream: NodeJS.ReadableStream) => createInterface({ input: stream }).on('line', (line) => console.log(`[${r.name}] ${line}`));
    relay(child.stdout!);
    relay(child.stderr!);
    log(`replica ${r.name} starting (pid ${child.pid}) on ${r.url}`);
    void (async () => {
      while (r.child === child && child.exitCode === null && !(await healthy(r.url))) await new Promise((res) => setTimeout(res, 200));
      if (r.child === child && child.exitCode === null) {
        r.everReady = true;
        log(`replica ${r.name} ready (pid ${child.pid}) on ${r.url}`);
      }
    })();
    child.once('exit', (code, signal) => {
      if (stopping) return log(`replica ${r.name} stopped (${signal ?? `code ${code}`})`);
      if (!r.everReady) {
        // a bad flag or model folder: restarting would only repeat it
        log(`replica ${r.name} could not start (${signal ?? `code ${code}`}); see its output above`);
        return void shutdown(1);
      }
      const lived = Date.now() - r.startedAt;
      r.restartDelay = lived > LIVED_MS ? RESTART_MIN_MS : Math.min(RESTART_MAX_MS, r.restartDelay * (lived < RESTART_MIN_MS * 5 ? 2 : 1));
      log(`replica ${r.name} exited (${signal ?? `code ${code}`}); restarting in ${r.restartDelay} ms`);
      setTimeout(() => !stopping && start(r), r.restartDelay).unref();
    });
  };
  for (const r of replicas) start(r);

  const haproxy = spawn(haproxyBin, ['-db', '-f', cfg], { stdio: ['ignore', 'pipe', 'pipe'] });
  for (const stream of [haproxy.stdout!, haproxy.stderr!]) {
    createInterface({ input: stream }).on('line', (line) => {
      // state changes are what an operator needs; HAProxy's own start-up chatter is not
      const change = /Server replicas\/(r\d+) is (UP|DOWN)\b.*/.exec(line);
      if (change) log(`haproxy: ${change[0]}`);
      else if (/\[(ALERT|EMERG)\]/.test(line)) log(`haproxy: ${line}`);
    });
  }
  haproxy.once('exit', (code, signal) => {
    if (stopping) return;
    log(`HAProxy exited unexpectedly (${signal ?? `code ${code}`}); stopping the replicas`);
    void shutdown(1);
  });

  const shutdown = async (exitCode: number) => {
    if (stopping) return;
    stopping = true;
    log('stopping: replicas drain their in-flight requests, then HAProxy stops');
    const exits = replicas.map((r) => (r.child && r.child.exitCode === null ? new Promise((res) => r.child!.once('exit', res)) : Promise.resolve()));
    for (const r of replicas) r.child?.kill('SIGTERM');
    await Promise.all(exits);
    if (haproxy.exitCode === null) {
      const gone = new Promise((res) => haproxy.once('exit', res));
      haproxy.kill('SIGTERM');
      await gone;
    }
    rmSync(dir, { recursive: true, force: true });
    log('stopped');
    process.exit(exitCode);
  };
  let signals = 0;
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.on(signal, () => {
      if (++signals > 1) {
        // a second Ctrl-C: no more waiting
        for (const r of replicas) r.child?.kill('SIGKILL');
        haproxy.kill('SIGKILL');
        process.exit(130);
      }
      void shutdown(0);
    });
  }

  const balancer = `http://${o.host === '0.0.0.0' ? HOST : o.host}:${o.port}`;
  while (!stopping) {
    const states = await serverStates(socket);
    if (replicas.every((r) => states.get(r.name) === 'UP') && (await healthy(balancer))) break;
    await new Promise((res) => setTimeout(res, 250));
  }
  if (!stopping) log(`ready: ${balancer} balances ${o.replicas} replicas (${threads} thread${threads > 1 ? 's' : ''} each) on ports ${o.port + 1}-${o.port + o.replicas}`);
}

main().catch((err) => {
  console.error(`cluster: ${(err as Error).message}`);
  process.exit(1);
});
