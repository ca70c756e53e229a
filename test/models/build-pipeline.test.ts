// models/build.sh takes specserve-tiny through the path any user's checkpoint takes: the trained
// target saved as a Hugging Face checkpoint (export.py), `npm run convert`, then tiny_files.py. Run
// from the committed weights (recovered into a train.py-style target.pt), those steps must give
// the committed graphs bit for bit in every weight format, the same tokenizer, config and LANTERN
// sets, and a reference.json the new graphs pass check.ts against.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { DEBIAN_PYTHON } from '../../scripts/debian-python.ts';
import { TextCodec } from '../../src/model/text.ts';
import { DEFAULT_MODEL_DIR, ROOT } from '../helpers/model.ts';
import { PY_ENV, pythonSkip } from '../helpers/python.ts';

const skip = pythonSkip(['torch', 'numpy', 'onnx']);
const TOOLING = path.join(ROOT, 'models', 'tooling');
const GRAPHS = ['decoder_spec.onnx', 'model.onnx', 'decoder_spec_int8.onnx', 'model_int8.onnx', 'decoder_spec_q4.onnx', 'model_q4.onnx'];

function run(what: string, command: string, args: string[]): string {
  const r = spawnSync(command, args, { encoding: 'utf8', cwd: ROOT, env: PY_ENV });
  assert.equal(r.status, 0, `${what} failed (exit ${r.status}):\n${r.stderr || r.stdout}`);
  return r.stdout;
}

const sha = (file: string) => createHash('sha256').update(readFileSync(file)).digest('hex');
const json = (file: string) => JSON.parse(readFileSync(file, 'utf8'));

describe("build.sh's path from a trained target to the model folder", { skip }, () => {
  let tmp = '';
  let work = '';
  let out = '';
  before(() => {
    tmp = mkdtempSync(path.join(os.tmpdir(), 'specserve-build-'));
    work = path.join(tmp, 'work');
    out = path.join(tmp, 'specserve-tiny');
    mkdirSync(work);
    // what train.py leaves in the work folder: the weights (read back from the committed fp32
    // graph), and validation tokens (here the committed held-out text's)
    const recover = `
import dataclasses, sys, torch
sys.path.insert(0, ${JSON.stringify(TOOLING)})
import target
m, cfg = target.load(sys.argv[1])
torch.save({"config": dataclasses.asdict(cfg), "model": m.state_dict(), "step": 1000, "elapsed": 4530.0}, sys.argv[2])`;
    run('recovering target.pt', DEBIAN_PYTHON, ['-c', recover, DEFAULT_MODEL_DIR, path.join(work, 'target.pt')]);
    const ids = new TextCodec(DEFAULT_MODEL_DIR).encode(readFileSync(path.join(DEFAULT_MODEL_DIR, 'heldout.txt'), 'utf8'));
    writeFileSync(path.join(work, 'valid.u16'), Buffer.from(new Uint16Array(ids).buffer));

    run('export.py', DEBIAN_PYTHON, [path.join(TOOLING, 'export.py'), work, path.join(work, 'hf'), '--tokenizer-from', DEFAULT_MODEL_DIR]);
    run('npm run convert', process.execPath, ['--import', 'tsx', 'scripts/convert.ts', '--from', path.join(work, 'hf'), '--to', out, '--dtype', 'fp32,int8,int4', '--shallow-layers', '1']);
    run('tiny_files.py', DEBIAN_PYTHON, [path.join(TOOLING, 'tiny_files.py'), work, out]);
  });
  after(() => {
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  });

  test('every target graph is the committed one, bit for bit', () => {
    for (const g of GRAPHS) assert.equal(sha(path.join(out, 'onnx', g)), sha(path.join(DEFAULT_MODEL_DIR, 'onnx', g)), `onnx/${g} differs`);
  });

  test('tokenizer, configuration and LANTERN sets are the committed ones', () => {
    for (const f of ['tokenizer.json', 'tokenizer_config.json', 'lantern/neighbours.json']) {
      assert.equal(sha(path.join(out, f)), sha(path.join(DEFAULT_MODEL_DIR, f)), `${f} differs`);
    }
    assert.deepEqual(json(path.join(out, 'generation_config.json')), json(path.join(DEFAULT_MODEL_DIR, 'generation_config.json')));
    const { specserve: built, ...arch } = json(path.join(out, 'config.json'));
    const { specserve: committed, ...committedArch } = json(path.join(DEFAULT_MODEL_DIR, 'config.json'));
    assert.deepEqual(arch, committedArch);
    for (const key of ['speculative_onnx', 'standard_onnx', 'past_layout', 'shallow_layers', 'dtypes', 'trained_steps', 'training_minutes']) {
      assert.deepEqual(built[key], committed[key], `specserve.${key}`);
    }
    assert.equal(built.context, 1024);
    assert.equal(built.converted_from.model_type, 'llama');
  });

  test("the torch target's reference outputs: the new graphs pass check.ts against them", () => {
    const ref = json(path.join(out, 'reference.json'));
    assert.equal(ref.greedy.length, 16);
    const report = run('check.ts', process.execPath, ['--import', 'tsx', path.join(TOOLING, 'check.ts'), out]);
    assert.match(report, /\[check\] fp32 ok/);
    assert.doesNotMatch(report, /FAIL/);
  });
});
