// `npm run convert` on small random Hugging Face checkpoints (models/tooling/checkpoint.py): the
// converted graphs give the logits of an independent float64 forward written from transformers'
// modelling code (models/tooling/hf_reference.py), the real engine decodes the reference's greedy
// tokens from them, and every refused input ends with a message naming the problem, a non-zero exit
// and nothing left on disk.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import ort from 'onnxruntime-node';
import { createEngine } from '../../src/engine/index.ts';
import { DEBIAN_PYTHON } from '../../scripts/debian-python.ts';
import { generate, request } from '../helpers/engine.ts';
import { PY_ENV, pythonSkip } from '../helpers/python.ts';
import { DEFAULT_MODEL_DIR, ROOT } from '../helpers/model.ts';

const PYTHON = DEBIAN_PYTHON;
const TOOLING = path.join(ROOT, 'models', 'tooling');
const NEG = -1e9;

const skip = pythonSkip(['numpy', 'onnx']);

interface Run {
  status: number | null;
  stdout: string;
  stderr: string;
}


function py(script: string, args: string[]): Run {
  const r = spawnSync(PYTHON, [path.join(TOOLING, script), ...args], { encoding: 'utf8', env: PY_ENV });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

function ok(r: Run, what: string): Run {
  assert.equal(r.status, 0, `${what} failed:\n${r.stderr || r.stdout}`);
  return r;
}

let work = '';
before(() => {
  if (skip) return;
  work = mkdtempSync(path.join(os.tmpdir(), 'specserve-convert-'));
  // the checkpoint the refusal and CLI cases spoil or convert: as small as a model gets
  ok(py('checkpoint.py', [path.join(work, 'base-hf'), '--layers', '2', '--hidden', '32', '--heads', '2', '--kv-heads', '1', '--intermediate', '64']), 'checkpoint.py');
});
after(() => {
  if (work) rmSync(work, { recursive: true, force: true });
});

const i64 = (a: number[]) => BigInt64Array.from(a, BigInt);
const range = (n: number, from = 0) => Array.from({ length: n }, (_, i) => from + i);

interface Reference {
  logits: number[][]; // [T][vocab]
  greedy: number[];
}

function reference(dir: string, ids: number[], generateTokens: number): Reference {
  const out = path.join(work, `${path.basename(dir)}-reference.json`);
  ok(py('hf_reference.py', [dir, '--ids', JSON.stringify(ids), '--generate', String(generateTokens), '--out', out]), 'hf_reference.py');
  return JSON.parse(readFileSync(out, 'utf8'));
}

/** The prompt's logits [T * vocab] from a converted graph, both layouts fed as the engine feeds them. */
async function graphLogits(modelDir: string, file: string, ids: number[]): Promise<Float32Array> {
  const cfg = JSON.parse(readFileSync(path.join(modelDir, 'config.json'), 'utf8'));
  const L: number = cfg.num_hidden_layers;
  const KV: number = cfg.num_key_value_heads;
  const HD: number = cfg.head_dim;
  const T = ids.length;
  const session = await ort.InferenceSession.create(path.join(modelDir, file), { intraOpNumThreads: 1 });
  const feeds: Record<string, ort.Tensor> = {
    input_ids: new ort.Tensor('int64', i64(ids), [1, T]),
    position_ids: new ort.Tensor('int64', i64(range(T)), [1, T]),
  };
  const speculative = session.inputNames.includes('attention_bias');
  // speculative: the new rows take cache slots 0..T-1 of a T-row past buffer; standard: no past
  const P = speculative ? T : 0;
  if (speculative) {
    const bias = new Float32Array(T * T);
    for (let t = 0; t < T; t++) for (let s = 0; s < T; s++) bias[t * T + s] = s <= t ? 0 : NEG;
    feeds.cache_position = new ort.Tensor('int64', i64(range(T)), [1, T]);
    feeds.attention_bias = new ort.Tensor('float32', bias, [1, 1, T, T]);
  } else feeds.attention_mask = new ort.Tensor('int64', i64(ids.map(() => 1)), [1, T]);
  for (let l = 0; l < L; l++)
    for (const kv of ['key', 'value']) feeds[`past_key_values.${l}.${kv}`] = new ort.Tensor('float32', new Float32Array(KV * P * HD), [1, KV, P, HD]);
  const out = await session.run(feeds, ['logits']);
  await session.release();
  return out.logits.data as Float32Array;
}

/** Largest |graph - reference| over the prompt, relative to the reference's largest |logit|. */
function relativeError(got: Float32Array, want: number[][]): number {
  const V = want[0].length;
  assert.equal(got.length, want.length * V);
  let diff = 0;
  let scale = 0;
  want.forEach((row, t) => row.forEach((x, v) => {
    diff = Math.max(diff, Math.abs(got[t * V + v] - x));
    scale = Math.max(scale, Math.abs(x));
  }));
  return diff / scale;
}

function argmaxRows(data: Float32Array | number[], V: number): number[] {
  const rows: number[] = [];
  for (let t = 0; t * V < data.length; t++) {
    let best = 0;
    for (let v = 1; v < V; v++) if (data[t * V + v] > data[t * V + best]) best = v;
    rows.push(best);
  }
  return rows;
}

interface Case {
  name: string;
  checkpoint: string[];
  dtypes: string;
  promptLength: number;
}

const CASES: Case[] = [
  {
    name: 'qwen2, bf16 in 2 shards, GQA 3:1, q/k/v biases, untied',
    checkpoint: ['--model-type', 'qwen2', '--dtype', 'bf16', '--shards', '2', '--hidden', '96', '--heads', '6', '--kv-heads', '2'],
    dtypes: 'fp32,int8',
    promptLength: 24,
  },
  {
    // 8 heads of 16 in a hidden size of 64; llama3 scaling from an original context of 64, prompt past it
    name: 'llama, f16 single file, GQA 4:1, head_dim 16 != 64/8, llama3 RoPE scaling past the original context',
    checkpoint: ['--model-type', 'llama', '--dtype', 'f16', '--heads', '8', '--kv-heads', '2', '--head-dim', '16', '--rope-scaling', 'llama3',
      '--original-context', '64', '--context', '256'],
    dtypes: 'fp32',
    promptLength: 96,
  },
  {
    name: 'mistral, f32, tied embeddings',
    checkpoint: ['--model-type', 'mistral', '--dtype', 'f32', '--tied', '--layers', '3'],
    dtypes: 'fp32',
    promptLength: 24,
  },
  {
    name: 'llama, attention_bias (q/k/v/o biases), linear RoPE scaling',
    checkpoint: ['--model-type', 'llama', '--attention-bias', '--rope-scaling', 'linear'],
    dtypes: 'fp32',
    promptLength: 24,
  },
  {
    // Qwen3's configs set head_dim apart from hidden / heads (128 in 1024 / 16 for Qwen3-0.6B)
    name: 'qwen3, bf16, q/k RMSNorm per head, GQA 2:1, head_dim 24 != 64/4, attention_bias, tied',
    checkpoint: ['--model-type', 'qwen3', '--dtype', 'bf16', '--head-dim', '24', '--attention-bias', '--tied'],
    dtypes: 'fp32,int8',
    promptLength: 24,
  },
];
const GENERATE = 8;

describe('convert: Hugging Face checkpoints to specserve model folders', { skip }, () => {
  CASES.forEach((c, n) => test(c.name, async () => {
    const ckpt = path.join(work, `case${n}-hf`);
    const out = path.join(work, `case${n}`);
    ok(py('checkpoint.py', [ckpt, '--seed', String(n), ...c.checkpoint]), 'checkpoint.py');
    const conv = ok(py('convert.py', ['--from', ckpt, '--to', out, '--dtype', c.dtypes]), 'convert.py');
    assert.match(conv.stdout, /\[read\] model\.embed_tokens\.weight \[\d+, \d+\]/, 'a line per tensor read');
    assert.match(conv.stdout, /\[graph\] onnx\/decoder_spec\.onnx: [\d.]+ MB in [\d.]+s/, 'a line per graph written');
    assert.match(conv.stdout, /rotary_emb\.inv_freq/, 'the unused tensor is noted');
    const cfg = JSON.parse(readFileSync(path.join(out, 'config.json'), 'utf8'));
    assert.equal(cfg.specserve.converted_from.path, ckpt);
    assert.equal(cfg.specserve.context, 256);
    assert.deepEqual(Object.keys(cfg.specserve.dtypes), c.dtypes.split(','));

    const ids = range(c.promptLength).map((i) => (i * 997 + 13 * n) % 4096);
    const ref = reference(ckpt, ids, GENERATE);
    const V: number = cfg.vocab_size;
    for (const key of ['speculative_onnx', 'standard_onnx']) {
      const logits = await graphLogits(out, cfg.specserve.dtypes.fp32[key], ids);
      const err = relativeError(logits, ref.logits);
      assert.ok(err < 1e-4, `fp32 ${key}: logits differ from the reference by ${err.toExponential(2)} of their scale`);
    }
    if (c.dtypes.includes('int8')) {
      // 8-bit weights round every projection: near the reference, and almost always the same top token
      const logits = await graphLogits(out, cfg.specserve.dtypes.int8.speculative_onnx, ids);
      const err = relativeError(logits, ref.logits);
      assert.ok(err < 0.05, `int8 logits differ from the reference by ${err.toExponential(2)} of their scale`);
      const want = ref.logits.map((row) => argmaxRows(row, V)[0]);
      const same = argmaxRows(logits, V).filter((t, i) => t === want[i]).length;
      assert.ok(same >= 0.9 * ids.length, `int8 top-1 agrees with the reference at ${same} of ${ids.length} positions`);
    }

    const engine = await createEngine({ modelDir: out, threads: 1, provider: 'cpu', dtype: 'fp32' });
    try {
      // random weights emit lone UTF-8 bytes (e.g. half of §): their ids must reach the caller too
      const gen = await generate(engine, request(ids, { maxTokens: GENERATE, ignoreEos: true }));
      assert.deepEqual(gen.tokenIds, ref.greedy, 'the engine decodes the reference greedy tokens');
    } finally {
      await engine.close();
    }
  }));

  // after the first case, whose checkpoint and fp32 folder it reuses
  test('an int8-only folder: no fp32 graph named, served, and weights.load reads the checkpoint converted from', async () => {
    const ckpt = path.join(work, 'case0-hf');
    const out = path.join(work, 'int8-only');
    ok(py('convert.py', ['--from', ckpt, '--to', out, '--dtype', 'int8']), 'convert.py');
    const spec = JSON.parse(readFileSync(path.join(out, 'config.json'), 'utf8')).specserve;
    assert.equal(spec.speculative_onnx, undefined);
    assert.equal(spec.standard_onnx, undefined);
    assert.deepEqual(Object.keys(spec.dtypes), ['int8']);
    const engine = await createEngine({ modelDir: out, threads: 1, provider: 'cpu' });
    try {
      const gen = await generate(engine, request([5, 6, 7], { maxTokens: 4, ignoreEos: true }));
      assert.equal(gen.tokenIds.length, 4);
    } finally {
      await engine.close();
    }
    const script = `
import sys; sys.path.insert(0, ${JSON.stringify(TOOLING)})
import numpy as np, weights
_, a = weights.load(sys.argv[1]); _, b = weights.load(sys.argv[2])
assert sorted(a) == sorted(b), (sorted(a), sorted(b))
assert all(np.array_equal(a[k], b[k]) for k in a), 'weights differ'
print(len(a))`;
    const r = spawnSync(PYTHON, ['-c', script, out, path.join(work, 'case0')], { encoding: 'utf8', env: PY_ENV });
    assert.equal(r.status, 0, r.stderr);
    // the checkpoint changed since: refused rather than read as the model converted
    const shard = path.join(ckpt, 'model-00002-of-00002.safetensors');
    const copy = path.join(work, 'shard-copy');
    cpSync(shard, copy);
    writeFileSync(shard, Buffer.concat([readFileSync(copy), Buffer.alloc(8)]));
    const changed = spawnSync(PYTHON, ['-c', script, out, path.join(work, 'case0')], { encoding: 'utf8', env: PY_ENV });
    cpSync(copy, shard);
    assert.notEqual(changed.status, 0);
    assert.match(changed.stderr, /model-00002-of-00002\.safetensors has changed/);
  });

  test('specserve-tiny written as a Hugging Face checkpoint converts back to the same graph', async () => {
    const ckpt = path.join(work, 'tiny-hf');
    const out = path.join(work, 'tiny');
    ok(py('checkpoint.py', [ckpt, '--from-model-folder', DEFAULT_MODEL_DIR, '--shards', '2']), 'checkpoint.py');
    ok(py('convert.py', ['--from', ckpt, '--to', out, '--dtype', 'fp32']), 'convert.py');
    const ids = [12, 400, 87, 1033, 7, 2500, 99, 3000];
    const tinyCfg = JSON.parse(readFileSync(path.join(DEFAULT_MODEL_DIR, 'config.json'), 'utf8'));
    const want = await graphLogits(DEFAULT_MODEL_DIR, tinyCfg.specserve.speculative_onnx, ids);
    const got = await graphLogits(out, 'onnx/decoder_spec.onnx', ids);
    assert.deepEqual(got, want, 'bit-identical logits');
  });

  // A 0.5 B-parameter model is 2 GB in fp32, past protobuf's limit: its weights go to a .data file
  // beside each graph. The threshold, lowered, sends this small model down the same path.
  test('weights past the protobuf limit go to external data, which the engine and weights.load read', async () => {
    const ckpt = path.join(work, 'case0-hf');
    const out = path.join(work, 'external');
    const r = spawnSync(PYTHON, [path.join(TOOLING, 'convert.py'), '--from', ckpt, '--to', out, '--dtype', 'fp32,int8'],
      { encoding: 'utf8', env: { ...PY_ENV, SPECSERVE_EXTERNAL_DATA_ABOVE: '100000' } });
    assert.equal(r.status, 0, r.stderr);
    for (const g of ['decoder_spec.onnx', 'model.onnx', 'decoder_spec_int8.onnx']) {
      const data = path.join(out, 'onnx', `${g}.data`);
      assert.ok(existsSync(data), `${g}.data written`);
      assert.ok(statSync(data).size > 10 * statSync(path.join(out, 'onnx', g)).size, `${g}'s weights are in ${g}.data`);
    }
    const ids = range(24).map((i) => (i * 997) % 4096);
    const want = await graphLogits(path.join(work, 'case0'), 'onnx/decoder_spec.onnx', ids);
    assert.deepEqual(await graphLogits(out, 'onnx/decoder_spec.onnx', ids), want, 'the same logits as the one-file graph');
    const engine = await createEngine({ modelDir: out, threads: 1, provider: 'cpu', dtype: 'int8' });
    try {
      const gen = await generate(engine, request(ids, { maxTokens: 4, ignoreEos: true, speculative: { drafter: 'prompt-lookup' } }));
      assert.equal(gen.tokenIds.length, 4);
    } finally {
      await engine.close();
    }
    const same = spawnSync(PYTHON, ['-c', `
import sys; sys.path.insert(0, ${JSON.stringify(TOOLING)})
import numpy as np, weights
_, a = weights.load(sys.argv[1]); _, b = weights.load(sys.argv[2])
assert sorted(a) == sorted(b) and all(np.array_equal(a[k], b[k]) for k in a), 'weights differ'`, out, path.join(work, 'case0')], { encoding: 'utf8', env: PY_ENV });
    assert.equal(same.status, 0, same.stderr);
  });
});

/** The base checkpoint copied and altered in one way, or a fresh one written with `args`. */
function altered(name: string, spoil: (dir: string) => void, args: string[] = []): string {
  const dir = path.join(work, `alt-${name}`);
  if (args.length) ok(py('checkpoint.py', [dir, ...args]), 'checkpoint.py');
  else cpSync(path.join(work, 'base-hf'), dir, { recursive: true });
  spoil(dir);
  return dir;
}

function editConfig(dir: string, edit: (c: any) => void): void {
  const file = path.join(dir, 'config.json');
  const c = JSON.parse(readFileSync(file, 'utf8'));
  edit(c);
  writeFileSync(file, JSON.stringify(c));
}

/** convert.py refuses: exit 1, one line `convert: ...` matching `message`, no folder and no temp folder. */
function refused(src: string, message: RegExp, extra: string[] = []): void {
  const out = path.join(work, `out-${path.basename(src)}`);
  const r = py('convert.py', ['--from', src, '--to', out, ...extra]);
  assert.equal(r.status, 1, `exit status (stderr: ${r.stderr})`);
  const lines = r.stderr.trim().split('\n');
  assert.equal(lines.length, 1, `one line, no traceback:\n${r.stderr}`);
  assert.match(lines[0], /^convert: /);
  assert.match(lines[0], message);
  assert.equal(existsSync(out), false, 'no output folder');
  assert.deepEqual(readdirSync(work).filter((f) => f.startsWith(`${path.basename(out)}.`)), [], 'no temporary folder');
}

describe('convert: refused input', { skip }, () => {
  test('unsupported model_type', () => {
    refused(altered('gemma2', (d) => editConfig(d, (c) => (c.model_type = 'gemma2'))), /model_type 'gemma2' is not supported.*supported: llama, mistral, qwen2/);
  });
  test('a Llama-family neighbour is refused by name, with what it needs', () => {
    refused(altered('gemma', (d) => editConfig(d, (c) => (c.model_type = 'gemma'))), /model_type 'gemma' is not supported: .*sqrt\(hidden\).*\(supported: llama, mistral, qwen2, qwen3\)/);
  });
  test('unsupported rope_scaling type', () => {
    refused(altered('yarn', (d) => editConfig(d, (c) => (c.rope_scaling = { rope_type: 'yarn', factor: 4 }))), /rope_scaling type 'yarn' is not supported \(supported: default, linear, llama3\)/);
  });
  test('mlp_bias', () => {
    refused(altered('mlp-bias', (d) => editConfig(d, (c) => (c.mlp_bias = true))), /mlp_bias/);
  });
  test('missing tensor: named, with its file', () => {
    refused(altered('missing', () => {}, ['--omit', 'model.layers.1.mlp.up_proj.weight', '--hidden', '32', '--heads', '2', '--kv-heads', '1']),
      /tensor model\.layers\.1\.mlp\.up_proj\.weight is missing from .*model\.safetensors/);
  });
  test('missing lm_head of an untied model', () => {
    refused(altered('no-head', () => {}, ['--omit', 'lm_head.weight', '--hidden', '32', '--heads', '2', '--kv-heads', '1']), /tensor lm_head\.weight is missing.*tie_word_embeddings is false/);
  });
  test('wrong shape: tensor, file, expected and found', () => {
    refused(altered('shape', () => {}, ['--wrong-shape', 'model.layers.0.self_attn.k_proj.weight', '--hidden', '32', '--heads', '2', '--kv-heads', '1']),
      /tensor model\.layers\.0\.self_attn\.k_proj\.weight in model\.safetensors has shape \[15, 32\]; config\.json gives \[16, 32\]/);
  });
  test('truncated safetensors file', () => {
    refused(altered('truncated', (d) => {
      const f = path.join(d, 'model.safetensors');
      truncateSync(f, Math.floor(readFileSync(f).length / 2));
    }), /model\.safetensors: tensor \S+: data_offsets .* outside the data area .*truncated or corrupt/);
  });
  test('corrupt header: not JSON', () => {
    refused(altered('header-json', (d) => {
      const f = path.join(d, 'model.safetensors');
      const b = readFileSync(f);
      b.write('#!garbage', 8);
      writeFileSync(f, b);
    }), /model\.safetensors: the header is not valid JSON.*truncated or corrupt/);
  });
  test('corrupt header: length past the end of the file', () => {
    refused(altered('header-length', (d) => {
      const f = path.join(d, 'model.safetensors');
      const b = readFileSync(f);
      b.writeBigUInt64LE(BigInt(b.length), 0);
      writeFileSync(f, b);
    }), /model\.safetensors: header length \d+ runs past the end of the file.*truncated or corrupt/);
  });
  test('a shard the index names does not hold the tensor', () => {
    const dir = altered('index', () => {}, ['--hidden', '32', '--heads', '2', '--kv-heads', '1', '--shards', '2']);
    const file = path.join(dir, 'model.safetensors.index.json');
    const index = JSON.parse(readFileSync(file, 'utf8'));
    index.weight_map['model.norm.weight'] = 'model-00001-of-00002.safetensors';
    writeFileSync(file, JSON.stringify(index));
    refused(dir, /puts tensor model\.norm\.weight in model-00001-of-00002\.safetensors, but that file does not hold it/);
  });
  test('an output folder that cannot be made: one line, not a traceback', () => {
    const file = path.join(work, 'a-file');
    writeFileSync(file, 'not a folder');
    const r = py('convert.py', ['--from', path.join(work, 'base-hf'), '--to', path.join(file, 'model')]);
    assert.equal(r.status, 1, r.stderr);
    assert.match(r.stderr, /^convert: .*a-file.*\n$/);
  });
  test('tokenizer larger than the vocabulary', () => {
    refused(altered('vocab', (d) => editConfig(d, (c) => (c.vocab_size = 4000))), /token ids up to 4095, which does not fit the embedding of vocab_size 4000/);
  });
  test('sliding window smaller than the served context; --context within it converts', () => {
    const dir = altered('window', (d) => editConfig(d, (c) => Object.assign(c, { model_type: 'mistral', sliding_window: 128 })));
    refused(dir, /sliding_window 128 .*smaller than the served context 256.*--context 128/);
    const out = path.join(work, 'window-ok');
    ok(py('convert.py', ['--from', dir, '--to', out, '--dtype', 'int4', '--context', '128']), 'convert.py --context 128');
    assert.equal(JSON.parse(readFileSync(path.join(out, 'config.json'), 'utf8')).specserve.context, 128);
  });
  test('fp16 graphs: refused with what to use instead', () => {
    refused(path.join(work, 'base-hf'), /--dtype fp16: fp16 graphs are not written yet .*fp32 .*CUDA, int8 or int4 on CPU/, ['--dtype', 'fp16']);
  });
  test('an existing folder is kept unless --force, which replaces it whole', () => {
    const out = path.join(work, 'existing');
    mkdirSync(out);
    writeFileSync(path.join(out, 'keep.txt'), 'mine');
    const r = py('convert.py', ['--from', path.join(work, 'base-hf'), '--to', out]);
    assert.equal(r.status, 1);
    assert.match(r.stderr, /^convert: --to .*existing exists and is not empty; pass --force to replace it\n$/);
    assert.equal(readFileSync(path.join(out, 'keep.txt'), 'utf8'), 'mine');
    ok(py('convert.py', ['--from', path.join(work, 'base-hf'), '--to', out, '--force', '--dtype', 'int8']), 'convert.py --force');
    assert.deepEqual(readdirSync(out).sort(), ['config.json', 'generation_config.json', 'onnx', 'tokenizer.json', 'tokenizer_config.json']);
    assert.deepEqual(readdirSync(work).filter((f) => /^existing\./.test(f)), [], 'no temporary or old folder');
  });
});

test('a checkpoint without generation_config.json gets one from config.json\'s token ids', { skip }, () => {
  const dir = altered('no-generation-config', (d) => {
    rmSync(path.join(d, 'generation_config.json'));
    editConfig(d, (c) => Object.assign(c, { bos_token_id: 1, eos_token_id: [2, 4095] }));
  });
  const out = path.join(work, 'no-generation-config');
  ok(py('convert.py', ['--from', dir, '--to', out, '--dtype', 'int4']), 'convert.py');
  assert.deepEqual(JSON.parse(readFileSync(path.join(out, 'generation_config.json'), 'utf8')), { bos_token_id: 1, eos_token_id: [2, 4095] });
});

describe('npm run convert (scripts/convert.ts)', { skip }, () => {
  const cli = (args: string[]) => spawnSync(process.execPath, ['--import', 'tsx', path.join(ROOT, 'scripts', 'convert.ts'), ...args], { encoding: 'utf8', cwd: ROOT, env: PY_ENV });

  test('converts, streaming convert.py\'s lines', () => {
    const out = path.join(work, 'cli-out');
    const r = cli(['--from', path.join(work, 'base-hf'), '--to', out, '--dtype', 'int8', '--shallow-layers', '1']);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /\[graph\] onnx\/decoder_spec_int8\.onnx/);
    assert.ok(existsSync(path.join(out, 'onnx', 'model_int8.onnx')));
  });
  test('bad options are named', () => {
    const bad = cli(['--from', path.join(work, 'base-hf'), '--to', path.join(work, 'cli-bad'), '--shallow-layers', 'two']);
    assert.notEqual(bad.status, 0);
    assert.match(bad.stderr, /--shallow-layers/);
    const missing = cli(['--to', path.join(work, 'cli-bad')]);
    assert.notEqual(missing.status, 0);
    assert.match(missing.stderr, /--from/);
    const split = cli(['--from', path.join(work, 'base-hf'), '--to', path.join(work, 'cli-bad'), '--shallow-layers', '2']);
    assert.equal(split.status, 1);
    assert.match(split.stderr, /--shallow-layers 2: the speculative graph needs 1 <= N < num_hidden_layers \(2\)/);
    assert.equal(existsSync(path.join(work, 'cli-bad')), false);
  });
});
