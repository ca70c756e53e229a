import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { describeSaq, PagedKvCache, SAQ_DEFAULTS, type SaqOptions } from '../../src/kvcache/paged.ts';
import { dequantize, dequantizeReference, floatToHalf, halfToFloat, quantBytes, quantize, requantize, statistics } from '../../src/kvcache/quant.ts';
import { tokenMajor } from '../helpers/kv.ts';

test('quantize/dequantize: every element within scale/2, per tier and mode', () => {
  fc.assert(
    fc.property(
      fc.constantFrom(8, 6, 5, 4, 3, 2),
      fc.constantFrom('channel' as const, 'token' as const),
      fc.array(fc.float({ min: -8, max: 8, noNaN: true }), { minLength: 64 * 8, maxLength: 64 * 8 }),
      (bits, mode, data) => {
        const tokens = 64, channels = 8, group = mode === 'channel' ? 32 : 4;
        const src = Float32Array.from(data);
        const q = quantize(src, 0, tokens, channels, bits, mode, group);
        const { scale } = statistics(q);
        const out = new Float32Array(src.length);
        dequantize(q, out, 0);
        for (let t = 0; t < tokens; t++)
          for (let c = 0; c < channels; c++) {
            const s = mode === 'channel' ? Math.floor(t / group) * channels + c : t * (channels / group) + Math.floor(c / group);
            const err = Math.abs(out[t * channels + c] - src[t * channels + c]);
            assert.ok(err <= scale[s] / 2 + 1e-5 * (1 + Math.abs(src[t * channels + c])), `err ${err} > scale/2 ${scale[s] / 2}`);
          }
        // codes are packed: bits per value, no padding beyond the last byte
        assert.equal(q.codes.length, Math.ceil((tokens * channels * bits) / 8));
      },
    ),
    { numRuns: 150 },
  );
});

test('fast dequantize equals the element-by-element reference bit for bit (every width, mode, group, offset)', () => {
  fc.assert(
    fc.property(
      fc.constantFrom(8, 6, 5, 4, 3, 2),
      fc.constantFrom('channel' as const, 'token' as const),
      fc.constantFrom(4, 8, 12, 16, 32),
      fc.integer({ min: 1, max: 4 }),
      fc.integer({ min: 0, max: 7 }),
      fc.constantFrom(32, 12, 4),
      fc.array(fc.oneof(fc.float({ noNaN: true, noDefaultInfinity: true, min: -1e4, max: 1e4 }), fc.constantFrom(0, -0, 1e-30, -3.5)), { minLength: 32 * 48, maxLength: 32 * 48 }),
      (bits, mode, group, groupsAlong, outOff, keyChannels, data) => {
        // token mode: groups of 4..32 channels, 12 (not a multiple of 8: 5- and 3-bit codes cross
        // group boundaries); channel mode: rows of 32, 12 or 4 channels (whole bytes or not)
        const channels = mode === 'token' ? group * groupsAlong : keyChannels;
        fc.pre(8 % bits !== 0 || channels % (8 / bits) === 0);
        const tokens = mode === 'channel' ? group * groupsAlong : 32;
        const src = Float32Array.from(data.slice(0, tokens * channels));
        const q = quantize(src, 0, tokens, channels, bits, mode, group);
        const fast = new Float32Array(outOff + tokens * channels + 3).fill(NaN);
        const ref = new Float32Array(outOff + tokens * channels + 3).fill(NaN);
        dequantize(q, fast, outOff);
        dequantizeReference(q, ref, outOff);
        for (let i = 0; i < fast.length; i++) assert.ok(Object.is(fast[i], ref[i]), `index ${i}: ${fast[i]} vs ${ref[i]}`);
      },
    ),
    { numRuns: 600 },
  );
});

test('packing round trip: codes written are the codes read (extremes land exactly)', () => {
  for (const bits of [8, 6, 5, 4, 3, 2]) {
    const levels = (1 << bits) - 1;
    // one channel group holding exactly the levels 0..levels: must reconstruct exactly
    const tokens = 256, channels = 4;
    const src = Float32Array.from({ length: tokens * channels }, (_, i) => Math.floor(i / channels + i) % (levels + 1));
    const q = quantize(src, 0, tokens, channels, bits, 'channel', tokens);
    const out = new Float32Array(tokens * channels);
    dequantize(q, out, 0);
    for (let i = 0; i < src.length; i++) assert.ok(Math.abs(out[i] - src[i]) < 1e-4, `bits ${bits} value ${src[i]} -> ${out[i]}`);
  }
});

test('requantize to fewer bits shrinks the codes and stays within the coarser bound', () => {
  const src = Float32Array.from({ length: 64 * 16 }, (_, i) => Math.sin(i));
  const q8 = quantize(src, 0, 64, 16, 8, 'channel', 64);
  const q2 = requantize(q8, 2);
  assert.equal(q2.codes.length * 4, q8.codes.length);
  const out = new Float32Array(src.length);
  dequantize(q2, out, 0);
  const [s2, s8] = [statistics(q2).scale, statistics(q8).scale];
  for (let i = 0; i < src.length; i++) assert.ok(Math.abs(out[i] - src[i]) <= s2[i % 16] / 2 + s8[i % 16] / 2 + 1e-5);
});

test('fp16 rounding is directed: the largest fp16 <= x (down) and the smallest fp16 >= x (up)', () => {
  const next = (h: number, up: boolean) => {
    // neighbouring fp16 values by brute force over the finite patterns
    const v = halfToFloat(h);
    let best = up ? Infinity : -Infinity;
    for (let k = 0; k < 65536; k++) {
      const w = halfToFloat(k);
      if (!Number.isFinite(w)) continue;
      if (up ? w > v && w < best : w < v && w > best) best = w;
    }
    return best;
  };
  fc.assert(
    fc.property(fc.oneof(fc.double({ min: -65504, max: 65504, noNaN: true }), fc.double({ min: -1e-3, max: 1e-3, noNaN: true }), fc.constantFrom(0, -0, 1, -1, 65504, -65504, 2 ** -24, 5.96e-8, 1e-9, -1e-9, 0.1, -0.1)), (x) => {
      const d = floatToHalf(x, -1);
      const u = floatToHalf(x, 1);
      assert.ok(halfToFloat(d) <= x && halfToFloat(u) >= x, `${x}: ${halfToFloat(d)} .. ${halfToFloat(u)}`);
      // nothing fp16 lies strictly between x and either: they are the neighbours (or x itself)
      if (halfToFloat(d) < x) assert.ok(next(d, true) > x, `down(${x}) = ${halfToFloat(d)} is not the largest`);
      if (halfToFloat(u) > x) assert.ok(next(u, false) < x, `up(${x}) = ${halfToFloat(u)} is not the smallest`);
    }),
    { numRuns: 60 },
  );
  // exact fp16 values round to themselves both ways
  for (const x of [0, 1, -2.5, 65504, 2 ** -24, 1 / 1024]) assert.equal(halfToFloat(floatToHalf(x, -1)), x), assert.equal(halfToFloat(floatToHalf(x, 1)), x);
});

test('statistics are fp16 (2 bytes each), fp16-exact, and cover the group: min <= every x <= min + levels * scale', () => {
  for (const bits of [8, 4, 2])
    for (const mode of ['channel', 'token'] as const) {
      const tokens = 64, channels = 64, group = 32;
      const src = Float32Array.from({ length: tokens * channels }, (_, i) => 3.7 * Math.sin(i * 0.61) + (i % 7) * 0.013 - 1.3);
      const q = quantize(src, 0, tokens, channels, bits, mode, group);
      assert.ok(q.scale instanceof Uint16Array && q.min instanceof Uint16Array);
      const nStats = (tokens * channels) / group;
      assert.equal(quantBytes(q), (tokens * channels * bits) / 8 + nStats * 2 * 2);
      const { scale, min } = statistics(q);
      const levels = (1 << bits) - 1;
      for (let t = 0; t < tokens; t++)
        for (let c = 0; c < channels; c++) {
          const s = mode === 'channel' ? Math.floor(t / group) * channels + c : t * (channels / group) + Math.floor(c / group);
          const x = src[t * channels + c];
          assert.ok(min[s] <= x && x <= min[s] + levels * scale[s], `${x} outside [${min[s]}, ${min[s] + levels * scale[s]}]`);
        }
      // what is stored is what is used: fp16 values exactly
      for (let s = 0; s < nStats; s++) assert.equal(halfToFloat(floatToHalf(scale[s], 1)), scale[s]);
    }
});

test('a block whose statistics do not fit fp16 keeps them in fp32 (and still reconstructs within scale / 2)', () => {
  const tokens = 32, channels = 8;
  const src = Float32Array.from({ length: tokens * channels }, (_, i) => (i % 5) * 3e4 - 7e4);
  const q = quantize(src, 0, tokens, channels, 4, 'token', 8);
  assert.ok(q.scale instanceof Float32Array && q.min instanceof Float32Array);
  const out = new Float32Array(src.length);
  dequantize(q, out, 0);
  const ref = new Float32Array(src.length);
  dequantizeReference(q, ref, 0);
  for (let i = 0; i < src.length; i++) {
    assert.ok(Math.abs(out[i] - src[i]) <= q.scale[(i / channels) | 0] / 2 + 1e-2, `${src[i]} -> ${out[i]}`);
    assert.ok(Object.is(out[i], ref[i]));
  }
});

const shape = { layers: 2, kvHeads: 2, headDim: 32 };
const W = shape.kvHeads * shape.headDim;
const saq: SaqOptions = { window: 32, step: 32, bits: [8, 4, 2], valueGroup: 32 };

function rows(n: number, seed: number): Float32Array[] {
  return Array.from({ length: shape.layers }, (_, l) => Float32Array.from({ length: n * W }, (_, i) => Math.sin(seed + l * 7 + i * 0.37)));
}

test('staircase: the fp32 window stays exact, stairs fall in bits with age, bytes shrink', () => {
  const kv = new PagedKvCache(shape, 64 << 20, 16, saq);
  const fp = new PagedKvCache(shape, 64 << 20, 16, null);
  const all: Float32Array[][] = [];
  for (let step = 0; step < 20; step++) {
    const r = rows(16, step);
    all.push(r);
    assert.ok(kv.append(1, r, r, [...Array(16).keys()]));
    fp.append(1, r, r, [...Array(16).keys()]);
    const L = kv.length(1);
    // quantization happens at commit only and never reaches the newest `window` tokens
    const st = kv.stats();
    const fpTokens = st.bytesByTier.fp32 / (kv.bytesPerToken);
    assert.ok(fpTokens >= Math.min(L, saq.window), `fp32 window too small: ${fpTokens} of ${L}`);
  }
  const L = kv.length(1); // 320 tokens
  const st = kv.stats();
  assert.ok(st.bytesByTier.q2 > 0 && st.bytesByTier.q4 > 0 && st.bytesByTier.q8 > 0, JSON.stringify(st.bytesByTier));
  assert.ok(st.bytesInUse < fp.stats().bytesInUse * 0.35, `SAQ ${st.bytesInUse} vs fp32 ${fp.stats().bytesInUse}`);
  const outQ: Float32Array[] = [new Float32Array(L * W), new Float32Array(L * W)];
  const outF: Float32Array[] = [new Float32Array(L * W), new Float32Array(L * W)];
  kv.gather(1, outQ, outQ.map((a) => a.slice()), 0, L);
  fp.gather(1, outF, outF.map((a) => a.slice()), 0, L);
  outQ[0] = tokenMajor(outQ[0], shape.kvHeads, L, shape.headDim);
  outF[0] = tokenMajor(outF[0], shape.kvHeads, L, shape.headDim);
  // the newest `window` tokens are bit-exact; older ones are close and get coarser with age
  const errAt = (from: number, to: number) => {
    let m = 0;
    for (let i = from * W; i < to * W; i++) m = Math.max(m, Math.abs(outQ[0][i] - outF[0][i]));
    return m;
  };
  assert.equal(errAt(L - saq.window, L), 0);
  const newest = errAt(L - saq.window - saq.step, L - saq.window); // q8
  const oldest = errAt(0, saq.step); // q2
  assert.ok(newest < 0.02, `q8 error ${newest}`);
  assert.ok(oldest > newest && oldest < 1.0, `q2 error ${oldest}`);
  kv.release(1);
  assert.equal(kv.stats().bytesInUse, 0);
});

test('rollback works inside the fp32 window and refuses to cut into quantized stairs', () => {
  const kv = new PagedKvCache(shape, 64 << 20, 16, saq);
  const r = rows(100, 1);
  kv.append(1, r, r, [...Array(100).keys()]);
  const q = 100 - (kv.stats().bytesByTier.fp32 / kv.bytesPerToken); // tokens in stairs (block-rounded)
  kv.truncate(1, 90);
  assert.equal(kv.length(1), 90);
  assert.throws(() => kv.truncate(1, 10), /quantized/);
  assert.ok(q >= 0);
});

test('per-layer stairs: each layer and K/V takes its own widths by age; bytes and tiers account for them', () => {
  const cfg: SaqOptions = { window: 32, step: 32, bits: [8, 4], valueGroup: 32, layers: [{ values: [8] }, { keys: [8, 6, 5] }] };
  const kv = new PagedKvCache(shape, 64 << 20, 16, cfg);
  const fp = new PagedKvCache(shape, 64 << 20, 16, null);
  const n = 32 + 4 * 32 + 7; // 4 stairs (ages 3, 2, 1, 0) and 39 fp32 tokens
  const r = rows(n, 3);
  const r2 = rows(n, 11);
  kv.append(1, r, r2, [...Array(n).keys()]);
  fp.append(1, r, r2, [...Array(n).keys()]);
  // expected widths by (layer, kind, age): layer 0 values 8 always; layer 1 keys 8, 6, 5, 5; else 8, 4, 4, 4
  const width = (l: number, kind: 'k' | 'v', age: number) =>
    l === 0 && kind === 'v' ? 8 : l === 1 && kind === 'k' ? [8, 6, 5][Math.min(age, 2)] : [8, 4][Math.min(age, 1)];
  const blockBytes = (bits: number, kind: 'k' | 'v') => (32 * W * bits) / 8 + (kind === 'k' ? W : 32 * (W / 32)) * 2 * 2;
  const expected: Record<string, number> = {};
  for (let age = 0; age < 4; age++)
    for (let l = 0; l < shape.layers; l++)
      for (const kind of ['k', 'v'] as const) {
        const b = width(l, kind, age);
        expected[`q${b}`] = (expected[`q${b}`] ?? 0) + blockBytes(b, kind);
      }
  const u = kv.usage(1)!;
  for (const [tier, bytes] of Object.entries(expected)) assert.equal(u.bytesByTier[tier], bytes, `tier ${tier}`);
  assert.equal(kv.stats().bytesInUse, Object.values(expected).reduce((a, b) => a + b, 0) + 3 * 16 * kv.bytesPerToken);
  // tokens: the newest stair is all 8 bits; older ones mix widths (4..8, 5..8 from the third on)
  assert.deepEqual(u.tokensByTier, { fp32: 39, q8: 32, 'q4-8': 96 });
  // reconstruction error follows the widths: per (layer, kind, stair), error <= range / (2^b - 1)
  const L = kv.length(1);
  const outK = [new Float32Array(L * W), new Float32Array(L * W)];
  const outV = [new Float32Array(L * W), new Float32Array(L * W)];
  kv.gather(1, outK, outV, 0, L);
  for (const out of [outK, outV]) out.forEach((a, l) => (out[l] = tokenMajor(a, shape.kvHeads, L, shape.headDim)));
  for (let age = 0; age < 4; age++) {
    const t0 = (3 - age) * 32;
    for (let l = 0; l < shape.layers; l++)
      for (const [kind, out, src] of [['k', outK[l], r[l]], ['v', outV[l], r2[l]]] as const) {
        let err = 0;
        for (let i = t0 * W; i < (t0 + 32) * W; i++) err = Math.max(err, Math.abs(out[i] - src[i]));
        const b = width(l, kind, age);
        assert.ok(err <= 2 / ((1 << b) - 1), `layer ${l} ${kind} stair ${age}: error ${err} at ${b} bits`);
        if (b === 8) assert.ok(err <= 2 / 255 / 2 + 2e-3, `layer ${l} ${kind} stair ${age}: 8-bit error ${err}`);
      }
  }
  // the fp32 window is exact
  for (let i = (L - 39) * W; i < L * W; i++) assert.equal(outK[0][i], r[0][i]);
});

test('SAQ_DEFAULTS hold at most 25% of fp32 bytes at every length from 1,000 to 4,096 tokens (the default model shape)', () => {
  const shape = { layers: 6, kvHeads: 2, headDim: 64 };
  const W = shape.kvHeads * shape.headDim;
  const q = new PagedKvCache(shape, 1 << 30, 16, SAQ_DEFAULTS);
  const f = new PagedKvCache(shape, 1 << 30, 16, null);
  const src = Array.from({ length: shape.layers }, (_, l) => Float32Array.from({ length: 16 * W }, (_, i) => Math.sin(i * 0.3 + l)));
  let worst = 0;
  for (let t = 0; t < 4096; t++) {
    q.append(0, src, src, [t % 16]);
    f.append(0, src, src, [t % 16]);
    if (t + 1 >= 1000) worst = Math.max(worst, q.stats().bytesInUse / f.stats().bytesInUse);
  }
  assert.ok(worst <= 0.25, `worst ratio ${worst}`);
  assert.ok(worst > 0.2, `worst ratio ${worst}: the budget should be used`);
});

test('SAQ options are validated: unknown widths and packings that do not fit the row are refused', () => {
  assert.throws(() => new PagedKvCache(shape, 64 << 20, 16, { ...saq, bits: [8, 7] }), /bit width 7/);
  assert.throws(() => new PagedKvCache(shape, 64 << 20, 16, { ...saq, layers: [{ keys: [] }] }), /at least one/);
  assert.throws(() => new PagedKvCache({ layers: 1, kvHeads: 1, headDim: 2 }, 64 << 20, 16, { ...saq, valueGroup: 2, bits: [2] }), /multiple of 4/);
  // each head is quantized on its own: a value group cannot span two heads
  assert.throws(() => new PagedKvCache({ layers: 1, kvHeads: 2, headDim: 16 }, 64 << 20, 16, { ...saq, valueGroup: 32 }), /head dim 16/);
  // 5 and 6 bits pack as a bit stream: any row width works
  const kv = new PagedKvCache({ layers: 1, kvHeads: 1, headDim: 6 }, 64 << 20, 16, { window: 16, step: 16, bits: [6, 5], valueGroup: 6 });
  const r = [Float32Array.from({ length: 80 * 6 }, (_, i) => Math.cos(i))];
  kv.append(0, r, r, [...Array(80).keys()]);
  const out = [new Float32Array(80 * 6)];
  const outV = [new Float32Array(80 * 6)];
  kv.gather(0, out, outV, 0, 80);
  for (let i = 0; i < 80 * 6; i++) assert.ok(Math.abs(out[0][i] - r[0][i]) <= 2 / 31, `${i}: ${out[0][i]} vs ${r[0][i]}`);
});

test('describeSaq names the stairs, with the range where widths differ by layer', () => {
  assert.equal(describeSaq({ window: 16, step: 32, bits: [8, 4, 2], valueGroup: 32 }), 'the newest 16 tokens fp32, then 32-token stairs at 8 then 4 then 2 bits');
  assert.equal(
    describeSaq({ window: 32, step: 32, bits: [8, 5], valueGroup: 32, layers: [{ keys: [8, 6], values: [8] }, { values: [8, 4] }] }),
    'the newest 32 tokens fp32, then 32-token stairs at 8 then 4–8 bits (by layer and K/V)',
  );
});
