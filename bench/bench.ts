// npm run bench — engine-level benchmark at batch 1 (the Spec-Bench protocol adapted here):
// greedy, fixed max tokens, several repetitions, per prompt category; plain decoding and every
// available drafter measured in the same run (interleaved), plus transformers.js on the same
// standard-layout ONNX file as a peer, plus plain decoding through the HTTP server to show its
// overhead, plus llama.cpp on the same weights (bench/peers.ts). Writes bench/results/bench.{json,md,html}.
import { Command, Option } from 'commander';
import cliProgress from 'cli-progress';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createEngine, type LocalEngine } from '../src/engine/index.ts';
import { greedyRequest } from './request.ts';
import type { TextRequest } from '../src/engine/types.ts';
import { acceptanceRate, meanAcceptanceLength } from '../src/engine/stats.ts';
import { CHATS, PROMPTS, type Category } from './prompts.ts';
import { mdTable, median, writeReport, type Chart } from './report.ts';
import { kvBench } from './kv-bench.ts';
import { describeSaq } from '../src/kvcache/paged.ts';
import { serverThroughput } from './server-bench.ts';
import { TransformersPeer } from './peer-transformers.ts';
import { peerCharts, peerComparison, peerMarkdown } from './peers.ts';
import { autoThreads } from '../src/worker/runner.ts';
import { DTYPE_SUFFIX } from '../src/model/config.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

const program = new Command()
  .name('bench')
  .option('--model <dir>', 'model folder', path.join(ROOT, 'models', 'specserve-tiny'))
  .option('--max-tokens <n>', 'tokens generated per prompt', (v) => parseInt(v, 10), 128)
  .option('--reps <n>', 'repetitions of each prompt', (v) => parseInt(v, 10), 3)
  .option('--threads <n>', "onnxruntime intra-op threads for specserve and transformers.js (default: the server's, one fewer than the cores)", (v) => parseInt(v, 10), autoThreads())
  .addOption(new Option('--dtype <name>', "specserve's weight format for the drafter comparison (default: the server's)").choices(['auto', 'fp32', 'int8', 'int4']).default('auto'))
  .option('--drafters <list>', 'comma-separated drafters (default: all available)')
  .option('--max-draft-tokens <n>', 'draft budget per step', (v) => parseInt(v, 10), 8)
  .option('--draft-policy <name>', "the engine's draft policy: goodput (the server's default) or static (every drafter at its full budget, deterministic drafting)", 'goodput')
  .addOption(new Option('--provider <name>', 'execution provider for specserve (cpu is the one published)').choices(['cpu', 'cuda', 'auto']).default('cpu'))
  .option('--spin-threads', "let onnxruntime's idle threads spin, as transformers.js's onnxruntime does by default (the server's default is off)", false)
  .option('--no-peer', 'skip transformers.js')
  .option('--no-llama', 'skip llama.cpp (node-llama-cpp) on the same weights')
  .option('--streams <list>', 'concurrent streams compared with llama.cpp', (v) => v.split(',').map(Number), [4, 16])
  .option('--no-server', 'skip the through-the-server measurement')
  .option('--no-kv', 'skip the KV cache (fp32 vs SAQ) benchmark')
  .option('--out <dir>', 'results folder', path.join(ROOT, 'bench', 'results'));

interface Cell {
  requests: number;
  tokens: number;
  seconds: number;
  draftSteps: number;
  draftTokens: number;
  acceptedTokens: number;
  /** Draft steps the drafter ended on low confidence (Kangaroo's second early exit). */
  earlyStops: number;
  /** Wall seconds as run (`seconds` becomes the paired estimate; this stays the raw sum). */
  wallSeconds: number;
  /** The engine's decode timing (DecodeTiming), summed. */
  timedSteps: number;
  draftMs: number;
  forwardMs: number;
  verifiedTokens: number;
  /** Generated token ids (only kept for the greedy identity check). */
  ids?: number[];
}

const emptyCell = (): Cell => ({
  requests: 0, tokens: 0, seconds: 0, draftSteps: 0, draftTokens: 0, acceptedTokens: 0, earlyStops: 0,
  wallSeconds: 0, timedSteps: 0, draftMs: 0, forwardMs: 0, verifiedTokens: 0,
});

async function timeEngine(engine: LocalEngine, req: TextRequest): Promise<Cell> {
  const t0 = performance.now();
  let tokens = 0;
  let spec;
  let timing;
  const ids: number[] = [];
  for await (const ev of engine.generateText(req)) {
    if (ev.type === 'text') ids.push(...ev.tokenIds);
    if (ev.type === 'done') {
      tokens = ev.completionTokens;
      spec = ev.speculation;
      timing = ev.timing;
    }
  }
  const seconds = (performance.now() - t0) / 1000;
  return {
    requests: 1, tokens, seconds,
    draftSteps: spec?.draftSteps ?? 0, draftTokens: spec?.draftTokens ?? 0, acceptedTokens: spec?.acceptedTokens ?? 0,
    earlyStops: spec?.earlyStops ?? 0, ids, wallSeconds: seconds,
    timedSteps: timing?.decodeSteps ?? 0, draftMs: timing?.draftMs ?? 0, forwardMs: timing?.forwardMs ?? 0, verifiedTokens: timing?.verifiedTokens ?? 0,
  };
}

function add(a: Cell, b: Cell) {
  a.requests += b.requests;
  a.tokens += b.tokens;
  a.seconds += b.seconds;
  a.draftSteps += b.draftSteps;
  a.draftTokens += b.draftTokens;
  a.acceptedTokens += b.acceptedTokens;
  a.earlyStops += b.earlyStops;
  a.wallSeconds += b.wallSeconds;
  a.timedSteps += b.timedSteps;
  a.draftMs += b.draftMs;
  a.forwardMs += b.forwardMs;
  a.verifiedTokens += b.verifiedTokens;
}

async function main() {
  const o = program.parse().opts();
  const engine = await createEngine({ modelDir: o.model, threads: o.threads, provider: o.provider, dtype: o.dtype, spinThreads: o.spinThreads, draftPolicy: o.draftPolicy });
  const drafters: string[] = o.drafters
    ? o.drafters.split(',')
    : engine.drafters().filter((d) => d.available).map((d) => d.name);
  const peer = o.peer ? await TransformersPeer.load(o.model, o.threads, engine.info.dtype) : null;
  const methods = ['plain', ...drafters, ...(peer ? ['transformers.js'] : [])];
  const prompts: { category: Category; prompt: string }[] = [
    ...Object.entries(PROMPTS).flatMap(([category, list]) => list.map((prompt) => ({ category: category as Category, prompt }))),
    ...CHATS.map((messages) => ({ category: 'chat' as Category, prompt: engine.applyChatTemplate(messages) })),
  ];
  const categories = [...new Set(prompts.map((p) => p.category))];
  const cells = new Map<string, Cell>(); // `${method}|${category}`
  const key = (m: string, c: string) => `${m}|${c}`;
  for (const m of methods) for (const c of [...categories, 'overall']) cells.set(key(m, c), emptyCell());
  // Timing design. Every ratio compares a method with plain decoding run right next to it, on the
  // same prompt: each (prompt, repetition) runs plain then the method (or the reverse on odd
  // repetitions) for every method in turn. A shared VM changes speed over seconds to minutes; a
  // ratio against plain runs minutes away (or against one plain run shared by every method) moved
  // whole categories by 20-35% between runs. Per prompt the median of the repetitions' paired
  // ratios counts, so one pair the VM slowed down does not move a ratio either.
  const times = new Map<string, number[]>(); // `${method}|${prompt index}`: the method's seconds
  const paired = new Map<string, number[]>(); // `${method}|${prompt index}`: its plain partner's
  const push = (map: Map<string, number[]>, k: string, v: number) => map.set(k, [...(map.get(k) ?? []), v]);
  const others = methods.filter((m) => m !== 'plain');

  console.log(`specserve bench: ${prompts.length} prompts x ${o.reps} reps x ${methods.length} methods, ${o.maxTokens} tokens each, threads=${o.threads}, provider=${engine.info.provider}`);
  const bar = new cliProgress.SingleBar({ format: ' {bar} {value}/{total} runs | {method} on {category}', hideCursor: true }, cliProgress.Presets.shades_classic);
  bar.start(prompts.length * o.reps * others.length * 2, 0, { method: '', category: '' });
  const runOnce = async (m: string, p: { category: Category; prompt: string }): Promise<Cell> => {
    if (m !== 'transformers.js') return timeEngine(engine, greedyRequest(p.prompt, { maxTokens: o.maxTokens, speculative: { drafter: m === 'plain' ? 'none' : m, maxDraftTokens: o.maxDraftTokens } }));
    const t0 = performance.now();
    const tokens = await peer!.generate(p.prompt, o.maxTokens);
    const seconds = (performance.now() - t0) / 1000;
    return { ...emptyCell(), requests: 1, tokens, seconds, wallSeconds: seconds };
  };
  // Greedy losslessness, checked on every timed run: each method's tokens must equal plain
  // decoding's on the same prompt, on whatever provider the bench runs.
  const plainIds = new Map<number, number[]>();
  const checked = new Map<string, { runs: number; differing: number }>();
  const checkIdentity = (m: string, pi: number, cell: Cell) => {
    if (!cell.ids) return; // the peer's runs carry no ids
    const ref = plainIds.get(pi);
    if (!ref) { plainIds.set(pi, cell.ids); return; }
    const c = checked.get(m) ?? { runs: 0, differing: 0 };
    c.runs++;
    if (ref.length !== cell.ids.length || ref.some((t, i) => t !== cell.ids![i])) c.differing++;
    checked.set(m, c);
  };
  // Untimed warm-up: lazy initialisation, and the goodput draft policy measures its caps for every
  // drafter (as it has in a server that has been up a while) instead of learning them inside the
  // first timed category. Every 4th prompt, full length, each method.
  for (const [pi, p] of prompts.entries()) {
    if (pi % 4 === 0) for (const m of methods) await runOnce(m, p);
  }
  for (let rep = 0; rep < o.reps; rep++) {
    for (const [pi, p] of prompts.entries()) {
      for (const m of rep % 2 === 0 ? others : [...others].reverse()) {
        for (const x of rep % 2 === 0 ? ['plain', m] : [m, 'plain']) {
          bar.increment(0, { method: x, category: p.category });
          const cell = await runOnce(x, p);
          checkIdentity(x, pi, cell);
          add(cells.get(key(x, p.category))!, cell);
          add(cells.get(key(x, 'overall'))!, cell);
          push(x === 'plain' ? paired : times, key(m, String(pi)), cell.seconds);
          if (x === 'plain') push(times, key('plain', String(pi)), cell.seconds);
          bar.increment(1);
        }
      }
    }
  }
  bar.stop();
  // Timing per cell. Per prompt, a method's speedup is the median over repetitions of (its plain
  // partner's time / its own time), each ratio taken within one pair run back to back; its time
  // is its paired plain time (median repetition, scaled to the runs made) over that speedup, so a
  // category's speedup is its prompts' speedups weighted by their plain time.
  const pairedSeconds = new Map<string, number>(); // `${method}|${category}`
  for (const m of methods) {
    for (const c of [...categories, 'overall']) {
      cells.get(key(m, c))!.seconds = 0;
      pairedSeconds.set(key(m, c), 0);
    }
    prompts.forEach((p, pi) => {
      const runs = times.get(key(m, String(pi)))!;
      const partner = m === 'plain' ? runs : paired.get(key(m, String(pi)))!;
      const ps = median(partner) * runs.length;
      const s = m === 'plain' ? ps : ps / median(runs.map((t, r) => partner[r] / t));
      for (const c of [p.category, 'overall']) {
        cells.get(key(m, c))!.seconds += s;
        pairedSeconds.set(key(m, c), pairedSeconds.get(key(m, c))! + ps);
      }
    });
  }

  const promptIds = prompts.map((p) => engine.tokenize(p.prompt));
  const server = o.server ? await serverThroughput(o.model, o.threads, prompts.slice(0, 12).map((p) => p.prompt), o.maxTokens, { provider: o.provider, reps: o.reps }) : null;
  await engine.close();
  const llama = o.llama && o.provider === 'cpu'
    ? await peerComparison(promptIds, { model: o.model, maxTokens: o.maxTokens, reps: o.reps, threads: o.threads, drafters, concurrency: o.streams, log: console.log })
    : null;
  const kv = o.kv ? await kvBench(o.model, o.threads) : null;
  // the same measures on 8 other prompts (offsets half a spacing on): a check that the staircase is
  // not tuned to the first set
  const kvCheck = o.kv ? await kvBench(o.model, o.threads, console.log, { prompts: 'shifted' }) : null;

  const tps = (c: Cell) => c.tokens / c.seconds;
  const rows: (string | number)[][] = [];
  const results: Record<string, Record<string, unknown>> = {};
  for (const m of methods) {
    results[m] = {};
    for (const c of [...categories, 'overall']) {
      const cell = cells.get(key(m, c))!;
      const speedup = pairedSeconds.get(key(m, c))! / cell.seconds; // same prompts, same token counts
      const mal = meanAcceptanceLength(cell);
      const rate = cell.draftTokens ? acceptanceRate(cell) : null;
      const early = cells.get(key(m, 'overall'))!.earlyStops > 0 && cell.draftSteps ? cell.earlyStops / cell.draftSteps : null;
      results[m][c] = {
        tokensPerSecond: tps(cell), speedup, meanAcceptanceLength: mal, acceptanceRate: rate, earlyStopFraction: early,
        tokens: cell.tokens, seconds: cell.seconds,
        step: cell.timedSteps ? stepTiming(cell) : null,
      };
      if (c === 'overall' || m !== 'transformers.js') {
        rows.push([
          m, c, tps(cell).toFixed(1), `${speedup.toFixed(2)}x`, m === 'plain' || m === 'transformers.js' ? '-' : mal.toFixed(2),
          rate === null ? '-' : `${(rate * 100).toFixed(0)}%`, early === null ? '-' : `${(early * 100).toFixed(0)}%`,
        ]);
      }
    }
  }
  const date = new Date().toISOString().slice(0, 10);
  const machine = `${os.cpus()[0]?.model ?? 'cpu'} x${os.availableParallelism()}, ${engine.info.provider}`;
  let md = `### Speculative decoding, batch 1, greedy (${date})\n\n`;
  md += `Model \`${path.basename(o.model)}\`, ${o.maxTokens} tokens per prompt, ${o.reps} reps (each method timed next to a plain run on the same prompt; per prompt the median of the paired ratios), ${prompts.length} prompts, threads=${o.threads}${o.spinThreads ? ' (spinning)' : ''}, machine: ${machine}.\n`;
  md += `Command: \`npm run bench -- --reps ${o.reps} --max-tokens ${o.maxTokens}${o.provider !== 'cpu' ? ` --provider ${o.provider}` : ''}${o.spinThreads ? ' --spin-threads' : ''}\`\n\n`;
  md += mdTable(['method', 'category', 'tokens/s', 'vs plain', 'mean accept len', 'accept rate', 'drafts stopped early'], rows);
  // per decode step, overall, for the methods the engine timed (the peer is not)
  const steps = methods.flatMap((m) => {
    const t = (results[m].overall as { step: StepTiming | null }).step;
    return t ? [[m, t] as const] : [];
  });
  md += `\n${stepBreakdown(steps)}`;
  md += `\nGreedy output identical to plain decoding on every timed run: ${[...checked].map(([m, c]) => `${m} ${c.runs - c.differing}/${c.runs}`).join(', ')}.\n`;
  if (peer) {
    const pt = tps(cells.get(key('transformers.js', 'overall'))!);
    // through the paired plain runs: plain vs the peer, and each drafter vs plain, both side by side
    const vsPlain = (m: string) => (results[m].overall as { speedup: number }).speedup;
    md += `\nPeer: transformers.js ${pt.toFixed(1)} tok/s on the same weights (${engine.info.dtype}, \`onnx/model${DTYPE_SUFFIX[engine.info.dtype]}.onnx\`), same threads. specserve plain = ${(1 / vsPlain('transformers.js')).toFixed(2)}x transformers.js`;
    for (const d of drafters) md += `, ${d} = ${(vsPlain(d) / vsPlain('transformers.js')).toFixed(2)}x`;
    md += '.\n';
  }
  if (llama) md += `\n${peerMarkdown(llama, o.maxTokens, promptIds.length)}`;
  if (server) {
    const r = (xs: number[]) => `${Math.min(...xs).toFixed(3)}–${Math.max(...xs).toFixed(3)} (median ${median(xs).toFixed(3)})`;
    md += `\nServer overhead (plain, streaming through HTTP/SSE vs the engine directly, the same prompts alternating request by request, ${server.ratios.length} passes): ` +
      `server ${server.serverTps.toFixed(1)} tok/s, engine ${server.engineTps.toFixed(1)} tok/s; server/engine per pass, whole requests ${r(server.ratios)}, after the first token ${r(server.decodeRatios)}; ` +
      `time to first token ${server.firstTokenMs.server.toFixed(1)} vs ${server.firstTokenMs.engine.toFixed(1)} ms.\n`;
  }
  if (kv) {
    md += `\n#### KV cache: fp32 vs SAQ (${kv.contextTokens} tokens of context, ${kv.generated} generated, greedy)\n\n`;
    const saq = kv.saq.config;
    md += `SAQ staircase: ${describeSaq(saq)} (keys per channel, values per token, value groups of ${saq.valueGroup}, fp16 statistics)`;
    if (saq.layers?.length) {
      md += ':\n\n' + mdTable(['layer', ...saq.layers.map((_, l) => String(l))], [
        ['keys', ...saq.layers.map((x) => (x.keys ?? saq.bits).join(' → '))],
        ['values', ...saq.layers.map((x) => (x.values ?? saq.bits).join(' → '))],
      ]) + '\n';
    } else md += '.\n\n';
    md += mdTable(['cache', 'KV bytes/token', 'KV bytes total', 'tokens/s (whole requests)', 'tokens/s (decoding)', 'held-out perplexity'], [
      ['fp32', kv.fp32.bytesPerToken.toFixed(0), kv.fp32.bytes, kv.fp32.tokensPerSecond.toFixed(1), kv.fp32.decodeTokensPerSecond.toFixed(1), kv.fp32.perplexity.toFixed(3)],
      ['saq', kv.saq.bytesPerToken.toFixed(0), kv.saq.bytes, kv.saq.tokensPerSecond.toFixed(1), kv.saq.decodeTokensPerSecond.toFixed(1), kv.saq.perplexity.toFixed(3)],
    ]);
    md += `\nSAQ / fp32 bytes: ${(kv.bytesRatio * 100).toFixed(1)}%; greedy agreement with fp32 over the first 256 generated tokens, free-running, mean of ${kv.prompts.length} prompts: ${(kv.greedyAgreement * 100).toFixed(1)}%` +
      ` (earliest divergence at ${kv.firstDivergence ?? 'none'}); teacher-forced top-1 agreement on the same text: ${(kv.teacherForcedAgreement * 100).toFixed(2)}% (mean |Δ log p| ${kv.meanAbsLogprobChange.toFixed(4)} nats);` +
      ` perplexity change ${(kv.perplexityChange * 100).toFixed(2)}%; 2,000-token sequences in ${kv.capacity2000.budgetBytes / 2 ** 20} MiB: fp32 ${kv.capacity2000.fp32}, SAQ ${kv.capacity2000.saq}.\n\n`;
    if (kvCheck) {
      const all = [...kv.prompts, ...kvCheck.prompts];
      md += `Check set (8 other prompts, offsets half a spacing on): free-running ${(kvCheck.greedyAgreement * 100).toFixed(1)}%, teacher-forced ${(kvCheck.teacherForcedAgreement * 100).toFixed(2)}%; ` +
        `all ${all.length} prompts: free-running ${((all.reduce((a, p) => a + p.freeRunning, 0) / all.length) * 100).toFixed(1)}%.\n\n`;
    }
    const promptRow = (set: string) => (p: (typeof kv.prompts)[number]) => [
      `${set}${p.offset}`, `${(p.freeRunning * 100).toFixed(1)}%`, p.firstDivergence ?? 'none', p.fp32MarginAtDivergence?.toFixed(4) ?? '', `${(p.teacherForced * 100).toFixed(1)}%`,
    ];
    md += mdTable(['prompt at token', 'free-running agreement', 'first divergence', 'fp32 top-1/top-2 margin there (nats)', 'teacher-forced agreement'],
      [...kv.prompts.map(promptRow('')), ...(kvCheck?.prompts ?? []).map(promptRow('check: '))]);
    md += `\nPer decode step at ${kv.stepCost.past} tokens of past (batch 1): building the whole past K/V ${kv.stepCost.gatherFp32Ms.toFixed(2)} ms (fp32) vs ${kv.stepCost.gatherSaqMs.toFixed(2)} ms (SAQ, dequantizing), forward ${kv.stepCost.forwardMs.toFixed(2)} ms; decode steps copy only new and rewritten rows into a kept past (src/kvcache/batch-past.ts).\n`;
    const b = kv.underBudget;
    md += `\nUnder a KV budget: ${b.requests} requests of ${b.promptTokens} + ${b.generated} tokens at once, ${b.budgetBytes / 2 ** 20} MiB: fp32 ${b.fp32.tokensPerSecond.map((x) => x.toFixed(0)).join(', ')} tok/s (at most ${b.fp32.mostRunning} decoding at once, ${b.fp32.retries} retried after a 429), ` +
      `SAQ ${b.saq.tokensPerSecond.map((x) => x.toFixed(0)).join(', ')} tok/s (at most ${b.saq.mostRunning}, ${b.saq.retries} retried); SAQ/fp32 per alternation ${b.saq.tokensPerSecond.map((x, i) => (x / b.fp32.tokensPerSecond[i]).toFixed(2)).join(', ')}.\n`;
  }
  const charts: Chart[] = [
    {
      title: 'Speedup over plain decoding by category (batch 1, greedy)',
      type: 'bar',
      labels: [...categories, 'overall'],
      series: methods.filter((m) => m !== 'plain').map((m) => ({ label: m, data: [...categories, 'overall'].map((c) => (results[m][c] as { speedup: number }).speedup) })),
      yLabel: 'x plain',
    },
    {
      title: 'Mean acceptance length (tokens per target forward, bonus included)',
      type: 'bar',
      labels: [...categories, 'overall'],
      series: drafters.map((m) => ({ label: m, data: [...categories, 'overall'].map((c) => (results[m][c] as { meanAcceptanceLength: number }).meanAcceptanceLength) })),
      yLabel: 'tokens / step',
    },
    {
      // a step's parts divided by the tokens it emitted: the bars' heights compare like 1 / tokens/s
      title: 'Where the time per generated token goes (engine timing, all prompts)',
      type: 'bar',
      labels: steps.map(([m]) => m),
      series: (
        [['target forward', 'forwardMs'], ['drafting', 'draftMs'], ['other', 'otherMs']] as const
      ).map(([label, k]) => ({ label, data: steps.map(([, t]) => t[k] / t.tokensPerStep) })),
      yLabel: 'ms per token',
      stacked: true,
    },
  ];
  if (llama) charts.push(...peerCharts(llama));
  const files = writeReport(o.out, 'bench', { date, machine, options: o, results, identity: Object.fromEntries(checked), server, llama, kv, kvCheck }, md, charts);
  console.log('\n' + md);
  console.log(`wrote ${files.join(', ')}`);
}

type StepTiming = ReturnType<typeof stepTiming>;

/** Per decode step, from the engine's own timing (every timed run of the method, all prompts). */
function stepTiming(c: Cell) {
  const n = c.timedSteps;
  const wallMs = (c.wallSeconds * 1000) / n;
  return {
    wallMs, draftMs: c.draftMs / n, forwardMs: c.forwardMs / n, otherMs: wallMs - (c.draftMs + c.forwardMs) / n,
    verifiedTokens: c.verifiedTokens / n, tokensPerStep: (c.tokens - c.requests) / n, msPerToken: (c.wallSeconds * 1000) / (c.tokens - c.requests),
  };
}

/** Where a decode step's time goes, per method: the breakdown a speedup decomposes into. */
function stepBreakdown(steps: readonly (readonly [string, StepTiming])[]): string {
  const base = steps.find(([m]) => m === 'plain')?.[1];
  const rows = steps.map(([m, t]) => [
    m, t.wallMs.toFixed(2), t.draftMs.toFixed(2), t.forwardMs.toFixed(2), t.otherMs.toFixed(2), t.verifiedTokens.toFixed(2),
    base ? `${(t.forwardMs / base.forwardMs).toFixed(2)}x` : '-', t.tokensPerStep.toFixed(2), t.msPerToken.toFixed(2),
  ]);
  return `Where a decode step's time went (every timed run, all prompts; the engine's own timing, so these are wall times on this VM, not the paired ratios above; "other" is the rest of the step: verification logic, sampling, KV bookkeeping, messages, and each request's prefill and set-up spread over its steps):\n\n` +
    mdTable(['method', 'ms per step', 'drafting ms', 'target forward ms', 'other ms', 'tokens verified', 'forward vs plain', 'tokens per step', 'ms per token'], rows) + '\n';
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
