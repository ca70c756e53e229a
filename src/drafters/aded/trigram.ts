// The ADED corpus prior: a pruned trigram table (a, b) -> [(c, p)], built by
// models/tooling/trigram.py. See that file for the binary format: 'TRI1' for vocabularies up to
// 65,536 tokens (u32 keys, u16 successors), 'TRI2' past that (u64 keys, u32 successors).
import { readFileSync } from 'node:fs';

/** Per format version: bytes of a key and of a successor id. */
const FORMATS: Record<string, { keyBytes: 4 | 8; nextBytes: 2 | 4 }> = {
  TRI1: { keyBytes: 4, nextBytes: 2 },
  TRI2: { keyBytes: 8, nextBytes: 4 },
};

export class TrigramTable {
  private constructor(
    readonly vocab: number,
    /** [rows] a * vocab + b, ascending (TRI2's u64 keys as doubles: exact below 2^53, and
     *  a * vocab + b stays below that for any vocabulary under 94 M tokens) */
    private readonly keys: Uint32Array | Float64Array,
    /** [rows + 1] */
    private readonly offsets: Uint32Array,
    /** [entries] successor token, by descending probability within a row */
    readonly next: Uint16Array | Uint32Array,
    /** [entries] */
    readonly prob: Float32Array,
  ) {}

  static load(file: string): TrigramTable {
    const buf = readFileSync(file);
    const magic = buf.toString('latin1', 0, 4);
    const format = FORMATS[magic];
    if (!format) throw new Error(`${file}: not a trigram table (magic ${JSON.stringify(magic)}; expected ${Object.keys(FORMATS).join(' or ')})`);
    const vocab = buf.readUInt32LE(4);
    const rows = buf.readUInt32LE(8);
    const entries = buf.readUInt32LE(12);
    const size = 16 + rows * format.keyBytes + (rows + 1) * 4 + entries * (format.nextBytes + 4);
    if (buf.length !== size) throw new Error(`${file}: ${buf.length} bytes, its header implies ${size}`);
    // copy into aligned arrays (the Buffer may not be 4-byte aligned)
    let off = 16;
    const take = (bytes: number) => {
      const ab = new ArrayBuffer(bytes);
      new Uint8Array(ab).set(buf.subarray(off, off + bytes));
      off += bytes;
      return ab;
    };
    const keys = format.keyBytes === 4 ? new Uint32Array(take(rows * 4)) : Float64Array.from(new BigUint64Array(take(rows * 8)), Number);
    const offsets = new Uint32Array(take((rows + 1) * 4));
    const next = format.nextBytes === 2 ? new Uint16Array(take(entries * 2)) : new Uint32Array(take(entries * 4));
    const prob = new Float32Array(take(entries * 4));
    return new TrigramTable(vocab, keys, offsets, next, prob);
  }

  /** [start, end) range of entries for the pair (a, b); empty when unseen. */
  row(a: number, b: number): [number, number] {
    const key = a * this.vocab + b;
    let lo = 0;
    let hi = this.keys.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      const k = this.keys[mid];
      if (k === key) return [this.offsets[mid], this.offsets[mid + 1]];
      if (k < key) lo = mid + 1;
      else hi = mid - 1;
    }
    return [0, 0];
  }
}
