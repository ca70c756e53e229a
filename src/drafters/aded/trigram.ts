// The ADED corpus prior: a pruned trigram table (a, b) -> [(c, p)], built by
// models/tooling/trigram.py. See that file for the binary format.
import { readFileSync } from 'node:fs';

export class TrigramTable {
  private constructor(
    readonly vocab: number,
    /** [rows] a * vocab + b, ascending */
    private readonly keys: Uint32Array,
    /** [rows + 1] */
    private readonly offsets: Uint32Array,
    /** [entries] successor token, by descending probability within a row */
    readonly next: Uint16Array,
    /** [entries] */
    readonly prob: Float32Array,
  ) {}

  static load(file: string): TrigramTable {
    const buf = readFileSync(file);
    if (buf.toString('latin1', 0, 4) !== 'TRI1') throw new Error(`${file}: not a trigram table`);
    const vocab = buf.readUInt32LE(4);
    const rows = buf.readUInt32LE(8);
    const entries = buf.readUInt32LE(12);
    // copy into aligned arrays (the Buffer may not be 4-byte aligned)
    let off = 16;
    const take = (bytes: number) => {
      const ab = new ArrayBuffer(bytes);
      new Uint8Array(ab).set(buf.subarray(off, off + bytes));
      off += bytes;
      return ab;
    };
    const keys = new Uint32Array(take(rows * 4));
    const offsets = new Uint32Array(take((rows + 1) * 4));
    const next = new Uint16Array(take(entries * 2));
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
