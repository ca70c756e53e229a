// The inference worker: owns the ONNX session, the KV cache, the drafters and the scheduler.
// onnxruntime-node's run() blocks its thread, so all of this lives off the main event loop; the
// main thread only sees token ids.
import { parentPort, workerData } from 'node:worker_threads';
import { createDrafters } from '../drafters/index.ts';
import { kangarooDeepGraph } from '../drafters/kangaroo/index.ts';
import { PagedKvCache, SAQ_DEFAULTS } from '../kvcache/paged.ts';
import { LanternNeighbours } from './lantern.ts';
import { loadModelConfig } from '../model/config.ts';
import { TextCodec } from '../model/text.ts';
import type { FromWorker, ToWorker, WorkerInit } from './protocol.ts';
import { Runner } from './runner.ts';
import { Scheduler } from './scheduler.ts';
import { stopStrings } from './stop.ts';

const port = parentPort!;
const init = workerData as WorkerInit;
const send = (m: FromWorker) => port.postMessage(m);

// The scheduler's messages are queued and posted together. A post wakes the main thread (a system
// call, tens of microseconds here, and one socket write per stream on the other side), so tokens
// are held back until COALESCE_MS has passed since the last post: at batch 1 a step takes about
// half a millisecond, so a post carries two steps' tokens; under load a step takes longer than the
// window and every step is posted as before. Whatever ends a request, and anything when the worker
// goes idle, is posted at once.
const COALESCE_MS = 1;
let queued: FromWorker[] = [];
let lastPost = 0;
const flush = () => {
  if (queued.length === 1) send(queued[0]);
  else if (queued.length > 1) send({ type: 'batch', messages: queued });
  queued = [];
  lastPost = performance.now();
};
const emit = (m: FromWorker) => {
  queued.push(m);
  if (m.type !== 'tokens' && m.type !== 'spec_step') flush();
};

async function main() {
  const cfg = loadModelConfig(init.modelDir);
  const runner = await Runner.create(cfg, {
    provider: init.provider,
    dtype: init.dtype,
    threads: init.threads,
    spinThreads: init.spinThreads,
    log: (message) => send({ type: 'log', level: 'info', message }),
  });
  const kv = new PagedKvCache({ layers: cfg.numLayers, kvHeads: cfg.numKvHeads, headDim: cfg.headDim }, init.kvCacheBytes, 16, init.kvCache === 'saq' ? SAQ_DEFAULTS : null);
  const dtype = runner.variant.dtype;
  const split = kangarooDeepGraph(cfg.dir, dtype);
  const deepVerify = split ? await runner.loadDeep(split.file, split.fromLayer) : false;
  const { drafters, info } = await createDrafters({
    modelDir: cfg.dir, vocabSize: cfg.vocabSize, treeMask: runner.layout === 'speculative', dtype,
    shallowLayers: cfg.shallowLayers, contextLength: cfg.contextLength, deepVerify, kangarooThreshold: init.kangarooThreshold,
  });
  const sched = new Scheduler({
    model: cfg, target: runner, kv, drafters, options: init, send: emit,
    lantern: LanternNeighbours.load(cfg.dir), stops: stopStrings(new TextCodec(cfg.dir)),
  });
  let wake: (() => void) | null = null;
  let stopping = false;
  port.on('message', (m: ToWorker) => {
    switch (m.type) {
      case 'submit':
        sched.submit(m.req);
        break;
      case 'cancel':
        sched.cancel(m.id);
        break;
      case 'shutdown':
        stopping = true;
        break;
      default:
        // the two sides disagree on the protocol: a bug, so the worker dies and the engine restarts it
        throw new Error(`unknown message from the main thread: ${JSON.stringify(m satisfies never)}`);
    }
    wake?.();
  });
  send({ type: 'ready', info: { provider: runner.provider, dtype, layout: runner.layout, drafters: info } });
  let lastLoad = 0;
  while (!stopping) {
    const worked = await sched.step();
    if (queued.length && (!worked || performance.now() - lastPost >= COALESCE_MS)) flush();
    const now = Date.now();
    if (now - lastLoad > 250 || !worked) {
      send({ type: 'load', ...sched.load, kv: kv.stats(), draftCaps: sched.draftCaps.snapshot() });
      lastLoad = now;
    }
    if (!worked) await new Promise<void>((r) => (wake = r));
    else await new Promise<void>((r) => setImmediate(r)); // let submit/cancel messages in
    wake = null;
  }
  sched.failAll('server shutting down');
  flush();
  await runner.release();
  process.exit(0);
}

main().catch((err) => {
  send({ type: 'fatal', message: (err as Error).stack ?? String(err) });
  process.exit(1);
});
