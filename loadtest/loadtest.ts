// npm run loadtest — starts the real server on 127.0.0.1 (or, with --url, uses a server or a
// balancer that is already running), then measures
//   streaming (SSE client): aggregate tokens/s, time to first token, inter-token latency and the
//     largest gap between chunks, at concurrency 1, 4, 16, 32, speculation off and on
//   smooth pacing: the spread of the gaps between chunks and the time per request, with the
//     speculative drafter, stream_options.pacing off and smooth alternating
//   non-streaming (autocannon): requests/s and latency
// and reads /metrics before and after each run for acceptance. Bounded in count and time; without
// --url it only ever targets the loopback address of the server it started. Behind a balancer
// that names the replica in x-specserve-replica (npm run cluster does), it also reports per replica.
import autocannon from 'autocannon';
import cliProgress from 'cli-progress';
import { Command } from 'commander';
import { createParser } from 'eventsource-parser';
import { spawn, type ChildProcess } from 'node:child_process';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { mdTable, median, writeReport, type Chart } from '../bench/report.ts';
import { PROMPTS } from '../bench/prompts.ts';
import { waitHealthy } from '../bench/server-bench.ts';
import { tokensWithin } from './window.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const HOST = '127.0.0.1';

const program = new Command()
  .name('loadtest')
  .option('--url <url>', 'an existing server or balancer to load (no local server is started)')
  .option('--api-key <key>', 'API key for --url')
  .option('--port <n>', 'port for the server under test', (v) => parseInt(v, 10), 8765)
  .option('--model <dir>', 'model folder', path.join(ROOT, 'models', 'specserve-tiny'))
  .option('--concurrency <list>', 'concurrency levels', '1,4,16,32')
  .option('--seconds <n>', 'length of each measured run (a level, one decoding mode, one round): clients send requests back to back until it ends', (v) => parseFloat(v), 4)
  .option('--settle <n>', 'seconds at the start of each run not counted (every client starts at once)', (v) => parseFloat(v), 1)
  .option('--rounds <n>', 'rounds per level, plain and speculative alternating; medians are reported', (v) => parseInt(v, 10), 8)
  .option('--max-tokens <n>', 'tokens per streamed request (the same as npm run bench)', (v) => parseInt(v, 10), 128)
  .option('--drafter <name>', 'drafter for the speculative runs', 'prompt-lookup')
  .option('--pacing-levels <list>', 'concurrency levels of the pacing comparison (empty: skip it)', '1,16')
  .option('--pacing-rounds <n>', 'rounds of the pacing comparison, off and smooth alternating', (v) => parseInt(v, 10), 4)
  .option('--autocannon-seconds <n>', 'duration of the non-streaming run', (v) => parseInt(v, 10), 10)
  .option('--out <dir>', 'results folder', path.join(ROOT, 'loadtest', 'results'));

interface StreamStats {
  ttft: number;
  gaps: number[];
  /** With token sources: the gap before every token as the client sees it (0 for the second and
   *  later tokens of one chunk), so requests paced into more chunks and less are compared per token. */
  tokenGaps: number[];
  /** The replica that served it (x-specserve-replica, set by npm run cluster's HAProxy). */
  replica: string | null;
  /** From the final chunk's speculative stats. */
  draftTokens: number;
  acceptedTokens: number;
  tokens: number;
  seconds: number;
  /** performance.now() of the first and the last text chunk */
  firstAt: number;
  lastAt: number;
}

/** Headers for every request: JSON, and the API key when one was given. */
let authHeaders: Record<string, string> = {};

async function streamOne(base: string, model: string, prompt: string, maxTokens: number, drafter: string, pacing?: 'off' | 'smooth'): Promise<StreamStats> {
  const t0 = performance.now();
  const res = await fetch(`${base}/v1/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...authHeaders },
    body: JSON.stringify({
      model, prompt, max_tokens: maxTokens, temperature: 0, stream: true,
      stream_options: { include_usage: true, ...(pacing ? { pacing, include_token_sources: true } : {}) }, ignore_eos: true, speculative: { drafter },
    }),
  });
  if (!res.ok || !res.body) throw new Error(`HTTP ${res.status}: ${await res.text()}`);
  let ttft = -1;
  let last = t0;
  const gaps: number[] = [];
  const tokenGaps: number[] = [];
  let tokens = 0;
  let draftTokens = 0;
  let acceptedTokens = 0;
  const parser = createParser({
    onEvent(ev) {
      if (ev.data === '[DONE]') return;
      const now = performance.now();
      const chunk = JSON.parse(ev.data);
      if (chunk.error) throw new Error(chunk.error.message);
      if (chunk.usage) tokens = chunk.usage.completion_tokens;
      for (const spec of chunk.speculative ?? []) {
        draftTokens += spec.draft_tokens;
        acceptedTokens += spec.accepted_tokens;
      }
      const choice = chunk.choices?.[0];
      if (choice?.text) {
        const inChunk = new Set((choice.token_sources ?? []).map((s: { step: number; position: number }) => `${s.step}:${s.position}`)).size;
        if (ttft < 0) ttft = now - t0;
        else {
          gaps.push(now - last);
          tokenGaps.push(now - last);
        }
        for (let k = 1; k < inChunk; k++) tokenGaps.push(0);
        last = now;
      }
    },
  });
  const decoder = new TextDecoder();
  for await (const part of res.body as unknown as AsyncIterable<Uint8Array>) parser.feed(decoder.decode(part, { stream: true }));
  return { ttft, gaps, tokenGaps, replica: res.headers.get('x-specserve-replica'), draftTokens, acceptedTokens, tokens, seconds: (performance.now() - t0) / 1000, firstAt: t0 + ttft, lastAt: last };
}

/** The model a running server serves, from /v1/models; a clear error when it cannot be reached. */
async function servedModel(base: string): Promise<string> {
  let res: Response;
  try {
    res = await fetch(`${base}/v1/models`, { headers: authHeaders });
  } catch (err) {
    throw new Error(`--url ${base}: cannot reach it (${(err as Error).message})`);
  }
  if (res.status === 401) throw new Error(`--url ${base}: the server wants an API key (--api-key)`);
  if (!res.ok) throw new Error(`--url ${base}: GET /v1/models answered ${res.status}`);
  const id = (await res.json()).data?.[0]?.id;
  if (typeof id !== 'string') throw new Error(`--url ${base}: /v1/models lists no model`);
  return id;
}

async function scrape(base: string): Promise<Record<string, number>> {
  const text = await (await fetch(`${base}/metrics`)).text();
  const out: Record<string, number> = {};
  for (const line of text.split('\n')) {
    const m = /^(specserve_spec_decode_num_(?:drafts|draft_tokens|accepted_tokens)_total)\{[^}]*\} ([\d.e+-]+)$/.exec(line);
    if (m) out[m[1]] = (out[m[1]] ?? 0) + Number(m[2]);
  }
  return out;
}

/**
 * Accepted over drafted tokens. From /metrics deltas on one server; behind a balancer a scrape
 * reaches one replica only, so there the requests' own speculative stats (the same counts) are used.
 */
function acceptance(all: StreamStats[], metricDelta: (name: string) => number): number {
  if (all.some((st) => st.replica !== null)) {
    const drafted = all.reduce((a, st) => a + st.draftTokens, 0);
    return drafted ? all.reduce((a, st) => a + st.acceptedTokens, 0) / drafted : 0;
  }
  const drafted = metricDelta('specserve_spec_decode_num_draft_tokens_total');
  return drafted ? metricDelta('specserve_spec_decode_num_accepted_tokens_total') / drafted : 0;
}

/** Requests, tokens and acceptance per replica, for runs that went through npm run cluster's balancer. */
function perReplicaTable(runs: { level: number; mode: string; all: StreamStats[] }[]): string {
  const rows: (string | number)[][] = [];
  for (const { level, mode, all } of runs) {
    const names = [...new Set(all.map((st) => st.replica ?? '?'))].sort();
    const total = all.reduce((a, st) => a + st.tokens, 0);
    for (const name of names) {
      const mine = all.filter((st) => (st.replica ?? '?') === name);
      const tokens = mine.reduce((a, st) => a + st.tokens, 0);
      const drafted = mine.reduce((a, st) => a + st.draftTokens, 0);
      const accepted = mine.reduce((a, st) => a + st.acceptedTokens, 0);
      rows.push([level, mode, name, mine.length, tokens, `${((100 * tokens) / Math.max(1, total)).toFixed(0)}%`, drafted ? `${((100 * accepted) / drafted).toFixed(0)}%` : '-']);
    }
  }
  return mdTable(['concurrency', 'decoding', 'replica', 'requests', 'tokens', 'share of tokens', 'accept rate'], rows);
}

/** Coefficient of variation of one request's gaps between chunks: 0 is a perfectly even cadence. */
function gapVariation(gaps: number[]): number {
  if (gaps.length < 2) return 0;
  const mean = gaps.reduce((a, g) => a + g, 0) / gaps.length;
  const variance = gaps.reduce((a, g) => a + (g - mean) ** 2, 0) / gaps.length;
  return mean > 0 ? Math.sqrt(variance) / mean : 0;
}

function percentile(xs: number[], p: number): number {
  if (xs.length === 0) return 0;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))];
}

async function startServer(port: number, model: string): Promise<ChildProcess> {
  const child = spawn(process.execPath, ['--import', 'tsx', path.join(ROOT, 'src', 'cli.ts'), '--port', String(port), '--host', HOST, '--model', model, '--log-level', 'warn'], {
    cwd: ROOT, stdio: ['ignore', 'inherit', 'inherit'],
  });
  try {
    await waitHealthy(`http://${HOST}:${port}`);
  } catch (err) {
    child.kill();
    throw err;
  }
  return child;
}

/** The command that reproduces this run: the options that differ from their defaults (not where
 *  the results go or which port the server uses). */
function commandLine(o: Record<string, unknown>): string {
  const args = program.options
    .filter((opt) => opt.long && !['--out', '--port', '--api-key'].includes(opt.long) && o[opt.attributeName()] !== opt.defaultValue)
    .map((opt) => `${opt.long} ${o[opt.attributeName()]}`);
  return `npm run loadtest${args.length ? ` -- ${args.join(' ')}` : ''}`;
}

async function main() {
  const o = program.parse().opts();
  const levels = String(o.concurrency).split(',').map(Number);
  if (o.apiKey) authHeaders = { authorization: `Bearer ${o.apiKey}` };
  const base = o.url ? String(o.url).replace(/\/+$/, '') : `http://${HOST}:${o.port}`;
  const server = o.url ? undefined : await startServer(o.port, o.model);
  const modelId = o.url ? await servedModel(base) : path.basename(o.model);
  const prompts = Object.values(PROMPTS).flat();
  const results: Record<string, Record<number, Record<string, number>>> = {};
  try {
    const modes = ['none', o.drafter];
    // Each run is time-bounded: every client sends requests back to back until the run's time is
    // up, and the aggregate rate counts the tokens streamed inside [settle, seconds) while every
    // client is busy. Within a round each client repeats one prompt (its own, different per client
    // and per round), in both decoding modes: plain and speculative then serve the same prompts,
    // and their ratio compares decoding, not prompt mixes. Cycling through the prompts instead, a
    // faster mode got further down the list within the window, onto other prompts (at one stream
    // ~8 plain vs ~20 speculative requests in 4 s), and how far depended on the VM's speed: the
    // ratio at concurrency 1 moved by 20% between runs. A fixed number of
    // requests per client instead ends each run with a tail where the clients that drew slow
    // prompts are still running alone, and that tail is longer the more request speeds differ,
    // as they do with speculation (prompt lookup copies some prompts far faster than others):
    // it measured speculation down to 0.90x at 16 streams where the steady state was above 1x.
    const pacingLevels = String(o.pacingLevels).split(',').filter(Boolean).map(Number);
    const total = (modes.length * o.rounds + 1) * levels.length + 2 * o.pacingRounds * pacingLevels.length;
    const bar = new cliProgress.SingleBar({ format: ' {bar} {value}/{total} runs | drafter={mode} concurrency={c} round={round}' }, cliProgress.Presets.shades_classic);
    bar.start(total, 0, { mode: '', c: 0, round: 0 });
    const runLevel = async (mode: string, c: number, round: number, seconds = o.seconds, pacing?: 'off' | 'smooth') => {
      bar.update({ mode, c, round });
      const before = await scrape(base);
      const t0 = performance.now();
      const end = t0 + seconds * 1000;
      const all: StreamStats[] = [];
      await Promise.all(
        Array.from({ length: c }, async (_, client) => {
          const prompt = prompts[(client * 5 + round * 7) % prompts.length];
          while (performance.now() < end) all.push(await streamOne(base, modelId, prompt, o.maxTokens, mode, pacing));
        }),
      );
      const from = t0 + Math.min(o.settle, seconds / 2) * 1000;
      const tokens = all.reduce((a, s) => a + tokensWithin(s, from, end), 0);
      const after = await scrape(base);
      bar.increment(1);
      return { all, rate: tokens / ((end - from) / 1000), before, after };
    };
    // untimed warm-up at each level, so the goodput draft policy has measured its caps there
    for (const c of levels) await runLevel(o.drafter, c, 0, Math.min(o.seconds, 3));
    for (const mode of modes) results[mode] = {};
    // Rounds outside levels: each round visits every level, plain and speculative back to back
    // (alternating which goes first), so the ratios within a round (speculative vs plain at a level,
    // plain at 16 vs plain at 1) compare runs minutes apart at most and slow drift of the machine
    // hits both sides alike.
    type Run = Awaited<ReturnType<typeof runLevel>>;
    const runs: Record<string, Record<number, Run[]>> = Object.fromEntries(modes.map((m) => [m, Object.fromEntries(levels.map((c) => [c, [] as Run[]]))]));
    for (let round = 1; round <= o.rounds; round++) {
      for (const c of levels) {
        for (const mode of round % 2 ? modes : [...modes].reverse()) runs[mode][c].push(await runLevel(mode, c, round));
      }
    }
    const rate = (r: Run) => r.rate;
    const spread = (xs: number[]) => ({ median: median(xs), min: Math.min(...xs), max: Math.max(...xs) });
    for (const c of levels) {
      const ratio = spread(runs[modes[1]][c].map((r, i) => rate(r) / rate(runs[modes[0]][c][i])));
      for (const mode of modes) {
        const rs = runs[mode][c];
        const all = rs.flatMap((r) => r.all);
        const d = (k: string) => rs.reduce((a, r) => a + (r.after[k] ?? 0) - (r.before[k] ?? 0), 0);
        const gaps = all.flatMap((s) => s.gaps);
        const agg = spread(rs.map(rate));
        results[mode][c] = {
          aggregateTokensPerSecond: agg.median,
          aggregateTokensPerSecondMin: agg.min,
          aggregateTokensPerSecondMax: agg.max,
          perRequestTokensPerSecond: all.reduce((a, s) => a + s.tokens / s.seconds, 0) / all.length,
          ttftP50ms: percentile(all.map((s) => s.ttft), 50),
          ttftP95ms: percentile(all.map((s) => s.ttft), 95),
          itlP50ms: percentile(gaps, 50),
          itlP95ms: percentile(gaps, 95),
          maxGapMs: gaps.reduce((m, g) => Math.max(m, g), 0), // a spread of every gap overflows the stack at these rates
          acceptanceRate: acceptance(all, d),
          requests: all.length,
          ...(mode === modes[1] ? { ratioMedian: ratio.median, ratioMin: ratio.min, ratioMax: ratio.max } : {}),
        };
      }
    }
    // plain scaling, per round: aggregate tokens/s at each level over the first level's
    const scaling: Record<number, ReturnType<typeof spread>> = {};
    for (const c of levels.slice(1)) scaling[c] = spread(runs[modes[0]][c].map((r, i) => rate(r) / rate(runs[modes[0]][levels[0]][i])));

    // Smooth pacing against none, with the speculative drafter (where steps bring several tokens):
    // the same clients and prompts, off and smooth alternating within each round.
    const pacingModes = ['off', 'smooth'] as const;
    const pacingRuns: Record<string, Record<number, Run[]>> = Object.fromEntries(pacingModes.map((m) => [m, Object.fromEntries(pacingLevels.map((c) => [c, [] as Run[]]))]));
    for (let round = 1; round <= o.pacingRounds; round++) {
      for (const c of pacingLevels) {
        for (const pacing of round % 2 ? pacingModes : [...pacingModes].reverse()) {
          pacingRuns[pacing][c].push(await runLevel(o.drafter, c, round, o.seconds, pacing));
        }
      }
    }
    const pacingResults: Record<string, Record<number, Record<string, number>>> = {};
    for (const pacing of pacingModes) {
      pacingResults[pacing] = {};
      for (const c of pacingLevels) {
        const all = pacingRuns[pacing][c].flatMap((r) => r.all);
        const gaps = all.flatMap((st) => st.gaps);
        const tokenGaps = all.flatMap((st) => st.tokenGaps);
        pacingResults[pacing][c] = {
          tokenGapVariationMedian: median(all.map((st) => gapVariation(st.tokenGaps))),
          tokenGapP99ms: percentile(tokenGaps, 99),
          chunkGapVariationMedian: median(all.map((st) => gapVariation(st.gaps))),
          chunkGapP99ms: percentile(gaps, 99),
          chunksPerRequest: gaps.length / all.length + 1,
          secondsPerRequest: all.reduce((a, st) => a + st.seconds, 0) / all.length,
          requests: all.length,
        };
      }
    }
    bar.stop();

    // non-streaming request rate with autocannon
    const ac = await autocannon({
      url: `${base}/v1/completions`,
      method: 'POST',
      headers: { 'content-type': 'application/json', ...authHeaders },
      body: JSON.stringify({ model: modelId, prompt: prompts[0], max_tokens: 16, temperature: 0 }),
      connections: 4,
      duration: o.autocannonSeconds,
    });
    const date = new Date().toISOString().slice(0, 10);
    const rows = levels.flatMap((c) =>
      ['none', o.drafter].map((m) => {
        const r = results[m][c];
        const ratio = m === 'none' ? '-' : `${r.ratioMedian.toFixed(2)}x (${r.ratioMin.toFixed(2)}–${r.ratioMax.toFixed(2)})`;
        return [c, m === 'none' ? 'plain' : m, r.aggregateTokensPerSecond.toFixed(1), ratio, r.ttftP50ms.toFixed(0), r.ttftP95ms.toFixed(0), r.itlP50ms.toFixed(1), r.maxGapMs.toFixed(0), m === 'none' ? '-' : `${(r.acceptanceRate * 100).toFixed(0)}%`];
      }),
    );
    let md = `### Load test (${date})\n\n${o.url ? `Server: ${base} (already running)` : `Server on ${HOST}`}, ${o.maxTokens} tokens per streamed request, each client sending requests back to back for ${o.seconds} s per level, decoding mode and round (aggregate tokens/s counted after the first ${o.settle} s, while every client is busy), ${o.rounds} rounds (each visits every level, plain and speculative back to back, alternating which goes first) after an untimed warm-up; tokens/s and the ratios are medians over rounds (the ratio's range in brackets); machine: ${os.cpus()[0]?.model ?? 'cpu'} x${os.availableParallelism()}.\n`;
    md += `Command: \`${commandLine(o)}\`\n\n`;
    md += mdTable(['concurrency', 'decoding', 'aggregate tok/s (median)', 'vs plain (median of rounds, range)', 'TTFT p50 ms', 'TTFT p95 ms', 'ITL p50 ms', 'max gap ms', 'accept rate'], rows);
    if (levels.some((c) => modes.some((m) => runs[m][c].some((r) => r.all.some((st) => st.replica !== null))))) {
      md += `\nPer replica (the balancer's x-specserve-replica header), all rounds:\n\n`;
      md += perReplicaTable(levels.flatMap((c) => modes.map((m) => ({ level: c, mode: m === 'none' ? 'plain' : m, all: runs[m][c].flatMap((r) => r.all) }))));
    }
    if (levels.length > 1) {
      md += `\nPlain scaling, aggregate tokens/s over concurrency ${levels[0]} within each round (median, range): ` +
        levels.slice(1).map((c) => `c${c} ${scaling[c].median.toFixed(2)}x (${scaling[c].min.toFixed(2)}–${scaling[c].max.toFixed(2)})`).join(', ') + '.\n';
    }
    if (pacingLevels.length) {
      md += `\nSmooth pacing (\`stream_options.pacing\`), ${o.drafter}, ${o.pacingRounds} rounds of ${o.seconds} s per level and mode, off and smooth alternating, token sources on in both (to count tokens per chunk). ` +
        `Gap variation is the median over requests of the standard deviation of a request's gaps over their mean (0 = an even cadence); per token, a chunk of k tokens counts as k arrivals (k − 1 gaps of 0), so both modes have the same number of gaps:\n\n`;
      md += mdTable(
        ['concurrency', 'pacing', 'token gap variation', 'token gap p99 ms', 'chunk gap variation', 'chunk gap p99 ms', 'chunks per request', 'seconds per request'],
        pacingLevels.flatMap((c) =>
          pacingModes.map((pacing) => {
            const r = pacingResults[pacing][c];
            return [c, pacing, r.tokenGapVariationMedian.toFixed(2), r.tokenGapP99ms.toFixed(1), r.chunkGapVariationMedian.toFixed(2), r.chunkGapP99ms.toFixed(1), r.chunksPerRequest.toFixed(1), r.secondsPerRequest.toFixed(3)];
          }),
        ),
      );
    }
    md += `\nNon-streaming (autocannon, 4 connections, ${o.autocannonSeconds} s, 16 tokens): ${ac.requests.average.toFixed(1)} req/s, latency p50 ${ac.latency.p50} ms, p99 ${ac.latency.p99} ms, errors ${ac.errors}, non-2xx ${ac.non2xx}.\n`;
    const charts: Chart[] = [
      {
        title: 'Aggregate tokens/s vs concurrency', type: 'line', labels: levels.map(String), yLabel: 'tokens/s',
        series: ['none', o.drafter].map((m) => ({ label: m === 'none' ? 'plain' : m, data: levels.map((c) => results[m][c].aggregateTokensPerSecond) })),
      },
      {
        title: 'Time to first token p50 (ms)', type: 'line', labels: levels.map(String), yLabel: 'ms',
        series: ['none', o.drafter].map((m) => ({ label: m === 'none' ? 'plain' : m, data: levels.map((c) => results[m][c].ttftP50ms) })),
      },
    ];
    const files = writeReport(o.out, 'loadtest', { date, options: o, results, scaling, pacing: pacingResults, autocannon: { rps: ac.requests.average, latency: ac.latency } }, md, charts);
    console.log('\n' + md);
    console.log(`wrote ${files.join(', ')}`);
  } finally {
    server?.kill('SIGTERM');
  }
}

main().catch((err) => {
  // a wrong --url or missing key is the user's to fix: the message, not a stack
  console.error(String((err as Error).message).startsWith('--url') ? (err as Error).message : err);
  process.exit(1);
});
