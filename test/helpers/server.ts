// Spawns the real server (the CLI, as `npm start` runs it) on the committed default model and a
// free port, for the end-to-end tier.
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { DEFAULT_MODEL_DIR, ROOT } from './model.ts';

export interface RunningServer {
  url: string;
  child: ChildProcess;
  logs: string[];
  exited: Promise<number | null>;
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

export async function startServer(args: string[] = [], timeoutMs = 90_000): Promise<RunningServer> {
  const child = spawn(process.execPath, ['--import', 'tsx', path.join(ROOT, 'src', 'cli.ts'), '--port', '0', '--model', DEFAULT_MODEL_DIR, '--threads', '1', ...args], {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const logs: string[] = [];
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`server not ready in ${timeoutMs} ms:\n${logs.join('')}`)), timeoutMs);
    const onData = (buf: Buffer) => {
      const text = buf.toString();
      logs.push(text);
      const m = /specserve ready: .*url=(http:\/\/[^"\s]+)/.exec(text);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]);
      }
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', (b: Buffer) => logs.push(b.toString()));
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`server exited (${code}) before ready:\n${logs.join('')}`));
    });
  });
  return {
    url,
    child,
    logs,
    exited,
    async stop(signal: NodeJS.Signals = 'SIGTERM') {
      if (child.exitCode === null) child.kill(signal);
      return exited;
    },
  };
}

/** Reads one Prometheus sample (sum over label sets matching `labels`). */
export async function metric(url: string, name: string, labels = ''): Promise<number> {
  const text = await (await fetch(`${url}/metrics`)).text();
  let sum = 0;
  let seen = false;
  for (const line of text.split('\n')) {
    if (!line.startsWith(name)) continue;
    const m = /^([a-z_]+)(\{[^}]*\})? ([-\d.e+]+|NaN)$/.exec(line);
    if (!m || m[1] !== name || (labels && !(m[2] ?? '').includes(labels))) continue;
    sum += Number(m[3]);
    seen = true;
  }
  if (!seen) throw new Error(`metric ${name}${labels} not found`);
  return sum;
}
