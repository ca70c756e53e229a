// npm run bench:projection — speculation past specserve-tiny, on paper: what verifying k tokens and
// calling a drafter cost on this CPU for Llama-shaped targets of ~100 M and ~450 M parameters
// (random weights from models/tooling/synthetic.py: timing only), and each drafter's speedup
// projected from specserve-tiny's measured tokens per step (bench/results/bench.json).
//
//   speedup(d) = tokens per step(d) / (cost of a step verifying T(d) rows + drafting(d)),
//   both in units of a one-token step of the same target.
//
// T(d) and tokens per step come from the tiny model's bench run (a drafter proposes the same trees
// whatever target verifies them); the drafting cost is timed here on graphs of the large target's
// width: Medusa = 4 heads (x + SiLU(x W), projection onto 2,048 draft tokens) once per step; Hydra
// = the same heads over a 2x-wide input, called once per tree depth (four); Kangaroo = the target's first
// layer plus an adapter of about a third of a layer, per drafted token; Chimera = one layer plus
// the heads; prompt lookup and ADED = their tiny-model drafting ms (JavaScript, independent of the
// target). Writes bench/results/projection.{json,md,html}.
import { Command } from 'commander';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import ort from 'onnxruntime-node';
import { pastFeeds, rowFeeds } from './feeds.ts';
import { mdTable, median, writeReport } from './report.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const o = new Command()
  .name('bench:projection')
  .option('--dir <dir>', 'graphs written by models/tooling/synthetic.py', path.join(ROOT, 'models', '.work', 'synthetic'))
  .option('--bench <file>', "the tiny model's bench run whose tokens per step are projected: every drafter at its full budget (npm run bench -- --draft-policy static --out bench/results/static ...)", path.join(ROOT, 'bench', 'results', 'static', 'bench.json'))
  .option('--past <n>', 'cached rows during the timed steps', (v) => parseInt(v, 10), 256)
  .option('--threads <list>', 'intra-op thread counts to time', (v) => v.split(',').map(Number), [1, 2])
  .option('--rounds <n>', 'timing rounds (median)', (v) => parseInt(v, 10), 5)
  .option('--out <dir>', 'results folder', path.join(ROOT, 'bench', 'results'))
  .parse()
  .opts();

const SIZES = ['100m', '500m'];
const TINY = path.join(ROOT, 'models', 'specserve-tiny');
const DTYPES: [string, string][] = [['fp32', ''], ['int8', '_int8']];
const ROWS = [1, 2, 3, 4, 6, 9];

interface Shape { hidden: number; layers: number; kv: number; hd: number; params: number }

function shapeOf(size: string): Shape {
  const c = JSON.parse(readFileSync(path.join(o.dir, size, 'config.json'), 'utf8'));
  return { hidden: c.hidden_size, layers: c.num_hidden_layers, kv: c.num_key_value_heads, hd: c.head_dim, params: c.parameters };
}

/** A step of T new tokens after P cached rows, with past buffers for the first `layers` layers. */
function targetFeeds(s: Shape, layers: number, T: number, P: number): Record<string, ort.Tensor> {
  return {
    input_ids: new ort.Tensor('int64', BigInt64Array.from({ length: T }, (_, i) => BigInt(100 + i)), [1, T]),
    ...rowFeeds(T, P),
    ...pastFeeds({ numKvHeads: s.kv, headDim: s.hd }, 0, layers, P + T, 0.01),
  };
}

async function timeRuns(session: ort.InferenceSession, feeds: Record<string, ort.Tensor>, rounds: number): Promise<number> {
  await session.run(feeds);
  const ms: number[] = [];
  for (let r = 0; r < rounds; r++) {
    const t0 = performance.now();
    await session.run(feeds);
    ms.push(performance.now() - t0);
  }
  return median(ms);
}

/** The tiny model's bench: per drafter, tokens per step, rows verified per step, drafting ms. */
function tinySteps(): Record<string, { tokensPerStep: number; verified: number; draftMs: number; forwardMs: number }> {
  const b = JSON.parse(readFileSync(o.bench, 'utf8'));
  const out: Record<string, { tokensPerStep: number; verified: number; draftMs: number; forwardMs: number }> = {};
  for (const [m, r] of Object.entries(b.results as Record<string, { overall: { step: { tokensPerStep: number; verifiedTokens: number; draftMs: number; forwardMs: number } | null } }>)) {
    const st = r.overall.step;
    if (st) out[m] = { tokensPerStep: st.tokensPerStep, verified: st.verifiedTokens, draftMs: st.draftMs, forwardMs: st.forwardMs };
  }
  return out;
}

async function main() {
  for (const size of SIZES) if (!existsSync(path.join(o.dir, size, 'config.json'))) throw new Error(`${path.join(o.dir, size)}: run /usr/bin/python3 models/tooling/synthetic.py ${o.dir} first`);
  const tiny = tinySteps();
  const rows: (string | number)[][] = [];
  // specserve-tiny itself, for scale (its drafters are timed by npm run bench)
  {
    const c = JSON.parse(readFileSync(path.join(TINY, 'config.json'), 'utf8'));
    const s: Shape = { hidden: c.hidden_size, layers: c.num_hidden_layers, kv: c.num_key_value_heads, hd: c.head_dim, params: 0 };
    for (const [dtype, sfx] of DTYPES) {
      const sess = await ort.InferenceSession.create(path.join(TINY, 'onnx', `decoder_spec${sfx}.onnx`), { intraOpNumThreads: 1, extra: { session: { intra_op: { allow_spinning: '0' } } } });
      const step: Record<number, number> = {};
      for (const T of ROWS) step[T] = await timeRuns(sess, targetFeeds(s, s.layers, T, o.past), o.rounds * 20);
      await sess.release();
      rows.push(['specserve-tiny', dtype, 1, step[1].toFixed(2), ...ROWS.slice(1).map((T) => (step[T] / step[1]).toFixed(2)), '-', '-', '-']);
    }
  }
  const projRows: (string | number)[][] = [];
  const data: Record<string, unknown> = {};
  for (const size of SIZES) {
    const s = shapeOf(size);
    for (const [dtype, sfx] of DTYPES) {
      for (const threads of o.threads) {
        const opts = { intraOpNumThreads: threads, interOpNumThreads: 1, extra: { session: { intra_op: { allow_spinning: '0' } } } };
        const file = (n: string) => path.join(o.dir, size, `${n}${sfx}.onnx`);
        const target = await ort.InferenceSession.create(file('decoder_spec'), opts);
        const step: Record<number, number> = {};
        for (const T of ROWS) step[T] = await timeRuns(target, targetFeeds(s, s.layers, T, o.past), o.rounds);
        await target.release();
        const layer = await ort.InferenceSession.create(file('layer1'), opts);
        const layerMs = await timeRuns(layer, targetFeeds(s, 1, 1, o.past), o.rounds);
        await layer.release();
        const heads = async (n: string, width: number, rowsIn: number) => {
          const sess = await ort.InferenceSession.create(file(n), opts);
          const ms = await timeRuns(sess, { x: new ort.Tensor('float32', new Float32Array(rowsIn * width).fill(0.01), [1, rowsIn, width]) }, o.rounds);
          await sess.release();
          return ms;
        };
        const medusaMs = await heads('heads', s.hidden, 1);
        const hydraMs = await heads('heads2x', 2 * s.hidden, 4); // a tree depth's frontier rows
        const one = step[1];
        const key = `${size} ${dtype} ${threads}t`;
        data[key] = { shape: s, stepMs: step, layerMs, medusaMs, hydraMs };
        rows.push([size, dtype, threads, one.toFixed(1), ...ROWS.slice(1).map((T) => (step[T] / one).toFixed(2)), (layerMs / one).toFixed(3), (medusaMs / one).toFixed(3), (hydraMs / one).toFixed(3)]);
        // cost of verifying T rows, interpolated between the timed row counts
        const verify = (T: number) => {
          const lo = [...ROWS].reverse().find((r) => r <= T) ?? 1;
          const hi = ROWS.find((r) => r >= T) ?? ROWS[ROWS.length - 1];
          return hi === lo ? step[lo] / one : (step[lo] + ((step[hi] - step[lo]) * (T - lo)) / (hi - lo)) / one;
        };
        const drafting: Record<string, (t: (typeof tiny)[string]) => number> = {
          'prompt-lookup': (t) => t.draftMs / one,
          aded: (t) => t.draftMs / one,
          medusa: () => medusaMs / one,
          hydra: () => (4 * hydraMs) / one, // one call per tree depth, four depths
          kangaroo: (t) => (t.verified - 1) * (layerMs * (1 + 1 / 3)) / one,
          chimera: () => (layerMs + medusaMs) / one,
        };
        const proj: Record<string, number> = {};
        for (const [d, cost] of Object.entries(drafting)) {
          const t = tiny[d];
          if (!t) continue;
          proj[d] = t.tokensPerStep / (verify(t.verified) + cost(t));
        }
        (data[key] as Record<string, unknown>).projected = proj;
        projRows.push([size, dtype, threads, ...Object.keys(drafting).map((d) => (proj[d] === undefined ? '-' : `${proj[d].toFixed(2)}x`))]);
        console.log(`${key}: step ${one.toFixed(1)} ms, 9 rows ${(step[9] / one).toFixed(2)}x, projected ${Object.entries(proj).map(([d, x]) => `${d} ${x.toFixed(2)}x`).join(', ')}`);
      }
    }
  }
  const date = new Date().toISOString().slice(0, 10);
  const tinyRow = Object.entries(tiny).filter(([m]) => m !== 'plain').map(([m, t]) => `${m} ${t.tokensPerStep.toFixed(2)} tokens per step, ${t.verified.toFixed(2)} rows verified`).join('; ');
  const md = [
    `# Projection: speculation on larger Llama-shaped targets (${date})`,
    '',
    `Command: \`npm run bench:projection\` after \`/usr/bin/python3 models/tooling/synthetic.py models/.work/synthetic\`. Random weights (timing only), ${o.past} cached rows, batch 1, median of ${o.rounds} runs. **A projection**: tokens per step are specserve-tiny's (${path.relative(ROOT, o.bench)}: ${tinyRow}); a larger target trained on real data would accept differently.`,
    '',
    '## Measured: a step verifying T rows, and a drafter call, in one-token steps of the same target',
    '',
    mdTable(['target', 'weights', 'threads', '1-token step (ms)', ...ROWS.slice(1).map((T) => `${T} rows`), 'one layer', 'Medusa heads', 'Hydra heads (4 rows)'], rows),
    '',
    '## Projected speedup over plain decoding',
    '',
    mdTable(['target', 'weights', 'threads', 'prompt lookup', 'ADED', 'Medusa', 'Hydra', 'Kangaroo', 'Chimera'], projRows),
    '',
  ].join('\n');
  const files = writeReport(o.out, 'projection', { date, options: o, data }, md, [{
    title: 'Cost of verifying T rows, in one-token steps (int8, 1 thread)',
    type: 'line',
    labels: ROWS.map(String),
    series: SIZES.map((size) => {
      const d = data[`${size} int8 1t`] as { stepMs: Record<number, number> } | undefined;
      return { label: size, data: ROWS.map((T) => (d ? d.stepMs[T] / d.stepMs[1] : null)) };
    }),
    yLabel: 'x one-token step',
  }]);
  console.log(md);
  console.log(`wrote ${files.join(', ')}`);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
