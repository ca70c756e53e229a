// The committed default model files: ONNX vs the torch reference written at build time, the two
// exports against each other, prefill+decode vs one full forward, tree mask vs per-branch decoding.
import assert from 'node:assert/strict';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { checkModel } from '../../models/tooling/check.ts';
import { loadModelConfig, resolveVariant, WEIGHT_DTYPES } from '../../src/model/config.ts';
import { DEFAULT_MODEL_DIR } from '../helpers/model.ts';

for (const dtype of WEIGHT_DTYPES) {
  test(`committed ${dtype} graphs pass the build checks`, async () => {
    const results = await checkModel(DEFAULT_MODEL_DIR, dtype);
    assert.ok(results.length >= (dtype === 'fp32' ? 7 : 3));
    for (const r of results) assert.ok(r.ok, `${r.name}: max abs err ${r.maxAbsErr} > ${r.tolerance}`);
  });
}

test('the folder has everything npm start and the drafters need', () => {
  for (const f of ['config.json', 'generation_config.json', 'tokenizer.json', 'tokenizer_config.json', 'onnx/model.onnx', 'onnx/decoder_spec.onnx', 'onnx/model_int8.onnx', 'onnx/decoder_spec_int8.onnx', 'onnx/model_q4.onnx', 'onnx/decoder_spec_q4.onnx', 'aded/trigram.bin']) {
    assert.ok(existsSync(path.join(DEFAULT_MODEL_DIR, f)), `missing ${f}`);
  }
  const cfg = JSON.parse(readFileSync(path.join(DEFAULT_MODEL_DIR, 'config.json'), 'utf8'));
  assert.equal(cfg.model_type, 'llama');
  assert.ok(cfg.num_hidden_layers >= 6, 'deep enough for shallow-exit drafters');
});

test('a speculative export with the old token-major past is refused with what to do', () => {
  // a copy of the default folder's config whose speculative graph predates the head-major past
  const dir = mkdtempSync(path.join(os.tmpdir(), 'specserve-old-export-'));
  try {
    const cfg = JSON.parse(readFileSync(path.join(DEFAULT_MODEL_DIR, 'config.json'), 'utf8'));
    delete cfg.specserve.past_layout;
    writeFileSync(path.join(dir, 'config.json'), JSON.stringify(cfg));
    mkdirSync(path.join(dir, 'onnx'));
    copyFileSync(path.join(DEFAULT_MODEL_DIR, 'onnx', 'decoder_spec.onnx'), path.join(dir, 'onnx', 'decoder_spec.onnx'));
    assert.throws(() => loadModelConfig(dir), /token-major past \(an older export\); write its graphs again: \/usr\/bin\/python3 models\/tooling\/write_graphs\.py /);
    cfg.specserve.past_layout = 'head-major';
    writeFileSync(path.join(dir, 'config.json'), JSON.stringify(cfg));
    assert.equal(loadModelConfig(dir).layout, 'speculative');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a folder with 8-bit graphs only serves them, and its served context comes from the conversion', () => {
  // what `npm run convert -- --dtype int8` writes: no fp32 graph, specserve.dtypes lists the rest
  const dir = mkdtempSync(path.join(os.tmpdir(), 'specserve-int8-only-'));
  try {
    const cfg = JSON.parse(readFileSync(path.join(DEFAULT_MODEL_DIR, 'config.json'), 'utf8'));
    cfg.specserve.dtypes = { int8: cfg.specserve.dtypes.int8 };
    delete cfg.specserve.speculative_onnx;
    delete cfg.specserve.standard_onnx;
    cfg.specserve.context = 256;
    writeFileSync(path.join(dir, 'config.json'), JSON.stringify(cfg));
    mkdirSync(path.join(dir, 'onnx'));
    copyFileSync(path.join(DEFAULT_MODEL_DIR, 'onnx', 'decoder_spec_int8.onnx'), path.join(dir, 'onnx', 'decoder_spec_int8.onnx'));
    const m = loadModelConfig(dir);
    assert.deepEqual(Object.keys(m.variants), ['int8']);
    assert.equal(m.layout, 'speculative');
    assert.equal(path.basename(m.onnxPath), 'decoder_spec_int8.onnx');
    assert.equal(m.contextLength, 256);
    assert.equal(resolveVariant(m, 'auto', 'cuda').dtype, 'int8', 'auto falls back to what the folder has');
    assert.throws(() => resolveVariant(m, 'fp32', 'cpu'), /has no fp32 graph \(onnx\/decoder_spec\.onnx\); it has: int8/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
