// Plain decoding through the real server (spawned CLI, streaming completions over HTTP/SSE) versus
// the engine called directly in-process, same prompts, same threads: the server's overhead as a
// ratio, for whole requests and for the decoding after the first token.
import { createParser } from 'eventsource-parser';
import { spawn } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createEngine } from '../src/engine/index.ts';
import { greedyRequest } from './request.ts';
import type { EngineOptions } from '../src/engine/options.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

export async function waitHealthy(base: string, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    try {
      if ((await fetch(`${base}/health`)).status === 200) return;
    } catch {
      /* not listening yet */
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`${base} did not become healthy`);
}

/** Streams one completion; returns the tokens and the ms to the first token and after it. */
async function streamTokens(base: string, model: string, prompt: string, maxTokens: number): Promise<Timed> {
  const t0 = performance.now();
  const res = await fetch(`${base}/v1/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model, prompt, max_tokens: maxTokens, temperature: 0, stream: true, stream_options: { include_usage: true }, ignore_eos: true }),
  });
  if (!res.ok || !res.body) throw new Error(`HTTP ${res.status}: ${await res.text()}`);
  let tokens = 0;
  let first = 0;
  const parser = createParser({
    onEvent(ev) {
      if (ev.data !== '[DONE]') {
        const chunk = JSON.parse(ev.data);
        if (!first && chunk.choices?.[0]?.text) first = performance.now();
        if (chunk.usage) tokens = chunk.usage.completion_tokens;
      }
    },
  });
  const dec = new TextDecoder();
  for await (const part of res.body as unknown as AsyncIterable<Uint8Array>) parser.feed(dec.decode(part, { stream: true }));
  return { tokens, firstMs: first - t0, restMs: performance.now() - first };
}

interface Timed {
  tokens: number;
  /** To the first token (request handling, prefill). */
  firstMs: number;
  /** From the first token to the end: decoding and streaming. */
  restMs: number;
}

export interface ServerThroughput {
  serverTps: number;
  engineTps: number;
  /** Server / engine tokens/s per repetition, whole requests and after the first token. */
  ratios: number[];
  decodeRatios: number[];
  firstTokenMs: { server: number; engine: number };
}

/**
 * Plain decoding streamed through the real server vs the engine in-process, the two alternating
 * request by request, `reps` passes over the prompts; whole requests (time to the last token) and
 * decoding alone (after the first token).
 */
export async function serverThroughput(modelDir: string, threads: number, prompts: string[], maxTokens: number,
  { port = 8799, provider = 'cpu', reps = 3 }: { port?: number; provider?: EngineOptions['provider']; reps?: number } = {}): Promise<ServerThroughput> {
  const model = path.basename(modelDir);
  const child = spawn(process.execPath, ['--import', 'tsx', path.join(ROOT, 'src', 'cli.ts'), '--model', modelDir, '--port', String(port), '--threads', String(threads), '--provider', provider, '--log-level', 'warn'], {
    cwd: ROOT, stdio: ['ignore', 'ignore', 'inherit'],
  });
  const base = `http://127.0.0.1:${port}`;
  try {
    await waitHealthy(base);
    const engine = await createEngine({ modelDir, threads, provider });
    const direct = async (prompt: string): Promise<Timed> => {
      const t0 = performance.now();
      let first = 0;
      let tokens = 0;
      for await (const ev of engine.generateText(greedyRequest(prompt, { maxTokens }))) {
        if (ev.type === 'text' && ev.text && !first) first = performance.now();
        if (ev.type === 'done') tokens = ev.completionTokens;
      }
      return { tokens, firstMs: first - t0, restMs: performance.now() - first };
    };
    try {
      for (const p of prompts.slice(0, 2)) await Promise.all([streamTokens(base, model, p, 8), direct(p)]); // warm-up
      const runs: { server: Timed[]; engine: Timed[] }[] = [];
      for (let rep = 0; rep < reps; rep++) {
        const r = { server: [] as Timed[], engine: [] as Timed[] };
        for (const prompt of prompts) {
          // alternate the two so machine drift affects both alike; never both at once
          if (rep % 2) r.engine.push(await direct(prompt));
          r.server.push(await streamTokens(base, model, prompt, maxTokens));
          if (rep % 2 === 0) r.engine.push(await direct(prompt));
        }
        runs.push(r);
      }
      const sum = (xs: Timed[], f: (t: Timed) => number) => xs.reduce((a, t) => a + f(t), 0);
      const tps = (xs: Timed[]) => sum(xs, (t) => t.tokens) / (sum(xs, (t) => t.firstMs + t.restMs) / 1000);
      const decodeTps = (xs: Timed[]) => sum(xs, (t) => t.tokens - 1) / (sum(xs, (t) => t.restMs) / 1000);
      const all = (k: 'server' | 'engine') => runs.flatMap((r) => r[k]);
      return {
        serverTps: tps(all('server')),
        engineTps: tps(all('engine')),
        ratios: runs.map((r) => tps(r.server) / tps(r.engine)),
        decodeRatios: runs.map((r) => decodeTps(r.server) / decodeTps(r.engine)),
        firstTokenMs: { server: sum(all('server'), (t) => t.firstMs) / all('server').length, engine: sum(all('engine'), (t) => t.firstMs) / all('engine').length },
      };
    } finally {
      await engine.close();
    }
  } finally {
    child.kill('SIGTERM');
  }
}
