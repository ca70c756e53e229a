// Group-wise asymmetric min-max quantization with tightly packed codes (KIVI's scheme, the base of
// SAQ). Keys are quantized per channel (groups run along the token axis), values per token (groups
// run along the channel axis).
//   scale = (max - min) / (2^bits - 1),  code = round((x - min) / scale),  x' = min + code * scale
// so every element is reconstructed within scale / 2.
//
// The statistics (min, scale) are stored as fp16: at 4 bits with groups of 32 they were a third of
// a stair's bytes in fp32. They are rounded outward (min down, scale up, both in fp16) before the
// codes are computed against the rounded values, so [min, min + levels * scale] still covers the
// group and the scale / 2 bound holds for the stored scale. A block whose statistics do not fit
// fp16 (|x| beyond 65504) keeps them in fp32.
import { channel2, channel4, channel5, channel6, channel8, codeAt, token2, token4, token5, token6, token8, unpack } from './dequant-kernels.ts';

export type QuantMode = 'channel' | 'token';

export interface QuantBlock {
  bits: number;
  mode: QuantMode;
  /** Tokens and channels of the block. */
  tokens: number;
  channels: number;
  group: number;
  /** Packed codes, token-major [tokens, channels]: a little-endian bit stream, code i at bits
   *  [i * bits, (i + 1) * bits) (so `8 / bits` codes per byte at 8, 4 and 2 bits). */
  codes: Uint8Array;
  /** 'channel': [tokens / group, channels]; 'token': [tokens, channels / group]. fp16 bit patterns
   *  (Uint16Array), or fp32 where they would not fit fp16. Read them with `statistics`. */
  scale: Uint16Array | Float32Array;
  min: Uint16Array | Float32Array;
}

export const SUPPORTED_BITS = [8, 6, 5, 4, 3, 2] as const;

export function quantBytes(q: QuantBlock): number {
  return q.codes.byteLength + q.scale.byteLength + q.min.byteLength;
}

/** fp16 bit pattern -> value, for every pattern (exact: fp32 holds every fp16). */
const HALF = (() => {
  const t = new Float32Array(65536);
  for (let h = 0; h < 65536; h++) {
    const e = (h >> 10) & 31;
    const m = h & 1023;
    const v = e === 0 ? m * 2 ** -24 : e === 31 ? (m ? NaN : Infinity) : (1 + m / 1024) * 2 ** (e - 15);
    t[h] = h & 0x8000 ? -v : v;
  }
  return t;
})();

export function halfToFloat(h: number): number {
  return HALF[h & 0xffff];
}

/** An fp16 bit pattern next to x: the nearest to x rounded to fp32 (ties to even), from the bits of
 *  that fp32. Within one fp16 step of x's own nearest, which is all `floatToHalf` needs: it steps
 *  to the directed neighbour itself. (Math.log2 and powers here took most of a stair's
 *  quantization time.) */
const F32 = new Float32Array(1);
const U32 = new Uint32Array(F32.buffer);
function halfNearest(x: number): number {
  F32[0] = x;
  const u = U32[0];
  const sign = (u >>> 16) & 0x8000;
  const exp = (u >>> 23) & 0xff;
  let mant = u & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  const e = exp - 127 + 15;
  if (e >= 31) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign; // below half the smallest subnormal
    mant |= 0x800000;
    const shift = 14 - e;
    const h = mant >>> shift;
    const rest = mant & ((1 << shift) - 1);
    const halfway = 1 << (shift - 1);
    return sign | (rest > halfway || (rest === halfway && h & 1) ? h + 1 : h);
  }
  const h = (e << 10) | (mant >>> 13);
  const rest = mant & 0x1fff;
  return sign | (rest > 0x1000 || (rest === 0x1000 && h & 1) ? h + 1 : h); // a carry into the exponent is right
}

/** fp16 bit pattern of the largest fp16 <= x (dir -1) or the smallest fp16 >= x (dir 1). */
export function floatToHalf(x: number, dir: -1 | 1): number {
  let h = halfNearest(x);
  const v = HALF[h];
  if (dir < 0 && v > x) h = h === 0 ? 0x8001 : h & 0x8000 ? h + 1 : h - 1;
  else if (dir > 0 && v < x) h = h === 0x8000 ? 0x0001 : h & 0x8000 ? h - 1 : h + 1;
  return h;
}

/** Quantizes src [tokens, channels] (token-major, starting at `offset`). */
export function quantize(src: Float32Array, offset: number, tokens: number, channels: number, bits: number, mode: QuantMode, group: number): QuantBlock {
  if (!(SUPPORTED_BITS as readonly number[]).includes(bits)) throw new Error(`unsupported bit width ${bits}`);
  if (8 % bits === 0 && channels % (8 / bits) !== 0) throw new Error(`channels ${channels} must be a multiple of ${8 / bits} for ${bits}-bit packing`);
  const perGroupAxis = mode === 'channel' ? tokens : channels;
  if (perGroupAxis % group !== 0) throw new Error(`${mode} quantization needs a multiple of ${group}, got ${perGroupAxis}`);
  const levels = (1 << bits) - 1;
  const nStats = mode === 'channel' ? (tokens / group) * channels : tokens * (channels / group);
  const codes = new Uint8Array(Math.ceil((tokens * channels * bits) / 8));
  // statIndex(t, c): 'channel' = (t / group) * channels + c; 'token' = t * groupsPerRow + c / group.
  // The loops below compute it incrementally: this runs over every element of every stair a
  // commit demotes (a stair of 32 tokens is 24 blocks of 2,048 values on specserve-tiny).
  const groupsPerRow = channels / group;
  const rowStats = (t: number) => (mode === 'channel' ? ((t / group) | 0) * channels : t * groupsPerRow);
  const lo = new Float32Array(nStats).fill(Infinity);
  const hi = new Float32Array(nStats).fill(-Infinity);
  for (let t = 0; t < tokens; t++) {
    const row = offset + t * channels;
    const base = rowStats(t);
    for (let c = 0; c < channels; c++) {
      const x = src[row + c];
      const s = mode === 'channel' ? base + c : base + ((c / group) | 0);
      if (x < lo[s]) lo[s] = x;
      if (x > hi[s]) hi[s] = x;
    }
  }
  // fp16, rounded outward; fp32 for the whole block when some group does not fit fp16
  const minH = new Uint16Array(nStats);
  const scaleH = new Uint16Array(nStats);
  let half = true;
  for (let s = 0; s < nStats && half; s++) {
    minH[s] = floatToHalf(lo[s], -1);
    scaleH[s] = floatToHalf((hi[s] - HALF[minH[s]]) / levels, 1);
    half = Number.isFinite(HALF[minH[s]]) && Number.isFinite(HALF[scaleH[s]]);
  }
  let min: Float32Array | Uint16Array = minH;
  let scale: Float32Array | Uint16Array = scaleH;
  const mn = new Float32Array(nStats);
  const sc = new Float32Array(nStats);
  for (let s = 0; s < nStats; s++) {
    mn[s] = half ? HALF[minH[s]] : lo[s];
    sc[s] = half ? HALF[scaleH[s]] : (hi[s] - lo[s]) / levels;
  }
  if (!half) [min, scale] = [mn, sc];
  // codes, against the statistics as stored; a little-endian bit stream, code i at bits
  // [i * bits, (i + 1) * bits): whole bytes at 8 bits, else shifted in
  for (let t = 0; t < tokens; t++) {
    const row = offset + t * channels;
    const base = rowStats(t);
    let bit = t * channels * bits;
    for (let c = 0; c < channels; c++, bit += bits) {
      const s = mode === 'channel' ? base + c : base + ((c / group) | 0);
      const code = sc[s] > 0 ? Math.min(levels, Math.max(0, Math.round((src[row + c] - mn[s]) / sc[s]))) : 0;
      if (bits === 8) {
        codes[bit >> 3] = code;
        continue;
      }
      const sh = bit & 7;
      codes[bit >> 3] |= (code << sh) & 255;
      if (sh + bits > 8) codes[(bit >> 3) + 1] |= code >> (8 - sh);
    }
  }
  return { bits, mode, tokens, channels, group, codes, scale, min };
}

/** The block's statistics as fp32 values (decoded from fp16), written into `scale` and `min` when
 *  given and long enough (dequantization reuses two buffers), else into new arrays. */
export function statistics(q: QuantBlock, scale?: Float32Array, min?: Float32Array): { scale: Float32Array; min: Float32Array } {
  const n = q.scale.length;
  if (q.scale instanceof Float32Array && q.min instanceof Float32Array) return { scale: q.scale, min: q.min };
  const sc = scale && scale.length >= n ? scale : new Float32Array(n);
  const mn = min && min.length >= n ? min : new Float32Array(n);
  const hs = q.scale;
  const hm = q.min;
  for (let s = 0; s < n; s++) {
    sc[s] = HALF[hs[s]];
    mn[s] = HALF[hm[s]];
  }
  return { scale: sc, min: mn };
}

// Buffers `dequantize` reuses, since it runs for every quantized row on every step: the codes
// unpacked one per byte ([tokens * channels], for the widths without a kernel of their own) and
// the statistics decoded from fp16 (as many as the block has).
let scratchCodes = new Uint8Array(4096);
let scratchScale = new Float32Array(256);
let scratchMin = new Float32Array(256);

function decodedStatistics(q: QuantBlock): { scale: Float32Array; min: Float32Array } {
  if (scratchScale.length < q.scale.length) {
    scratchScale = new Float32Array(q.scale.length);
    scratchMin = new Float32Array(q.scale.length);
  }
  return statistics(q, scratchScale, scratchMin);
}

/** Writes the reconstruction [tokens, channels] into `out` at `outOffset`: x' = min + code * scale,
 *  computed exactly as `dequantizeReference` does (the same double expression, rounded to fp32 once
 *  by the store), so the two agree bit for bit. This runs for every quantized row on every step, so
 *  each mode and width has its own straight typed-array loop (dequant-kernels.ts): a byte is loaded once and its 2 or 4
 *  codes taken out by shifts; keys ('channel') walk a token row against one row of statistics,
 *  values ('token') hoist each group's min and scale out of the loop. */
export function dequantize(q: QuantBlock, out: Float32Array, outOffset: number): void {
  const { bits, tokens, channels, group, codes } = q;
  const { scale, min } = decodedStatistics(q);
  if (bits === 6 && q.mode === 'channel' && channels % 4 === 0) return channel6(tokens, channels, group, codes, scale, min, out, outOffset);
  if (bits === 6 && q.mode === 'token' && group % 4 === 0) return token6(tokens, channels / group, group, codes, scale, min, out, outOffset);
  if (bits === 5 && q.mode === 'channel' && channels % 8 === 0) return channel5(tokens, channels, group, codes, scale, min, out, outOffset);
  if (bits === 5 && q.mode === 'token' && group % 8 === 0) return token5(tokens, channels / group, group, codes, scale, min, out, outOffset);
  if (bits === 6 || bits === 5 || bits === 3) {
    // unpack to one byte per code, then the 8-bit loops (same expression, so still bit-exact)
    const n = tokens * channels;
    if (scratchCodes.length < n) scratchCodes = new Uint8Array(n);
    unpack(codes, bits, n, scratchCodes);
    if (q.mode === 'channel') channel8(tokens, channels, group, scratchCodes, scale, min, out, outOffset);
    else token8(tokens, channels / group, group, scratchCodes, scale, min, out, outOffset);
    return;
  }
  if (q.mode === 'channel') {
    if (bits === 8) channel8(tokens, channels, group, codes, scale, min, out, outOffset);
    else if (bits === 4) channel4(tokens, channels, group, codes, scale, min, out, outOffset);
    else channel2(tokens, channels, group, codes, scale, min, out, outOffset);
  } else if ((group * bits) % 8 !== 0) {
    dequantizeReference(q, out, outOffset); // a byte would span two groups
  } else if (bits === 8) token8(tokens, channels / group, group, codes, scale, min, out, outOffset);
  else if (bits === 4) token4(tokens, channels / group, group, codes, scale, min, out, outOffset);
  else token2(tokens, channels / group, group, codes, scale, min, out, outOffset);
}

/** The straightforward reconstruction, element by element: the reference `dequantize` must equal
 *  bit for bit (tests). */
export function dequantizeReference(q: QuantBlock, out: Float32Array, outOffset: number): void {
  const { bits, tokens, channels, group, codes } = q;
  const { scale, min } = statistics(q);
  const channelMode = q.mode === 'channel';
  const groups = channels / group;
  for (let t = 0; t < tokens; t++) {
    const row = outOffset + t * channels;
    const sRow = channelMode ? ((t / group) | 0) * channels : t * groups;
    for (let c = 0; c < channels; c++) {
      const s = channelMode ? sRow + c : sRow + ((c / group) | 0);
      out[row + c] = min[s] + codeAt(codes, bits, t * channels + c) * scale[s];
    }
  }
}

/** Re-quantizes at a lower width (dequantize, then quantize again: the staircase demotion). */
export function requantize(q: QuantBlock, bits: number): QuantBlock {
  if (bits === q.bits) return q;
  const tmp = new Float32Array(q.tokens * q.channels);
  dequantize(q, tmp, 0);
  return quantize(tmp, 0, q.tokens, q.channels, bits, q.mode, q.group);
}
