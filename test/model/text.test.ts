import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Detokenizer, StopMatcher, TextCodec, TokenTextStream } from '../../src/model/text.ts';
import type { TokenSource } from '../../src/engine/types.ts';
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

/** Pushes ids through a TokenTextStream in steps of the given sizes, as the engine does with a
 *  worker's `tokens` messages; returns what each step released. */
function streamSteps(ids: number[], sizes: number[], stops: string[]) {
  const stream = new TokenTextStream(codec, [], stops);
  const steps: { text: string; sources: TokenSource[] }[] = [];
  let i = 0;
  for (let step = 0; i < ids.length && !stream.stopped; step++) {
    const n = sizes[step % sizes.length];
    const released = { text: '', sources: [] as TokenSource[] };
    for (let k = 0; k < n && i < ids.length && !stream.stopped; k++, i++) {
      const { text, sources } = stream.push(ids[i], { source: k < n - 1 ? 'draft' : 'target', step, position: k, drafted: n - 1, cap: n, tokenId: ids[i] });
      released.text += text;
      released.sources.push(...sources);
    }
    steps.push(released);
  }
  if (!stream.stopped) steps.push(stream.flush());
  return steps;
}

test('multi-token steps: a character split across tokens or steps comes out once and whole', () => {
  const s = 'emoji 🎉🎉 and 日本語 split: naïve';
  const ids = codec.encode(s);
  for (const sizes of [[1], [2], [3], [5], [ids.length], [1, 4, 2]]) {
    const steps = streamSteps(ids, sizes, []);
    const text = steps.map((st) => st.text).join('');
    assert.equal(text, s, `steps of ${sizes}`);
    for (const st of steps) assert.ok(!st.text.includes('\uFFFD'), `broken character with steps of ${sizes}`);
  }
});

test('property: token sources add up to the released text and point at tokens already pushed', () => {
  fc.assert(
    fc.property(
      fc.string({ unit: 'binary', maxLength: 40 }),
      fc.array(fc.string({ unit: 'binary', minLength: 1, maxLength: 3 }), { maxLength: 2 }),
      fc.array(fc.integer({ min: 1, max: 6 }), { minLength: 1, maxLength: 4 }),
      (s, stops, sizes) => {
        const ids = codec.encode(s);
        const steps = streamSteps(ids, sizes, stops);
        const full = codec.decode(ids);
        const cuts = stops.map((stop) => full.indexOf(stop)).filter((i) => i >= 0);
        const expected = cuts.length ? full.slice(0, Math.min(...cuts)) : full;
        assert.equal(steps.map((st) => st.text).join(''), expected);
        steps.forEach((st, step) => {
          assert.equal(st.sources.map((src) => src.text).join(''), st.text);
          for (const src of st.sources) {
            assert.ok(src.text.length > 0, 'no empty sources');
            assert.ok(src.step <= step, `text released at step ${step} came from a later step ${src.step}`);
            assert.equal(src.source, src.position < src.drafted ? 'draft' : 'target');
          }
        });
      },
    ),
    { numRuns: 300 },
  );
});

test('a tokenizer that adds BOS adds it once: not again to a chat prompt that starts with it', () => {
  // a Llama-style folder: the post-processor puts BOS in front, the template writes it itself
  const dir = mkdtempSync(path.join(tmpdir(), 'specserve-bos-'));
  try {
    const tj = JSON.parse(readFileSync(path.join(DEFAULT_MODEL_DIR, 'tokenizer.json'), 'utf8'));
    const bos = tj.added_tokens.find((t: { content: string }) => t.content === '<|endoftext|>');
    tj.post_processor = {
      type: 'TemplateProcessing',
      single: [{ SpecialToken: { id: bos.content, type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }],
      pair: [{ Sequence: { id: 'A', type_id: 0 } }, { Sequence: { id: 'B', type_id: 1 } }],
      special_tokens: { [bos.content]: { id: bos.content, ids: [bos.id], tokens: [bos.content] } },
    };
    const tc = JSON.parse(readFileSync(path.join(DEFAULT_MODEL_DIR, 'tokenizer_config.json'), 'utf8'));
    tc.bos_token = { content: bos.content, special: true }; // the AddedToken form older configs use
    tc.chat_template = '{{ bos_token }}{% for m in messages %}{{ m.content }}{% endfor %}';
    writeFileSync(path.join(dir, 'tokenizer.json'), JSON.stringify(tj));
    writeFileSync(path.join(dir, 'tokenizer_config.json'), JSON.stringify(tc));
    const llama = new TextCodec(dir);
    const plain = llama.encode('hello world');
    assert.equal(plain[0], bos.id, 'the post-processor adds BOS to a plain prompt');
    assert.deepEqual(plain.slice(1), codec.encode('hello world'));
    const chat = llama.encode(llama.applyChatTemplate([{ role: 'user', content: 'hello world' }]));
    assert.deepEqual(chat, plain, 'one BOS, then the text');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
