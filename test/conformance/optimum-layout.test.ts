// The engine also serves the standard Hugging Face Optimum decoder layout (what users bring from
// onnx-community): same weights, same greedy output; speculation limited to chain drafts.
import assert from 'node:assert/strict';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import type { LocalEngine } from '../../src/engine/index.ts';
import { generate, PROMPTS, request, startEngine } from '../helpers/engine.ts';
import { DEFAULT_MODEL_DIR } from '../helpers/model.ts';

let dir: string;
let optimum: LocalEngine;
let spec: LocalEngine;

before(async () => {
  // a folder with only what an Optimum export has: no speculative graph named in config.json
  dir = mkdtempSync(path.join(os.tmpdir(), 'specserve-optimum-'));
  const cfg = JSON.parse(readFileSync(path.join(DEFAULT_MODEL_DIR, 'config.json'), 'utf8'));
  delete cfg.specserve;
  writeFileSync(path.join(dir, 'config.json'), JSON.stringify(cfg));
  for (const f of ['generation_config.json', 'tokenizer.json', 'tokenizer_config.json']) copyFileSync(path.join(DEFAULT_MODEL_DIR, f), path.join(dir, f));
  mkdirSync(path.join(dir, 'onnx'));
  symlinkSync(path.join(DEFAULT_MODEL_DIR, 'onnx', 'model.onnx'), path.join(dir, 'onnx', 'model.onnx'));
  symlinkSync(path.join(DEFAULT_MODEL_DIR, 'aded'), path.join(dir, 'aded')); // present, but needs a tree mask
  optimum = await startEngine({ modelDir: dir });
  spec = await startEngine();
});

after(async () => {
  await optimum?.close();
  await spec?.close();
  rmSync(dir, { recursive: true, force: true });
});

test('layout is detected from the graph and tree-only drafters say why they are unavailable', () => {
  assert.equal(optimum.info.layout, 'optimum');
  assert.equal(spec.info.layout, 'speculative');
  const aded = optimum.drafters().find((d) => d.name === 'aded')!;
  assert.equal(aded.available, false);
  assert.match(aded.reason!, /tree mask|speculative ONNX layout/);
  assert.ok(optimum.drafters().find((d) => d.name === 'prompt-lookup')!.available);
});

test('greedy output equals the speculative layout, plain and with chain drafts', async () => {
  for (const prompt of [PROMPTS.code[0], PROMPTS.copy[0], PROMPTS.open[1]]) {
    const a = await generate(spec, request(prompt, { maxTokens: 40 }));
    const b = await generate(optimum, request(prompt, { maxTokens: 40 }));
    const c = await generate(optimum, request(prompt, { maxTokens: 40, speculative: { drafter: 'prompt-lookup' } }));
    assert.deepEqual(b.tokenIds, a.tokenIds);
    assert.deepEqual(c.tokenIds, a.tokenIds);
  }
});

test('a drafter the layout cannot run falls back to plain decoding, never a wrong token', async () => {
  const a = await generate(optimum, request(PROMPTS.code[1], { maxTokens: 24 }));
  const b = await generate(optimum, request(PROMPTS.code[1], { maxTokens: 24, speculative: { drafter: 'aded' } }));
  assert.deepEqual(b.tokenIds, a.tokenIds);
  assert.match(b.speculation!.fallback!, /not available/);
  assert.equal(b.speculation!.draftTokens, 0);
  // a name nobody knows is still a client error
  await assert.rejects(generate(optimum, request('x', { speculative: { drafter: 'nope' } })), /Unknown drafter/);
});
