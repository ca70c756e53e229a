// Admission reservations and per-request usage: reserved blocks count as used, are consumed as the
// sequence allocates, are returned on release, and no interleaving leaks or double-counts a block.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { PagedKvCache, type SaqOptions } from '../../src/kvcache/paged.ts';

const shape = { layers: 2, kvHeads: 2, headDim: 4 };
const W = shape.kvHeads * shape.headDim;
const BS = 8;
const blockBytes = BS * shape.layers * 2 * W * 4;

function rows(n: number, seed = 0): Float32Array[] {
  return Array.from({ length: shape.layers }, (_, l) => Float32Array.from({ length: n * W }, (_, i) => Math.sin(seed + l * 3 + i * 0.7)));
}
const idx = (n: number) => [...Array(n).keys()];

type Op =
  | { kind: 'reserve'; seq: number; n: number }
  | { kind: 'append'; seq: number; n: number }
  | { kind: 'truncate'; seq: number; keep: number }
  | { kind: 'release'; seq: number };

const opArb: fc.Arbitrary<Op> = fc.oneof(
  fc.record({ kind: fc.constant('reserve' as const), seq: fc.integer({ min: 0, max: 4 }), n: fc.integer({ min: 1, max: 60 }) }),
  fc.record({ kind: fc.constant('append' as const), seq: fc.integer({ min: 0, max: 4 }), n: fc.integer({ min: 1, max: 30 }) }),
  fc.record({ kind: fc.constant('truncate' as const), seq: fc.integer({ min: 0, max: 4 }), keep: fc.integer({ min: 0, max: 100 }) }),
  fc.record({ kind: fc.constant('release' as const), seq: fc.integer({ min: 0, max: 4 }) }),
);

/** The specification, in blocks: what each sequence holds and has reserved. */
interface Model {
  length: number;
  held: number;
  reserved: number;
  /** Length up to which appends must succeed (set by a successful reserve). */
  promised: number;
}

test('reserve/append/truncate/release interleavings: blocks never leak or double-count, reservations are honoured', () => {
  fc.assert(
    fc.property(fc.array(opArb, { maxLength: 80 }), (ops) => {
      const N = 24;
      const kv = new PagedKvCache(shape, N * blockBytes, BS);
      const m = new Map<number, Model>();
      const ceil = (t: number) => Math.ceil(t / BS);
      const committed = () => [...m.values()].reduce((a, s) => a + s.held + s.reserved, 0);
      for (const op of ops) {
        const s = m.get(op.seq) ?? { length: 0, held: 0, reserved: 0, promised: 0 };
        const free = N - committed();
        if (op.kind === 'reserve') {
          const more = Math.max(0, ceil(s.length + op.n) - s.held - s.reserved);
          const ok = kv.reserve(op.seq, op.n);
          assert.equal(ok, more <= free, `reserve ${op.n} for ${op.seq}`);
          if (ok) {
            s.reserved += more;
            s.promised = Math.max(s.promised, s.length + op.n);
            m.set(op.seq, s);
          }
        } else if (op.kind === 'append') {
          const more = Math.max(0, ceil(s.length + op.n) - s.held - s.reserved);
          const ok = kv.append(op.seq, rows(op.n), rows(op.n), idx(op.n));
          assert.equal(ok, more <= free, `append ${op.n} to ${op.seq}`);
          // a reservation is a promise: appends within it never fail, whatever others did
          if (s.length + op.n <= s.promised) assert.ok(ok, 'append within a reservation refused');
          if (ok) {
            const grown = ceil(s.length + op.n) - s.held;
            s.reserved -= Math.min(grown, s.reserved);
            s.held += grown;
            s.length += op.n;
            m.set(op.seq, s);
          }
        } else if (op.kind === 'truncate') {
          const keep = Math.min(op.keep, s.length);
          kv.truncate(op.seq, keep);
          if (m.has(op.seq)) {
            s.length = keep;
            s.held = ceil(keep);
            s.promised = keep; // freed blocks went back to the pool: the old promise is void
          }
        } else {
          const u = kv.release(op.seq);
          assert.equal(u === null, !m.has(op.seq));
          m.delete(op.seq);
        }
        // accounting matches the specification exactly: no block lost, none counted twice
        const st = kv.stats();
        assert.ok(committed() <= N, 'over-committed');
        assert.equal(kv.freeBlocks(), N - committed());
        assert.equal(st.blocksReserved, [...m.values()].reduce((a, x) => a + x.reserved, 0));
        assert.equal(st.bytesInUse, committed() * blockBytes);
        assert.equal(st.bytesByTier.reserved, st.blocksReserved * blockBytes);
        for (const [id, x] of m) assert.equal(kv.length(id), x.length);
      }
      for (const id of [...m.keys()]) kv.release(id);
      const st = kv.stats();
      assert.equal(kv.freeBlocks(), N);
      assert.equal(st.bytesInUse, 0);
      assert.equal(st.blocksReserved, 0);
      assert.equal(st.sequences, 0);
    }),
    { numRuns: 300 },
  );
});

const saq: SaqOptions = { window: 16, step: 16, bits: [8, 4, 2], valueGroup: 4 }; // value groups lie within a head (headDim 4)

test('admission by reservation never over-commits: every admitted request prefills and decodes its lookahead (fp32 and SAQ)', () => {
  fc.assert(
    fc.property(
      fc.constantFrom(null, saq),
      fc.array(fc.record({ prompt: fc.integer({ min: 1, max: 120 }), lookahead: fc.integer({ min: 1, max: 9 }) }), { minLength: 1, maxLength: 12 }),
      fc.integer({ min: 1, max: 40 }),
      (cfg, reqs, chunk) => {
        const kv = new PagedKvCache(shape, 30 * blockBytes, BS, cfg);
        // admit in order while reservations succeed (the scheduler's admit() loop)
        const admitted: { id: number; prompt: number; lookahead: number; done: number }[] = [];
        for (const [id, r] of reqs.entries()) {
          if (!kv.reserve(id, r.prompt + r.lookahead)) break;
          admitted.push({ id, ...r, done: 0 });
        }
        // prefill all of them, interleaved chunk by chunk, then one step of lookahead each
        for (let left = true; left; ) {
          left = false;
          for (const a of admitted) {
            const n = Math.min(chunk, a.prompt - a.done);
            if (n <= 0) continue;
            left = true;
            assert.ok(kv.append(a.id, rows(n), rows(n), idx(n)), `prefill of admitted request ${a.id} refused`);
            a.done += n;
          }
        }
        for (const a of admitted) assert.ok(kv.append(a.id, rows(a.lookahead), rows(a.lookahead), idx(a.lookahead)), `lookahead of ${a.id} refused`);
        assert.ok(kv.stats().bytesInUse <= kv.budgetBytes);
      },
    ),
    { numRuns: 300 },
  );
});

test('counting free blocks without reserving (the old admission) over-commits; reserving does not', () => {
  const kv = new PagedKvCache(shape, 10 * blockBytes, BS);
  // two 6-block requests: each fits alone, both "fit" if nobody reserves
  assert.ok(kv.canGrow(1, 6 * BS) && kv.canGrow(2, 6 * BS));
  assert.ok(kv.reserve(1, 6 * BS));
  assert.equal(kv.canGrow(2, 6 * BS), false);
  assert.equal(kv.reserve(2, 6 * BS), false);
  assert.equal(kv.stats().sequences, 1, 'a refused reservation leaves nothing behind');
  assert.equal(kv.freeBlocks(), 4);
  // appending converts the reservation instead of taking free blocks
  assert.ok(kv.append(1, rows(20), rows(20), idx(20)));
  assert.equal(kv.freeBlocks(), 4);
  assert.equal(kv.stats().blocksReserved, 3);
  assert.equal(kv.usage(1)!.bytesByTier.reserved, 3 * blockBytes);
  kv.release(1);
  assert.equal(kv.freeBlocks(), 10);
  assert.ok(kv.reserve(2, 6 * BS));
});

test('per-request usage sums to the totals, by tier, under random SAQ traffic; peaks bound what was held', () => {
  fc.assert(
    fc.property(fc.array(opArb, { maxLength: 60 }), (ops) => {
      const kv = new PagedKvCache(shape, 60 * blockBytes, BS, saq);
      const live = new Set<number>();
      let seed = 0;
      const peaks = new Map<number, number>();
      for (const op of ops) {
        if (op.kind === 'reserve') {
          if (kv.reserve(op.seq, op.n)) live.add(op.seq);
        } else if (op.kind === 'append') {
          if (kv.append(op.seq, rows(op.n, seed), rows(op.n, seed++), idx(op.n))) live.add(op.seq);
        } else if (op.kind === 'truncate') {
          try {
            kv.truncate(op.seq, Math.min(op.keep, kv.length(op.seq)));
          } catch (err) {
            assert.match((err as Error).message, /quantized/); // stairs cannot be rolled back
          }
        } else {
          const before = kv.usage(op.seq);
          const u = kv.release(op.seq);
          assert.deepEqual(u, before);
          live.delete(op.seq);
          peaks.delete(op.seq);
        }
        const st = kv.stats();
        const sumTier: Record<string, number> = {};
        let tokens = 0;
        let bytes = 0;
        for (const id of live) {
          const u = kv.usage(id)!;
          tokens += u.tokens;
          bytes += u.bytes;
          for (const [t, b] of Object.entries(u.bytesByTier)) sumTier[t] = (sumTier[t] ?? 0) + b;
          assert.equal(Object.values(u.tokensByTier).reduce((a, b) => a + b, 0), u.tokens);
          assert.equal(Object.values(u.bytesByTier).reduce((a, b) => a + b, 0), u.bytes);
          const held = u.bytes - u.bytesByTier.reserved;
          assert.ok(u.peakBytes >= held, `peak ${u.peakBytes} < held ${held}`);
          assert.ok(u.peakBytes >= (peaks.get(id) ?? 0), 'peak went down');
          peaks.set(id, u.peakBytes);
        }
        assert.equal(tokens, st.tokens);
        assert.equal(bytes, st.bytesInUse);
        for (const t of new Set([...Object.keys(sumTier), ...Object.keys(st.bytesByTier)])) assert.equal(sumTier[t] ?? 0, st.bytesByTier[t] ?? 0, `tier ${t}`);
      }
    }),
    { numRuns: 200 },
  );
});

test('usage reports tokens by tier once stairs form', () => {
  const kv = new PagedKvCache(shape, 1 << 24, BS, saq);
  const n = 100;
  kv.append(3, rows(n), rows(n), idx(n));
  const u = kv.usage(3)!;
  assert.equal(u.tokens, n);
  // 100 tokens: the window keeps 16..31 fp32 tokens; stairs of 16 at 8, 4 and (floor) 2 bits
  assert.equal(u.tokensByTier.fp32, n - 5 * 16);
  assert.equal(u.tokensByTier.q8, 16);
  assert.equal(u.tokensByTier.q4, 16);
  assert.equal(u.tokensByTier.q2, 48);
  assert.ok(u.bytesByTier.q2 < u.bytesByTier.q4 * 3 && u.bytesByTier.q4 < u.bytesByTier.q8);
  assert.equal(kv.usage(99), null);
});
