// node --import tsx bench/head-cost.ts [heads folder ...] — what Hydra's four head calls cost in
// the decode loop: each round runs a target step (1 root + 8 draft rows, 200 rows of past, two
// threads without spinning, as the engine does) and then the four head calls of a draft (1, 4, 4, 4
// frontier rows), for every heads folder in turn, so the folders are compared under the same
// cache pressure and VM phase. Alone in a tight loop a head call looks ~3x cheaper: its weights stay
// cached, which they do not next to the target's. Default: the committed heads.
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import ort from 'onnxruntime-node';
import { loadModelConfig } from '../src/model/config.ts';
import { stepFeeds } from './feeds.ts';

const model = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'models', 'specserve-tiny');
const folders = process.argv.length > 2 ? process.argv.slice(2) : [path.join(model, 'heads')];
const target = await ort.InferenceSession.create(path.join(model, 'onnx', 'decoder_spec.onnx'), {
  intraOpNumThreads: 2, interOpNumThreads: 1, graphOptimizationLevel: 'all', extra: { session: { intra_op: { allow_spinning: '0' } } },
});
const cfg = loadModelConfig(model);
const P = 200, D = cfg.hiddenSize, T = 9, ROUNDS = 200, WARM = 10;
const feeds = stepFeeds(cfg, T, P, 0.01);
const heads: ort.InferenceSession[][] = [];
for (const f of folders) {
  const list = [];
  for (let d = 0; d < 4; d++) list.push(await ort.InferenceSession.create(path.join(f, `hydra_head${d}.onnx`), { intraOpNumThreads: 1, interOpNumThreads: 1, graphOptimizationLevel: 'all' }));
  heads.push(list);
}
const headFeeds = (d: number, n: number) => ({
  hidden: new ort.Tensor('float32', Float32Array.from({ length: n * D }, () => Math.random() - 0.5), [n, D]),
  path_ids: new ort.Tensor('int64', BigInt64Array.from({ length: n * (d + 1) }, (_, i) => BigInt((i * 37) % 2048)), [n, d + 1]),
});
const headMs = folders.map(() => 0);
let targetMs = 0;
for (let r = 0; r < ROUNDS + WARM; r++) {
  for (let i = 0; i < folders.length; i++) {
    const t0 = performance.now();
    await target.run(feeds);
    const t1 = performance.now();
    for (let d = 0; d < 4; d++) await heads[i][d].run(headFeeds(d, d === 0 ? 1 : 4));
    if (r >= WARM) {
      targetMs += t1 - t0;
      headMs[i] += performance.now() - t1;
    }
  }
}
console.log(`target step (${T} rows): ${(targetMs / ROUNDS / folders.length).toFixed(2)} ms`);
folders.forEach((f, i) => console.log(`4 Hydra head calls after it, ${f}: ${(headMs[i] / ROUNDS).toFixed(2)} ms`));
