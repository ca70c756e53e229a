// node --import tsx bench/op-profile.ts [--dtype int8] [--rows 1,9] [--past 128] — where a target
// step's time goes, by kind of kernel: onnxruntime's own profiler over many steps of the model's
// speculative graph (1 thread), summed per op type. The profiler adds a few microseconds to every
// kernel, so small kernels look dearer than they are; compare shares, and take absolute step times
// from the benchmarks.
import { Command } from 'commander';
import { readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import ort from 'onnxruntime-node';
import { loadModelConfig, resolveVariant, type WeightDtype } from '../src/model/config.ts';
import { rowFeeds, pastFeeds } from './feeds.ts';
import { mdTable } from './report.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const o = new Command()
  .option('--model <dir>', 'model folder', path.join(ROOT, 'models', 'specserve-tiny'))
  .option('--dtype <name>', 'weight format', 'int8')
  .option('--rows <list>', 'new rows per step', (v) => v.split(',').map(Number), [1, 9])
  .option('--past <n>', 'cached rows', (v) => parseInt(v, 10), 128)
  .option('--steps <n>', 'profiled steps', (v) => parseInt(v, 10), 300)
  .parse()
  .opts();

const cfg = loadModelConfig(o.model);
const file = resolveVariant(cfg, o.dtype as WeightDtype, 'cpu').onnxPath;
const table: (string | number)[][] = [];
for (const T of o.rows as number[]) {
  const prefix = path.join(os.tmpdir(), `specserve-op-profile-${process.pid}-${T}`);
  const s = await ort.InferenceSession.create(file, {
    intraOpNumThreads: 1, enableProfiling: true, profileFilePrefix: prefix, extra: { session: { intra_op: { allow_spinning: '0' } } },
  });
  const feeds = { input_ids: new ort.Tensor('int64', new BigInt64Array(T).fill(5n), [1, T]), ...rowFeeds(T, o.past), ...pastFeeds(cfg, 0, cfg.numLayers, o.past + T, 0.01) };
  for (let i = 0; i < o.steps; i++) await s.run(feeds);
  s.endProfiling();
  await s.release();
  const dir = path.dirname(prefix);
  const name = (await import('node:fs')).readdirSync(dir).find((f) => f.startsWith(path.basename(prefix)));
  if (!name) throw new Error('onnxruntime wrote no profile');
  const events = JSON.parse(readFileSync(path.join(dir, name), 'utf8')) as { cat: string; name: string; dur: number; args: { op_name?: string } }[];
  rmSync(path.join(dir, name));
  const byOp = new Map<string, { us: number; n: number }>();
  let runs = 0;
  let runUs = 0;
  for (const e of events) {
    if (e.cat === 'Session' && e.name === 'model_run') { runs++; runUs += e.dur; }
    if (e.cat === 'Node' && e.name.endsWith('_kernel_time') && e.args.op_name) {
      const x = byOp.get(e.args.op_name) ?? { us: 0, n: 0 };
      x.us += e.dur;
      x.n++;
      byOp.set(e.args.op_name, x);
    }
  }
  const kernels = [...byOp.values()].reduce((a, x) => a + x.us, 0);
  for (const [op, x] of [...byOp.entries()].sort((a, b) => b[1].us - a[1].us)) {
    table.push([T, op, x.n / runs, (x.us / runs).toFixed(1), `${((100 * x.us) / kernels).toFixed(1)}%`]);
  }
  table.push([T, '(all kernels)', [...byOp.values()].reduce((a, x) => a + x.n, 0) / runs, (kernels / runs).toFixed(1), `of ${(runUs / runs).toFixed(1)} us per run with the profiler on`]);
}
console.log(`Kernel time per step by op type: ${path.relative(ROOT, file)}, ${o.past} cached rows, 1 thread, ${o.steps} profiled steps (${new Date().toISOString().slice(0, 10)})\n`);
console.log(mdTable(['rows', 'op', 'kernels per step', 'us per step', 'share of kernel time'], table));
