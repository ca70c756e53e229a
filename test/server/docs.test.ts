// README keeps the generated tables verbatim, so the docs cannot drift from the code.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { configTableMarkdown } from '../../src/config.ts';
import { errorTableMarkdown } from '../../src/server/errors-doc.ts';
import { ROOT } from '../helpers/model.ts';

const readme = readFileSync(path.join(ROOT, 'README.md'), 'utf8');

test('README lists every error code exactly as the error table has it', () => {
  assert.ok(readme.includes(errorTableMarkdown().trim()), 'README error table is stale: paste errorTableMarkdown()');
});

test('README lists every configuration option with its default and env var', () => {
  assert.ok(readme.includes(configTableMarkdown().trim()), 'README config table is stale: paste configTableMarkdown()');
});
