// `npm run setup:cuda` checks what it was asked before it touches the install.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

const SCRIPT = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'scripts', 'setup-cuda.mjs');

test('setup:cuda refuses a CUDA version it has no provider for, naming the flag, before installing anything', () => {
  const r = spawnSync(process.execPath, [SCRIPT, '--cuda', '11'], { encoding: 'utf8', timeout: 20_000 });
  assert.equal(r.status, 1);
  assert.match(r.stderr, /--cuda must be 12 or 13, got "11"/);
  assert.doesNotMatch(r.stdout, /switching onnxruntime-node|fetching/);
});
