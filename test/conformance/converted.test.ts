// A user's path end to end, then the drafter conformance suite (suite.ts) on what it produced:
// specserve-tiny's weights saved as a sharded bf16 Hugging Face checkpoint
// (models/tooling/checkpoint.py), `npm run convert` to fp32 and int8 graphs, `npm run
// train-drafters` for every kind on a folder of text (the repository's own, non-ASCII lines, a
// binary file to skip), then the checks every model the project ships passes, on the int8 graphs
// (what `--dtype auto` picks on a CPU). test/models/train-drafters.test.ts covers bad input and
// other shapes.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { createEngine } from '../../src/engine/index.ts';
import { DEBIAN_PYTHON } from '../../scripts/debian-python.ts';
import { DEFAULT_MODEL_DIR, ROOT } from '../helpers/model.ts';
import { PY_ENV, pythonSkip } from '../helpers/python.ts';
import { drafterConformance } from './suite.ts';

const skip = pythonSkip(['torch', 'numpy', 'onnx']);
const TOOLING = path.join(ROOT, 'models', 'tooling');
const KINDS = ['medusa', 'hydra', 'kangaroo', 'chimera', 'aded'];
const MANIFESTS: Record<string, string> = {
  medusa: 'heads/medusa.json', hydra: 'heads/hydra.json', kangaroo: 'kangaroo/kangaroo.json', chimera: 'chimera/chimera.json', aded: 'aded/manifest.json',
};
/** Enough steps that every drafter gets drafts accepted when sampling (the suite requires a tenth
 *  of the samples' worth), few enough for CI. Medusa's heads read only the last hidden state and
 *  learn slowest: at 40 steps they had none accepted in 500 samples, at 160 about 200. */
const SHORT = ['--seq', '64', '--batch', '8', '--selfgen', '16', '--heldout-prompts', '8'];
const RUNS = [['--kinds', 'hydra,kangaroo,chimera,aded', '--steps', '40'], ['--kinds', 'medusa', '--steps', '160']];
const STEPS: Record<string, number> = { medusa: 160, hydra: 40, kangaroo: 40, chimera: 40 };

function run(what: string, command: string, args: string[]): { out: string; seconds: number } {
  const t0 = Date.now();
  const r = spawnSync(command, args, { encoding: 'utf8', cwd: ROOT, env: PY_ENV });
  assert.equal(r.status, 0, `${what} failed (exit ${r.status}):\n${r.stderr}\n${r.stdout.slice(-3000)}`);
  return { out: r.stdout, seconds: (Date.now() - t0) / 1000 };
}

const readJson = (file: string) => JSON.parse(readFileSync(file, 'utf8'));

describe('a converted bf16 checkpoint with drafters trained for it, int8 weights', { skip }, () => {
  let tmp = '';
  let model = '';
  let text = '';
  const trainings: string[] = [];
  const trainDrafters = (kinds: string[]) =>
    run('npm run train-drafters', process.execPath, ['--import', 'tsx', 'scripts/train-drafters.ts', '--model', model,
      '--text', text, ...kinds, ...SHORT]);

  before(() => {
    tmp = mkdtempSync(path.join(os.tmpdir(), 'specserve-converted-'));
    const hf = path.join(tmp, 'hf');
    model = path.join(tmp, 'model');
    text = path.join(tmp, 'text');
    mkdirSync(path.join(text, 'nested'), { recursive: true });
    copyFileSync(path.join(DEFAULT_MODEL_DIR, 'heldout.txt'), path.join(text, 'heldout.txt'));
    writeFileSync(path.join(text, 'nested', 'unicode.txt'), 'Grüße aus Köln — naïve café, 日本語のテキスト, ελληνικά, emoji 🚀.\n'.repeat(40));
    writeFileSync(path.join(text, 'nested', 'blob.bin'), Buffer.from([0, 1, 2, 0xff, 0xfe, 0]));
    // code the target has seen the like of (it was trained on Python's standard library)
    mkdirSync(path.join(text, 'code'));
    for (const f of readdirSync(TOOLING).filter((f) => f.endsWith('.py'))) copyFileSync(path.join(TOOLING, f), path.join(text, 'code', f));
    run('checkpoint.py', DEBIAN_PYTHON, [path.join(TOOLING, 'checkpoint.py'), hf, '--from-model-folder', DEFAULT_MODEL_DIR, '--dtype', 'bf16', '--shards', '2']);
    run('npm run convert', process.execPath, ['--import', 'tsx', 'scripts/convert.ts', '--from', hf, '--to', model, '--dtype', 'fp32,int8']);
    for (const kinds of RUNS) trainings.push(trainDrafters(kinds).out);
  });
  after(() => {
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  });

  test('train-drafters reports progress per kind, the files it skipped and the held-out agreement', () => {
    const out = trainings.join('\n');
    assert.match(out, /skipped 1 file\(s\) that are not UTF-8 text/);
    for (const [kind, steps] of Object.entries(STEPS)) assert.match(out, new RegExp(`\\[${kind}\\] step ${steps}/${steps} .*eta.*overall: ${kind} ${steps}/${steps}`));
    assert.match(trainings[1], /held-out top-1 agreement with the target:\n {2}kind +head\/depth +held-out text +target's greedy continuations\n {2}medusa +t\+2 +\d/);
  });

  test("each kind's manifest, the files it lists, its log and the draft vocabulary it chose", () => {
    assert.ok(existsSync(path.join(model, '.train-drafters', 'train.u16')));
    for (const kind of KINDS) {
      const m = readJson(path.join(model, MANIFESTS[kind]));
      const dir = path.dirname(path.join(model, MANIFESTS[kind]));
      const files = kind === 'aded' ? [m.file] : Object.keys(m.files);
      for (const f of files) assert.ok(existsSync(path.join(dir, f)), `${kind}: ${f} listed but missing`);
      if (kind === 'aded') {
        assert.equal(m.format, 'TRI1');
        continue;
      }
      assert.ok(existsSync(path.join(dir, `${kind}_log.jsonl`)), `${kind}: no training log`);
      assert.equal(m.training.steps, STEPS[kind]);
      const dv = m.draft_vocab;
      assert.match(dv.chosen, /^default: the \d+ most frequent training tokens cover 99\.5%/);
      assert.ok(dv.size % 64 === 0 && dv.size <= 4096 && dv.train_coverage >= 0.995, JSON.stringify(dv));
    }
    // Kangaroo's split graphs in the formats the converted folder has, and no others
    const kfiles = Object.keys(readJson(path.join(model, MANIFESTS.kangaroo)).files);
    for (const f of ['deep.onnx', 'deep_int8.onnx', 'draft_int8.onnx']) assert.ok(kfiles.includes(f), `kangaroo/${f} not written`);
    assert.ok(!kfiles.includes('deep_q4.onnx'), 'kangaroo/deep_q4.onnx written for a folder without int4 graphs');
  });

  test('a rerun skips the kinds already exported', () => {
    const again = trainDrafters(RUNS[0]);
    for (const kind of RUNS[0][1].split(',')) assert.match(again.out, new RegExp(`${kind}: already exported with these settings`));
    assert.ok(again.seconds < 30, `rerun took ${again.seconds} s`);
  });

  drafterConformance(async () => {
    const engine = await createEngine({ modelDir: model, threads: 1, draftPolicy: 'static', dtype: 'int8' });
    assert.equal(engine.info.dtype, 'int8');
    return engine;
  }, { kvCache: 'fp32' });
});

