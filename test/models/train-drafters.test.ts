// `npm run train-drafters` beyond the path test/conformance/converted.test.ts takes: bad input ends
// in one line naming it; a converted checkpoint of another shape (untied LM head, head_dim 24,
// attention biases, llama3 RoPE): the torch target the drafters train against gives the float64
// reference's logits, and its drafters train and run, greedy output equal to plain decoding; and one
// with 70,000 tokens gets 32-bit token files and a TRI2 trigram table.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { copyFileSync, cpSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { createEngine } from '../../src/engine/index.ts';
import { DEBIAN_PYTHON } from '../../scripts/debian-python.ts';
import { generate, request } from '../helpers/engine.ts';
import { PY_ENV, pythonSkip } from '../helpers/python.ts';
import { DEFAULT_MODEL_DIR, ROOT } from '../helpers/model.ts';

const TOOLING = path.join(ROOT, 'models', 'tooling');
const KINDS = ['medusa', 'hydra', 'kangaroo', 'chimera', 'aded'];
const MANIFESTS: Record<string, string> = {
  medusa: 'heads/medusa.json', hydra: 'heads/hydra.json', kangaroo: 'kangaroo/kangaroo.json', chimera: 'chimera/chimera.json', aded: 'aded/manifest.json',
};
// a few steps of small batches: what is tested is the pipeline, not the drafters' quality
const QUICK = ['--steps', '12', '--seq', '64', '--batch', '4', '--selfgen', '4', '--heldout-prompts', '4'];
const PROMPTS = ['def fibonacci(n):\n', 'Grüße aus Köln — naïve café, 日本語のテキスト:'];

const skip = pythonSkip(['torch', 'numpy', 'onnx']);

interface Run {
  status: number | null;
  out: string;
  err: string;
  seconds: number;
}

function trainDrafters(args: string[]): Run {
  const t0 = Date.now();
  const r = spawnSync(process.execPath, ['--import', 'tsx', path.join(ROOT, 'scripts', 'train-drafters.ts'), ...args], { cwd: ROOT, encoding: 'utf8', env: PY_ENV });
  return { status: r.status, out: r.stdout, err: r.stderr, seconds: (Date.now() - t0) / 1000 };
}

function python(script: string, args: string[]): string {
  const r = spawnSync(DEBIAN_PYTHON, [path.join(TOOLING, script), ...args], { encoding: 'utf8', env: PY_ENV });
  assert.equal(r.status, 0, `${script} failed:\n${r.stderr || r.stdout}`);
  return r.stdout;
}

function ok(r: Run): Run {
  assert.equal(r.status, 0, `train-drafters failed (${r.status}):\n${r.err}\n${r.out.slice(-3000)}`);
  return r;
}

const readJson = (file: string) => JSON.parse(readFileSync(file, 'utf8'));

/** Every drafter is available on `modelDir`, and greedy decoding with each equals plain decoding. */
async function checkEngine(modelDir: string, drafters: string[], maxTokens: number): Promise<void> {
  const engine = await createEngine({ modelDir, threads: 1, draftPolicy: 'static' });
  try {
    for (const name of drafters) {
      const info = engine.drafters().find((d) => d.name === name);
      assert.ok(info?.available, `${name} unavailable: ${info?.reason}`);
    }
    for (const prompt of PROMPTS) {
      const plain = await generate(engine, request(prompt, { maxTokens }));
      for (const drafter of drafters) {
        const spec = await generate(engine, request(prompt, { maxTokens, speculative: { drafter, maxDraftTokens: 8 } }));
        assert.deepEqual(spec.tokenIds, plain.tokenIds, `${drafter} diverged from plain decoding on ${JSON.stringify(prompt)}`);
        assert.ok(drafter === 'aded' || spec.speculation!.draftTokens > 0, `${drafter} drafted nothing`);
      }
    }
  } finally {
    await engine.close();
  }
}

let tmp = '';
let text = '';
before(() => {
  tmp = mkdtempSync(path.join(os.tmpdir(), 'specserve-train-drafters-'));
  // the text: a folder (held-out prose, a README, non-ASCII lines, a binary file to skip) and a file
  text = path.join(tmp, 'text');
  mkdirSync(path.join(text, 'nested'), { recursive: true });
  copyFileSync(path.join(DEFAULT_MODEL_DIR, 'heldout.txt'), path.join(text, 'heldout.txt'));
  writeFileSync(path.join(text, 'nested', 'unicode.txt'), 'Grüße aus Köln — naïve café, 日本語のテキスト, ελληνικά, emoji 🚀.\n'.repeat(40));
  writeFileSync(path.join(text, 'nested', 'blob.bin'), Buffer.from([0, 1, 2, 0xff, 0xfe, 0]));
});
after(() => {
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

describe('train-drafters refuses bad input', { skip }, () => {
  let model = '';
  before(() => {
    model = path.join(tmp, 'tiny');
    const drafterDirs = new Set(['heads', 'kangaroo', 'chimera', 'aded'].map((d) => path.join(DEFAULT_MODEL_DIR, d)));
    cpSync(DEFAULT_MODEL_DIR, model, { recursive: true, filter: (src) => !drafterDirs.has(src) });
  });

  test('bad input: one line naming it, and a non-zero exit', () => {
    const short = path.join(tmp, 'short.txt');
    writeFileSync(short, 'Too short to train on.\n');
    // --kinds aded where the case is not about kinds: one that were let through would not train for minutes
    const aded = ['--kinds', 'aded'];
    const cases: [string[], RegExp][] = [
      [['--model', model, '--text', path.join(tmp, 'missing.txt'), ...aded], /^train-drafters: --text .*missing\.txt: no such file or folder\n$/],
      [['--model', tmp, '--text', text, ...aded], /^train-drafters: --model .*: no config\.json \(not a model folder\)\n$/],
      [['--model', model, '--text', text, '--kinds', 'medusa,eagle'], /^train-drafters: --kinds medusa,eagle: expected some of/],
      [['--model', model, '--text', path.join(text, 'nested', 'blob.bin'), ...aded], /^train-drafters: --text .*blob\.bin: not UTF-8 text\n$/],
      [['--model', model, '--text', short, ...aded], /^train-drafters: --text .*short\.txt: \d+ tokens in all; at least 1024 are needed\n$/],
      [['--model', model, '--text', text, '--steps', '0', ...aded], /error: option '--steps <n>' argument '0' is invalid/],
    ];
    for (const [args, want] of cases) {
      const r = trainDrafters(args);
      assert.notEqual(r.status, 0, args.join(' '));
      assert.match(r.err, want);
    }
  });

  test('an int8-only folder whose checkpoint is gone: one line before any training starts', () => {
    const ckpt = path.join(tmp, 'gone-hf');
    const int8 = path.join(tmp, 'gone');
    python('checkpoint.py', [ckpt, '--layers', '2', '--hidden', '32', '--heads', '2', '--kv-heads', '1', '--intermediate', '64']);
    python('convert.py', ['--from', ckpt, '--to', int8, '--dtype', 'int8']);
    rmSync(ckpt, { recursive: true });
    const r = trainDrafters(['--model', int8, '--text', text, '--kinds', 'medusa']);
    assert.notEqual(r.status, 0);
    assert.match(r.err, /^train_drafters: .* was converted from .*gone-hf, which is gone; it has no fp32 graph .*\n$/);
    assert.doesNotMatch(r.out, /\[medusa\]/, 'no training started');
  });
});

describe('a converted checkpoint of another shape', { skip }, () => {
  test('untied head, head_dim 24, attention biases, llama3 RoPE: the torch target, training, the engine', async () => {
    const ckpt = path.join(tmp, 'shape-hf');
    const model = path.join(tmp, 'shape');
    python('checkpoint.py', [ckpt, '--layers', '3', '--hidden', '64', '--heads', '4', '--kv-heads', '2', '--head-dim', '24',
      '--attention-bias', '--rope-scaling', 'llama3', '--context', '512']);
    python('convert.py', ['--from', ckpt, '--to', model, '--dtype', 'fp32,int8']);
    // the target the drafters distil is the checkpoint's: transformers' forward in float64
    const ids = JSON.stringify([1, 500, 77, 3000, 12, 9, 4095, 1024, 5, 6, 7, 8]);
    python('hf_reference.py', [ckpt, '--ids', ids, '--out', path.join(tmp, 'shape-ref.json')]);
    assert.match(python('target.py', [model, '--reference', path.join(tmp, 'shape-ref.json')]), /untied LM head\n.*max \|diff\|/);
    ok(trainDrafters(['--model', model, '--text', text, ...QUICK, '--steps', '4']));
    const medusa = readJson(path.join(model, MANIFESTS.medusa));
    assert.equal(medusa.hidden_size, 64);
    assert.match(medusa.lm_head, /lm_head\.weight/);
    assert.equal(readJson(path.join(model, MANIFESTS.kangaroo)).head_dim, 24);
    await checkEngine(model, KINDS, 12);
  });

  test('qwen3 (q/k RMSNorm per head): the torch target, Hydra and Kangaroo train, the engine decodes losslessly', async () => {
    const ckpt = path.join(tmp, 'qwen3-hf');
    const model = path.join(tmp, 'qwen3');
    python('checkpoint.py', [ckpt, '--model-type', 'qwen3', '--dtype', 'bf16', '--head-dim', '24', '--tied']);
    python('convert.py', ['--from', ckpt, '--to', model, '--dtype', 'fp32,int8']);
    const ids = JSON.stringify([1, 500, 77, 3000, 12, 9, 4095, 1024, 5, 6, 7, 8]);
    python('hf_reference.py', [ckpt, '--ids', ids, '--out', path.join(tmp, 'qwen3-ref.json')]);
    assert.match(python('target.py', [model, '--reference', path.join(tmp, 'qwen3-ref.json')]), /max \|diff\|/);
    ok(trainDrafters(['--model', model, '--text', text, ...QUICK, '--steps', '4', '--kinds', 'hydra,kangaroo']));
    await checkEngine(model, ['hydra', 'kangaroo'], 12);
  });

  test('70,000 tokens: 32-bit token files and a TRI2 trigram table the engine reads', async () => {
    const ckpt = path.join(tmp, 'wide-hf');
    const model = path.join(tmp, 'wide');
    python('checkpoint.py', [ckpt, '--vocab', '70000', '--layers', '2', '--hidden', '32', '--heads', '2', '--kv-heads', '1', '--intermediate', '64']);
    python('convert.py', ['--from', ckpt, '--to', model, '--dtype', 'int8']);
    ok(trainDrafters(['--model', model, '--text', text, '--kinds', 'aded']));
    const work = path.join(model, '.train-drafters');
    assert.deepEqual(readdirSync(work).filter((f) => /^(train|valid)\.u/.test(f)).sort(), ['train.u32', 'valid.u32']);
    assert.equal(readJson(path.join(model, MANIFESTS.aded)).format, 'TRI2');
    await checkEngine(model, ['aded'], 12);
  });
});
