// Plain decoding through the real server (spawned CLI, streaming completions over HTTP/SSE) versus
// the engine called directly in-process, same prompts, same threads: the server's overhead as a
// ratio.
import { createParser } from 'eventsource-parser';
import { spawn } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createEngine } from '../src/engine/index.ts';
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

async function streamTokens(base: string, model: string, prompt: string, maxTokens: number): Promise<number> {
  const res = await fetch(`${base}/v1/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model, prompt, max_tokens: maxTokens, temperature: 0, stream: true, stream_options: { include_usage: true }, ignore_eos: true }),
  });
  if (!res.ok || !res.body) throw new Error(`HTTP ${res.status}: ${await res.text()}`);
  let tokens = 0;
  const parser = createParser({
    onEvent(ev) {
      if (ev.data !== '[DONE]') {
        const chunk = JSON.parse(ev.data);
        if (chunk.usage) tokens = chunk.usage.completion_tokens;
      }
    },
  });
  const dec = new TextDecoder();
  for await (const part of res.body as unknown as AsyncIterable<Uint8Array>) parser.feed(dec.decode(part, { stream: true }));
  return tokens;
}

export async function serverThroughput(modelDir: string, threads: number, prompts: string[], maxTokens: number,
  { port = 8799, provider = 'cpu' }: { port?: number; provider?: EngineOptions['provider'] } = {}) {
  const model = path.basename(modelDir);
  const child = spawn(process.execPath, ['--import', 'tsx', path.join(ROOT, 'src', 'cli.ts'), '--model', modelDir, '--port', String(port), '--threads', String(threads), '--provider', provider, '--log-level', 'warn'], {
    cwd: ROOT, stdio: ['ignore', 'ignore', 'inherit'],
  });
  const base = `http://127.0.0.1:${port}`;
  try {
    await waitHealthy(base);
    await streamTokens(base, model, prompts[0], 8); // warm-up
    let serverTokens = 0;
    let serverSeconds = 0;
    let engineTokens = 0;
    let engineSeconds = 0;
    const engine = await createEngine({ modelDir, threads, provider });
    try {
      for (const prompt of prompts) {
        // alternate the two so machine drift affects both alike; never both at once
        let t0 = performance.now();
        serverTokens += await streamTokens(base, model, prompt, maxTokens);
        serverSeconds += (performance.now() - t0) / 1000;
        t0 = performance.now();
        for await (const ev of engine.generateText({
          prompt, maxTokens, minTokens: 0, ignoreEos: true, stop: [], logprobs: null, echo: false,
          sampling: { temperature: 0, topP: 1, topK: 0, presencePenalty: 0, frequencyPenalty: 0 }, speculative: { drafter: 'none' },
        })) if (ev.type === 'done') engineTokens += ev.completionTokens;
        engineSeconds += (performance.now() - t0) / 1000;
      }
    } finally {
      await engine.close();
    }
    return { serverTps: serverTokens / serverSeconds, engineTps: engineTokens / engineSeconds };
  } finally {
    child.kill('SIGTERM');
  }
}
