import assert from 'node:assert/strict';
import { test } from 'node:test';
import { lookup, PromptLookupDrafter } from '../../src/drafters/prompt-lookup/index.ts';

test('proposes what followed the last occurrence of the suffix n-gram', () => {
  const toks = [1, 2, 3, 4, 5, 6, 9, 9, 2, 3];
  assert.deepEqual(lookup(toks, 3), [4, 5, 6]);
});

test('prefers the longer n-gram match', () => {
  // suffix [7, 2, 3]: the 3-gram match (followed by 8) beats the later 2-gram match [2, 3] -> 5
  const toks = [7, 2, 3, 8, 1, 2, 3, 5, 0, 7, 2, 3];
  assert.deepEqual(lookup(toks, 1), [8]);
});

test('in a repetition the match with a full continuation wins', () => {
  const toks = [5, 5, 5, 5, 5, 5, 5, 5];
  assert.deepEqual(lookup(toks, 4), [5, 5, 5, 5]);
});

test('no match, no draft', () => {
  const d = new PromptLookupDrafter();
  const [tree] = d.propose([{ seqId: 1, tokens: [1, 2, 3, 4], maxNodes: 5 }]);
  assert.equal(tree, null);
});

test('respects maxNodes and returns a chain', () => {
  const d = new PromptLookupDrafter();
  const [tree] = d.propose([{ seqId: 1, tokens: [1, 2, 3, 4, 5, 6, 1, 2], maxNodes: 2 }]);
  assert.ok(tree);
  assert.deepEqual(Array.from(tree.tokens), [3, 4]);
  assert.deepEqual(Array.from(tree.parents), [-1, 0]);
});
