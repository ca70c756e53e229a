// The ADED prior's two file versions (models/tooling/trigram.py): TRI1 for vocabularies up to 65,536
// tokens, TRI2 (64-bit keys, 32-bit successors) past that, as Llama 3's 128,256 need.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { TrigramTable } from '../../src/drafters/aded/trigram.ts';

const dir = mkdtempSync(path.join(os.tmpdir(), 'specserve-trigram-'));
after(() => rmSync(dir, { recursive: true, force: true }));

/** rows: [a, b, [[c, p], ...]] in ascending (a, b) order, written as trigram.py does. */
function table(magic: 'TRI1' | 'TRI2', vocab: number, rows: [number, number, [number, number][]][]): string {
  const wide = magic === 'TRI2';
  const entries = rows.reduce((n, r) => n + r[2].length, 0);
  const parts: Buffer[] = [Buffer.from(magic, 'latin1')];
  const u32 = (xs: number[]) => Buffer.from(new Uint32Array(xs).buffer);
  parts.push(u32([vocab, rows.length, entries]));
  const keys = rows.map(([a, b]) => a * vocab + b);
  parts.push(wide ? Buffer.from(BigUint64Array.from(keys, BigInt).buffer) : u32(keys));
  const offsets = [0];
  for (const r of rows) offsets.push(offsets[offsets.length - 1] + r[2].length);
  parts.push(u32(offsets));
  const next = rows.flatMap((r) => r[2].map(([c]) => c));
  parts.push(wide ? u32(next) : Buffer.from(new Uint16Array(next).buffer));
  parts.push(Buffer.from(new Float32Array(rows.flatMap((r) => r[2].map(([, p]) => p))).buffer));
  const file = path.join(dir, `${magic}-${vocab}.bin`);
  writeFileSync(file, Buffer.concat(parts));
  return file;
}

function successors(t: TrigramTable, a: number, b: number): number[] {
  const [lo, hi] = t.row(a, b);
  return Array.from(t.next.subarray(lo, hi));
}

test('TRI1: 32-bit keys, 16-bit successors', () => {
  const t = TrigramTable.load(table('TRI1', 4096, [[1, 2, [[3, 0.75], [4, 0.25]]], [4095, 4095, [[7, 1]]]]));
  assert.deepEqual(successors(t, 1, 2), [3, 4]);
  assert.deepEqual(successors(t, 4095, 4095), [7]);
  assert.deepEqual(successors(t, 2, 1), []);
  assert.ok(t.next instanceof Uint16Array);
});

test('TRI2: keys past 2^32 and successor ids past 65,535', () => {
  const V = 128256;
  const t = TrigramTable.load(table('TRI2', V, [[5, 100000, [[128255, 0.5], [70000, 0.5]]], [128000, 128255, [[1, 1]]]]));
  assert.ok(128000 * V + 128255 > 2 ** 32);
  assert.deepEqual(successors(t, 5, 100000), [128255, 70000]);
  assert.deepEqual(successors(t, 128000, 128255), [1]);
  assert.deepEqual(successors(t, 128000, 128254), []);
  assert.equal(t.prob[0], 0.5);
});

test('refuses other files by name', () => {
  const bad = path.join(dir, 'bad.bin');
  writeFileSync(bad, Buffer.from('TRI9\0\0\0\0'));
  assert.throws(() => TrigramTable.load(bad), /bad\.bin: not a trigram table/);
  const short = table('TRI1', 4096, [[1, 2, [[3, 1]]]]);
  writeFileSync(short, readFileSync(short).subarray(0, 30));
  assert.throws(() => TrigramTable.load(short), /30 bytes, its header implies/);
});
