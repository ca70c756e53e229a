// Group-wise asymmetric min-max quantization with tightly packed codes (KIVI's scheme, the base of
// SAQ). Keys are quantized per channel (groups run along the token axis), values per token (groups
// run along the channel axis).
//   scale = (max - min) / (2^bits - 1),  code = round((x - min) / scale),  x' = min + code * scale
// so every element is reconstructed within scale / 2.

export type QuantMode = 'channel' | 'token';

export interface QuantBlock {
  bits: number;
  mode: QuantMode;
  /** Tokens and channels of the block. */
  tokens: number;
  channels: number;
  group: number;
  /** Packed codes, token-major [tokens, channels], `8 / bits` codes per byte. */
  codes: Uint8Array;
  /** 'channel': [tokens / group, channels]; 'token': [tokens, channels / group]. */
  scale: Float32Array;
  min: Float32Array;
}

export const SUPPORTED_BITS = [8, 4, 2] as const;

export function quantBytes(q: QuantBlock): number {
  return q.codes.byteLength + q.scale.byteLength + q.min.byteLength;
}

/** Quantizes src [tokens, channels] (token-major, starting at `offset`). */
export function quantize(src: Float32Array, offset: number, tokens: number, channels: number, bits: number, mode: QuantMode, group: number): QuantBlock {
  if (!(SUPPORTED_BITS as readonly number[]).includes(bits)) throw new Error(`unsupported bit width ${bits}`);
  if (channels % (8 / bits) !== 0) throw new Error(`channels ${channels} must be a multiple of ${8 / bits} for ${bits}-bit packing`);
  const perGroupAxis = mode === 'channel' ? tokens : channels;
  if (perGroupAxis % group !== 0) throw new Error(`${mode} quantization needs a multiple of ${group}, got ${perGroupAxis}`);
  const levels = (1 << bits) - 1;
  const nStats = mode === 'channel' ? (tokens / group) * channels : tokens * (channels / group);
  const scale = new Float32Array(nStats);
  const min = new Float32Array(nStats);
  const codes = new Uint8Array(Math.ceil((tokens * channels * bits) / 8));
  const statIndex = (t: number, c: number) => (mode === 'channel' ? ((t / group) | 0) * channels + c : t * (channels / group) + ((c / group) | 0));
  // statistics
  const lo = new Float32Array(nStats).fill(Infinity);
  const hi = new Float32Array(nStats).fill(-Infinity);
  for (let t = 0; t < tokens; t++) {
    const row = offset + t * channels;
    for (let c = 0; c < channels; c++) {
      const x = src[row + c];
      const s = statIndex(t, c);
      if (x < lo[s]) lo[s] = x;
      if (x > hi[s]) hi[s] = x;
    }
  }
  for (let s = 0; s < nStats; s++) {
    min[s] = lo[s];
    scale[s] = (hi[s] - lo[s]) / levels;
  }
  // codes
  const perByte = 8 / bits;
  for (let t = 0; t < tokens; t++) {
    const row = offset + t * channels;
    for (let c = 0; c < channels; c++) {
      const s = statIndex(t, c);
      const sc = scale[s];
      const code = sc > 0 ? Math.min(levels, Math.max(0, Math.round((src[row + c] - min[s]) / sc))) : 0;
      const i = t * channels + c;
      codes[(i / perByte) | 0] |= code << ((i % perByte) * bits);
    }
  }
  return { bits, mode, tokens, channels, group, codes, scale, min };
}

/** Writes the reconstruction [tokens, channels] into `out` at `outOffset`: x' = min + code * scale,
 *  computed exactly as `dequantizeReference` does (the same double expression, rounded to fp32 once
 *  by the store), so the two agree bit for bit. This runs for every quantized row on every step, so
 *  each mode and width has its own straight typed-array loop: a byte is loaded once and its 2 or 4
 *  codes taken out by shifts; keys ('channel') walk a token row against one row of statistics,
 *  values ('token') hoist each group's min and scale out of the loop. */
export function dequantize(q: QuantBlock, out: Float32Array, outOffset: number): void {
  const { bits, tokens, channels, group, codes, scale, min } = q;
  if (channels % (8 / bits) !== 0) throw new Error(`channels ${channels} not a multiple of ${8 / bits}`);
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

type Unpack = (tokens: number, a: number, b: number, codes: Uint8Array, scale: Float32Array, min: Float32Array, out: Float32Array, off: number) => void;

const channel8: Unpack = (tokens, C, group, codes, scale, min, out, off) => {
  for (let t = 0, b = 0, o = off; t < tokens; t++) {
    for (let s = ((t / group) | 0) * C, end = s + C; s < end; s++, b++, o++) out[o] = min[s] + codes[b] * scale[s];
  }
};

const channel4: Unpack = (tokens, C, group, codes, scale, min, out, off) => {
  for (let t = 0, b = 0, o = off; t < tokens; t++) {
    for (let s = ((t / group) | 0) * C, end = s + C; s < end; s += 2, b++, o += 2) {
      const x = codes[b];
      out[o] = min[s] + (x & 15) * scale[s];
      out[o + 1] = min[s + 1] + (x >> 4) * scale[s + 1];
    }
  }
};

const channel2: Unpack = (tokens, C, group, codes, scale, min, out, off) => {
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

/** 'token' mode: `groups` groups of `group` channels per token, one (min, scale) each. */
const token8: Unpack = (tokens, groups, group, codes, scale, min, out, off) => {
  for (let s = 0, b = 0, o = off, n = tokens * groups; s < n; s++) {
    const mn = min[s];
    const sc = scale[s];
    for (const end = b + group; b < end; b++, o++) out[o] = mn + codes[b] * sc;
  }
};

const token4: Unpack = (tokens, groups, group, codes, scale, min, out, off) => {
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

const token2: Unpack = (tokens, groups, group, codes, scale, min, out, off) => {
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

/** The straightforward reconstruction, element by element: the reference `dequantize` must equal
 *  bit for bit (tests). */
export function dequantizeReference(q: QuantBlock, out: Float32Array, outOffset: number): void {
  const { bits, tokens, channels, group, codes, scale, min } = q;
  const perByte = 8 / bits;
  const mask = (1 << bits) - 1;
  const channelMode = q.mode === 'channel';
  const groups = channels / group;
  let byteIdx = 0;
  if (channels % perByte !== 0) throw new Error(`channels ${channels} not a multiple of ${perByte}`);
  for (let t = 0; t < tokens; t++) {
    const row = outOffset + t * channels;
    const sRow = channelMode ? ((t / group) | 0) * channels : t * groups;
    for (let c = 0; c < channels; c += perByte) {
      let byte = codes[byteIdx++];
      for (let j = 0; j < perByte; j++, byte >>= bits) {
        const cc = c + j;
        const s = channelMode ? sRow + cc : sRow + ((cc / group) | 0);
        out[row + cc] = min[s] + (byte & mask) * scale[s];
      }
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
