// npm run bench:ab -- --base DIR — this checkout against another (a refactor's parent commit, say:
// `git worktree add /tmp/base HEAD~1`), side by side in one process: both engines load, and every
// prompt runs on one then the other, alternating which goes first, for plain decoding and each
// drafter. Reports tokens/s per checkout, each checkout's speedup over its own plain decoding, the
// ratio between checkouts, and whether their greedy outputs are identical.
import { Command } from 'commander';
import cliProgress from 'cli-progress';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import type { Engine, TextRequest } from '../src/engine/types.ts';
import { PROMPTS } from './prompts.ts';
import { mdTable, median, writeReport } from './report.ts';
import { greedyRequest } from './request.ts';

const ROOT = path.resolve(import.meta.dirname, '..');

const o = new Command()
  .requiredOption('--base <dir>', 'the other checkout (its node_modules may be a link to this one)')
  .option('--model <dir>', 'model folder (both checkouts serve the same files)', path.join(ROOT, 'models', 'specserve-tiny'))
  .option('--methods <list>', 'plain and drafters', 'plain,prompt-lookup,aded,medusa,hydra,kangaroo,chimera')
  .option('--max-tokens <n>', 'tokens per prompt', (v) => parseInt(v, 10), 128)
  .option('--reps <n>', 'repetitions of every prompt', (v) => parseInt(v, 10), 2)
  .option('--draft-policy <name>', 'goodput or static', 'goodput')
  .option('--kv-cache <name>', 'fp32 or saq', 'fp32')
  .option('--out <dir>', 'results folder', path.join(ROOT, 'bench', 'results'))
  .parse()
  .opts<{ base: string; model: string; methods: string; maxTokens: number; reps: number; draftPolicy: string; kvCache: string; out: string }>();

type Create = (opts: Record<string, unknown>) => Promise<Engine>;
async function load(root: string): Promise<Engine> {
  const mod = (await import(pathToFileURL(path.join(root, 'src', 'engine', 'index.ts')).href)) as { createEngine: Create };
  return mod.createEngine({ modelDir: o.model, provider: 'cpu', draftPolicy: o.draftPolicy, kvCache: o.kvCache });
}

async function run(engine: Engine, req: TextRequest): Promise<{ seconds: number; ids: number[] }> {
  const ids: number[] = [];
  const t0 = performance.now();
  for await (const ev of engine.generateText(req)) if (ev.type === 'text') ids.push(...ev.tokenIds);
  return { seconds: (performance.now() - t0) / 1000, ids };
}

const sides = { base: await load(path.resolve(o.base)), head: await load(ROOT) } as const;
type Side = keyof typeof sides;
const methods = o.methods.split(',');
const prompts = Object.values(PROMPTS).flat();
const seconds: Record<Side, Record<string, number[]>> = { base: {}, head: {} };
const tokens: Record<string, number> = {};
let identical = 0;
let compared = 0;
const differing: string[] = [];

const bar = new cliProgress.SingleBar({ format: 'bench:ab {bar} {value}/{total} runs | ETA {eta_formatted}' }, cliProgress.Presets.shades_classic);
bar.start(o.reps * prompts.length * methods.length * 2, 0);
let turn = 0;
for (let rep = 0; rep < o.reps; rep++) {
  for (const [p, prompt] of prompts.entries()) {
    for (const m of methods) {
      const req = greedyRequest(prompt, { maxTokens: o.maxTokens, speculative: { drafter: m === 'plain' ? 'none' : m } });
      // alternate which checkout goes first, so drift and warm caches fall on both
      const order: Side[] = turn++ % 2 === 0 ? ['base', 'head'] : ['head', 'base'];
      const out = {} as Record<Side, number[]>;
      for (const side of order) {
        const r = await run(sides[side], req);
        (seconds[side][m] ??= []).push(r.seconds);
        out[side] = r.ids;
        bar.increment();
      }
      tokens[m] = (tokens[m] ?? 0) + out.head.length;
      compared++;
      if (out.base.join() === out.head.join()) identical++;
      else differing.push(`${m} on prompt ${p}`);
    }
  }
}
bar.stop();
await Promise.all(Object.values(sides).map((e) => e.close()));

const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0);
const tps = (side: Side, m: string) => tokens[m] / sum(seconds[side][m]); // max_tokens with EOS ignored: equal counts on both sides
const rows = methods.map((m) => {
  const speedup = (side: Side) => tps(side, m) / tps(side, 'plain');
  // per-run ratio head/base on the same prompt, median over runs
  const pairRatio = median(seconds.base[m].map((s, i) => s / seconds.head[m][i]));
  return { method: m, base: tps('base', m), head: tps('head', m), speedupBase: speedup('base'), speedupHead: speedup('head'), headOverBase: pairRatio };
});
const date = new Date().toISOString().slice(0, 10);
const md = [
  `# bench:ab (${date})`,
  '',
  `\`npm run bench:ab -- --base ${o.base} --reps ${o.reps} --max-tokens ${o.maxTokens} --draft-policy ${o.draftPolicy} --kv-cache ${o.kvCache}\``,
  '',
  mdTable(
    ['method', 'base tok/s', 'head tok/s', 'base speedup', 'head speedup', 'head/base (median per prompt)'],
    rows.map((r) => [r.method, r.base.toFixed(1), r.head.toFixed(1), `${r.speedupBase.toFixed(2)}x`, `${r.speedupHead.toFixed(2)}x`, r.headOverBase.toFixed(3)]),
  ),
  '',
  `Greedy outputs identical between the checkouts: ${identical}/${compared}${differing.length ? ` (differ: ${differing.join(', ')})` : ''}.`,
].join('\n');
console.log(md);
const chart = {
  title: 'tokens/s, alternating prompt by prompt',
  type: 'bar' as const,
  yLabel: 'tokens/s',
  labels: methods,
  series: (['base', 'head'] as const).map((side) => ({ label: side, data: rows.map((r) => r[side]) })),
};
writeReport(o.out, 'ab', { date, options: o, rows, identical, compared, differing }, md, [chart]);
