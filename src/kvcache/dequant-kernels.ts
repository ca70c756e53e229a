// The dequantization kernels behind `dequantize` (quant.ts), one per mode and width. They run for
// every quantized row on every step, so each is a straight typed-array loop with no per-element
// branching: a byte is loaded once and its codes taken out by shifts. Each computes exactly the
// expression of `dequantizeReference` (min + code * scale in double, rounded to fp32 once by the
// store), so all of them agree with it bit for bit (test/kvcache/saq.test.ts).
//
// Codes are a little-endian bit stream, code i at bits [i * bits, (i + 1) * bits): 8, 4 and 2
// bits pack whole codes in a byte; 6 bits pack 4 codes in 3 bytes, 5 bits 8 codes in 5, 3 bits 8
// codes in 3.
//
// Each kernel takes (tokens, a, b, codes, scale, min, out, off): 'channel' kernels (keys) a =
// channels and b = tokens per group, statistics [tokens / group, channels]; 'token' kernels
// (values) a = groups per token and b = channels per group, statistics [tokens, groups].

/** The first n codes of a little-endian bit stream, one per byte: 6 bits as 4 codes in 3 bytes,
 *  5 and 3 bits as 8 codes in 5 and 3 bytes; a last partial run code by code. */
export function unpack(codes: Uint8Array, bits: number, n: number, out: Uint8Array): void {
  const run = bits === 6 ? 4 : 8;
  const whole = n - (n % run);
  if (bits === 6) {
    for (let i = 0, b = 0; i < whole; i += 4, b += 3) {
      const x = codes[b], y = codes[b + 1], z = codes[b + 2];
      out[i] = x & 63;
      out[i + 1] = (x >> 6) | ((y & 15) << 2);
      out[i + 2] = (y >> 4) | ((z & 3) << 4);
      out[i + 3] = z >> 2;
    }
  } else if (bits === 5) {
    for (let i = 0, b = 0; i < whole; i += 8, b += 5) {
      // 40 bits: the low 32 in one number, the top 8 apart
      const lo = (codes[b] | (codes[b + 1] << 8) | (codes[b + 2] << 16) | (codes[b + 3] << 24)) >>> 0;
      const hi = codes[b + 4];
      out[i] = lo & 31;
      out[i + 1] = (lo >>> 5) & 31;
      out[i + 2] = (lo >>> 10) & 31;
      out[i + 3] = (lo >>> 15) & 31;
      out[i + 4] = (lo >>> 20) & 31;
      out[i + 5] = (lo >>> 25) & 31;
      out[i + 6] = (lo >>> 30) | ((hi & 7) << 2);
      out[i + 7] = hi >> 3;
    }
  } else {
    for (let i = 0, b = 0; i < whole; i += 8, b += 3) {
      const w = codes[b] | (codes[b + 1] << 8) | (codes[b + 2] << 16);
      for (let j = 0; j < 8; j++) out[i + j] = (w >> (3 * j)) & 7;
    }
  }
  for (let i = whole; i < n; i++) out[i] = codeAt(codes, bits, i);
}

/** Code i of a little-endian bit stream of `bits`-bit codes. */
export function codeAt(codes: Uint8Array, bits: number, i: number): number {
  const bit = i * bits;
  const sh = bit & 7;
  let code = codes[bit >> 3] >> sh;
  if (sh + bits > 8) code |= codes[(bit >> 3) + 1] << (8 - sh);
  return code & ((1 << bits) - 1);
}

export type Unpack = (tokens: number, a: number, b: number, codes: Uint8Array, scale: Float32Array, min: Float32Array, out: Float32Array, off: number) => void;

export const channel8: Unpack = (tokens, C, group, codes, scale, min, out, off) => {
  const C4 = C - (C % 4);
  for (let t = 0, b = 0, o = off; t < tokens; t++) {
    const s0 = ((t / group) | 0) * C;
    let s = s0;
    for (const end = s0 + C4; s < end; s += 4, b += 4, o += 4) {
      out[o] = min[s] + codes[b] * scale[s];
      out[o + 1] = min[s + 1] + codes[b + 1] * scale[s + 1];
      out[o + 2] = min[s + 2] + codes[b + 2] * scale[s + 2];
      out[o + 3] = min[s + 3] + codes[b + 3] * scale[s + 3];
    }
    for (const end = s0 + C; s < end; s++, b++, o++) out[o] = min[s] + codes[b] * scale[s];
  }
};

export const channel4: Unpack = (tokens, C, group, codes, scale, min, out, off) => {
  for (let t = 0, b = 0, o = off; t < tokens; t++) {
    for (let s = ((t / group) | 0) * C, end = s + C; s < end; s += 2, b++, o += 2) {
      const x = codes[b];
      out[o] = min[s] + (x & 15) * scale[s];
      out[o + 1] = min[s + 1] + (x >> 4) * scale[s + 1];
    }
  }
};

export const channel2: Unpack = (tokens, C, group, codes, scale, min, out, off) => {
  for (let t = 0, b = 0, o = off; t < tokens; t++) {
    for (let s = ((t / group) | 0) * C, end = s + C; s < end; s += 4, b++, o += 4) {
      const x = codes[b];
      out[o] = min[s] + (x & 3) * scale[s];
      out[o + 1] = min[s + 1] + ((x >> 2) & 3) * scale[s + 1];
      out[o + 2] = min[s + 2] + ((x >> 4) & 3) * scale[s + 2];
      out[o + 3] = min[s + 3] + (x >> 6) * scale[s + 3];
    }
  }
};

// 6 bits: 4 codes in 3 bytes; 5 bits: 8 codes in 5 bytes (the low 32 bits as one number).
export const channel6: Unpack = (tokens, C, group, codes, scale, min, out, off) => {
  for (let t = 0, b = 0, o = off; t < tokens; t++) {
    for (let s = ((t / group) | 0) * C, end = s + C; s < end; s += 4, b += 3, o += 4) {
      const x = codes[b], y = codes[b + 1], z = codes[b + 2];
      out[o] = min[s] + (x & 63) * scale[s];
      out[o + 1] = min[s + 1] + ((x >> 6) | ((y & 15) << 2)) * scale[s + 1];
      out[o + 2] = min[s + 2] + ((y >> 4) | ((z & 3) << 4)) * scale[s + 2];
      out[o + 3] = min[s + 3] + (z >> 2) * scale[s + 3];
    }
  }
};

export const channel5: Unpack = (tokens, C, group, codes, scale, min, out, off) => {
  for (let t = 0, b = 0, o = off; t < tokens; t++) {
    for (let s = ((t / group) | 0) * C, end = s + C; s < end; s += 8, b += 5, o += 8) {
      const lo = (codes[b] | (codes[b + 1] << 8) | (codes[b + 2] << 16) | (codes[b + 3] << 24)) >>> 0;
      const hi = codes[b + 4];
      out[o] = min[s] + (lo & 31) * scale[s];
      out[o + 1] = min[s + 1] + ((lo >>> 5) & 31) * scale[s + 1];
      out[o + 2] = min[s + 2] + ((lo >>> 10) & 31) * scale[s + 2];
      out[o + 3] = min[s + 3] + ((lo >>> 15) & 31) * scale[s + 3];
      out[o + 4] = min[s + 4] + ((lo >>> 20) & 31) * scale[s + 4];
      out[o + 5] = min[s + 5] + ((lo >>> 25) & 31) * scale[s + 5];
      out[o + 6] = min[s + 6] + ((lo >>> 30) | ((hi & 7) << 2)) * scale[s + 6];
      out[o + 7] = min[s + 7] + (hi >> 3) * scale[s + 7];
    }
  }
};

export const token6: Unpack = (tokens, groups, group, codes, scale, min, out, off) => {
  for (let s = 0, b = 0, o = off, n = tokens * groups; s < n; s++) {
    const mn = min[s];
    const sc = scale[s];
    for (const end = b + ((group * 3) >> 2); b < end; b += 3, o += 4) {
      const x = codes[b], y = codes[b + 1], z = codes[b + 2];
      out[o] = mn + (x & 63) * sc;
      out[o + 1] = mn + ((x >> 6) | ((y & 15) << 2)) * sc;
      out[o + 2] = mn + ((y >> 4) | ((z & 3) << 4)) * sc;
      out[o + 3] = mn + (z >> 2) * sc;
    }
  }
};

export const token5: Unpack = (tokens, groups, group, codes, scale, min, out, off) => {
  for (let s = 0, b = 0, o = off, n = tokens * groups; s < n; s++) {
    const mn = min[s];
    const sc = scale[s];
    for (const end = b + ((group * 5) >> 3); b < end; b += 5, o += 8) {
      const lo = (codes[b] | (codes[b + 1] << 8) | (codes[b + 2] << 16) | (codes[b + 3] << 24)) >>> 0;
      const hi = codes[b + 4];
      out[o] = mn + (lo & 31) * sc;
      out[o + 1] = mn + ((lo >>> 5) & 31) * sc;
      out[o + 2] = mn + ((lo >>> 10) & 31) * sc;
      out[o + 3] = mn + ((lo >>> 15) & 31) * sc;
      out[o + 4] = mn + ((lo >>> 20) & 31) * sc;
      out[o + 5] = mn + ((lo >>> 25) & 31) * sc;
      out[o + 6] = mn + ((lo >>> 30) | ((hi & 7) << 2)) * sc;
      out[o + 7] = mn + (hi >> 3) * sc;
    }
  }
};

/** 'token' mode: `groups` groups of `group` channels per token, one (min, scale) each. */
export const token8: Unpack = (tokens, groups, group, codes, scale, min, out, off) => {
  for (let s = 0, b = 0, o = off, n = tokens * groups; s < n; s++) {
    const mn = min[s];
    const sc = scale[s];
    for (const end = b + group; b < end; b++, o++) out[o] = mn + codes[b] * sc;
  }
};

export const token4: Unpack = (tokens, groups, group, codes, scale, min, out, off) => {
  for (let s = 0, b = 0, o = off, n = tokens * groups; s < n; s++) {
    const mn = min[s];
    const sc = scale[s];
    for (const end = b + (group >> 1); b < end; b++, o += 2) {
      const x = codes[b];
      out[o] = mn + (x & 15) * sc;
      out[o + 1] = mn + (x >> 4) * sc;
    }
  }
};

export const token2: Unpack = (tokens, groups, group, codes, scale, min, out, off) => {
  for (let s = 0, b = 0, o = off, n = tokens * groups; s < n; s++) {
    const mn = min[s];
    const sc = scale[s];
    for (const end = b + (group >> 2); b < end; b++, o += 4) {
      const x = codes[b];
      out[o] = mn + (x & 3) * sc;
      out[o + 1] = mn + ((x >> 2) & 3) * sc;
      out[o + 2] = mn + ((x >> 4) & 3) * sc;
      out[o + 3] = mn + (x >> 6) * sc;
    }
  }
};
