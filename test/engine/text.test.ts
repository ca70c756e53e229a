import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { Detokenizer, StopMatcher, TextCodec } from '../../src/engine/text.ts';
import { DEFAULT_MODEL_DIR } from '../helpers/model.ts';

const codec = new TextCodec(DEFAULT_MODEL_DIR);

test('streaming detokenization equals the full decode and never emits a broken character', () => {
  const samples = ['def f(x):\n    return x  # héllo ✓ 日本語 🎉', 'naïve café — “quotes” ∑x²', ' leading space and\ttabs\n\n'];
  for (const s of samples) {
    const ids = codec.encode(s);
    const d = new Detokenizer(codec);
    let out = '';
    for (const id of ids) {
      const piece = d.push(id);
      assert.ok(!piece.includes('\uFFFD'), `broken character emitted for ${JSON.stringify(s)}`);
      out += piece;
    }
    out += d.flush();
    assert.equal(out, codec.decode(ids));
    assert.equal(out, s);
  }
});

test('property: any text round-trips through streaming detokenization', () => {
  fc.assert(
    fc.property(fc.string({ unit: 'binary', maxLength: 40 }), (s) => {
      const ids = codec.encode(s);
      const d = new Detokenizer(codec);
      let out = '';
      for (const id of ids) out += d.push(id);
      out += d.flush();
      assert.equal(out, codec.decode(ids));
    }),
    { numRuns: 200 },
  );
});

test('stop strings match across chunk boundaries and are not emitted', () => {
  const m = new StopMatcher(['STOP', '\n\n']);
  let out = '';
  for (const piece of ['hello S', 'T', 'OP and more']) out += m.push(piece);
  assert.equal(out, 'hello ');
  assert.ok(m.stopped);
  assert.equal(m.push('x'), '');
});

test('held-back text that turns out not to be a stop string is released', () => {
  const m = new StopMatcher(['STOP']);
  let out = m.push('aST');
  assert.equal(out, 'a');
  out += m.push('x');
  out += m.flush();
  assert.equal(out, 'aSTx');
  assert.equal(m.stopped, false);
});

test('property: output is the text up to the earliest stop occurrence, however it is chunked', () => {
  fc.assert(
    fc.property(fc.array(fc.constantFrom('a', 'b', 'ab', 'ba', 'abb', 'x'), { maxLength: 12 }), (chunks) => {
      const stops = ['abb', 'bab'];
      const m = new StopMatcher(stops);
      let out = '';
      for (const c of chunks) out += m.push(c);
      out += m.flush();
      const full = chunks.join('');
      const cuts = stops.map((s) => full.indexOf(s)).filter((i) => i >= 0);
      const expected = cuts.length ? full.slice(0, Math.min(...cuts)) : full;
      assert.equal(out, expected);
    }),
    { numRuns: 500 },
  );
});

test('chat template renders messages and the tokenizer round-trips it', () => {
  const text = codec.applyChatTemplate([
    { role: 'system', content: 'You are a Python REPL.' },
    { role: 'user', content: 'len("abc")' },
  ]);
  assert.match(text, /len\("abc"\)/);
  assert.equal(codec.decode(codec.encode(text)), text);
});
