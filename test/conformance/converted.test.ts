// The drafter conformance suite (suite.ts) on a converted checkpoint with drafters trained for it,
// built the way a user builds one: specserve-tiny's weights saved as a sharded bf16 Hugging Face
// checkpoint (models/tooling/checkpoint.py), `npm run convert` to fp32 and int8 graphs, then
// `npm run train-drafters` for every kind, short runs over the repository's own text. The
// engine serves the int8 graphs, what `--dtype auto` picks on a CPU.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe } from 'node:test';
import { createEngine } from '../../src/engine/index.ts';
import { DEBIAN_PYTHON } from '../../scripts/debian-python.ts';
import { DEFAULT_MODEL_DIR, ROOT } from '../helpers/model.ts';
import { pythonSkip } from '../helpers/python.ts';
import { drafterConformance } from './suite.ts';

const skip = pythonSkip(['torch', 'numpy', 'onnx']);
// no __pycache__ left in models/tooling by a test run
const ENV = { ...process.env, PYTHONDONTWRITEBYTECODE: '1' };
/** Enough steps that every drafter gets drafts accepted when sampling (the suite requires a tenth
 *  of the samples' worth), few enough for CI. Medusa's heads read only the last hidden state and
 *  learn slowest: at 40 steps they had none accepted in 500 samples, at 160 about 200. */
const SHORT = ['--seq', '64', '--batch', '8', '--selfgen', '16', '--heldout-prompts', '8'];
const RUNS = [['--kinds', 'hydra,kangaroo,chimera,aded', '--steps', '40'], ['--kinds', 'medusa', '--steps', '160']];

function run(what: string, command: string, args: string[]): void {
  const r = spawnSync(command, args, { encoding: 'utf8', cwd: ROOT, env: ENV });
  assert.equal(r.status, 0, `${what} failed (exit ${r.status}):\n${r.stderr || r.stdout}`);
}

describe('a converted bf16 checkpoint with drafters trained for it, int8 weights', { skip }, () => {
  let tmp = '';
  let model = '';
  before(() => {
    tmp = mkdtempSync(path.join(os.tmpdir(), 'specserve-converted-'));
    const hf = path.join(tmp, 'hf');
    model = path.join(tmp, 'model');
    run('checkpoint.py', DEBIAN_PYTHON, [path.join(ROOT, 'models', 'tooling', 'checkpoint.py'), hf, '--from-model-folder', DEFAULT_MODEL_DIR, '--dtype', 'bf16', '--shards', '2']);
    run('npm run convert', process.execPath, ['--import', 'tsx', 'scripts/convert.ts', '--from', hf, '--to', model, '--dtype', 'fp32,int8']);
    const text = [path.join(DEFAULT_MODEL_DIR, 'heldout.txt'), path.join(ROOT, 'models', 'tooling')];
    for (const kinds of RUNS) {
      run('npm run train-drafters', process.execPath, ['--import', 'tsx', 'scripts/train-drafters.ts', '--model', model, '--text', ...text, '--work', path.join(tmp, 'work'), ...kinds, ...SHORT]);
    }
  });
  after(() => {
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  });

  drafterConformance(async () => {
    const engine = await createEngine({ modelDir: model, threads: 1, draftPolicy: 'static', dtype: 'int8' });
    assert.equal(engine.info.dtype, 'int8');
    return engine;
  }, { kvCache: 'fp32' });
});
