// The past K/V input of one kind of batched forward, kept between steps.
//
// The ONNX contract takes each layer's past as one dense [batch, kvHeads, past, headDim] tensor, so
// a step's input is a copy of every row of every sequence in the batch. Built afresh each step,
// that copy grows with batch x context: at 16 sequences of ~150 tokens it was a sixth of a decode
// step on 2 CPU cores. Decode batches change little from one step to the next (the same sequences,
// each a few rows longer), so this view keeps the dense buffer and copies only what changed:
//   - each sequence keeps its batch slot (one [kvHeads, stride, headDim] block) while it stays in
//     the batch; a sequence that leaves is
//     replaced by the last slot's (one move), newcomers take the free slots;
//   - a slot is brought up to date by copying the rows committed since it was last synced, and the
//     rows a SAQ demotion rewrote since then (a stair or two every `step` tokens, not the past);
//   - the past dimension (the slot stride) grows geometrically (GROWTH), so the held rows move to a
//     new buffer once every ~quarter of growth, not every few steps: a move copies every row of
//     every slot (at 16 streams of ~200 tokens, rounding to 16 rows moved 20 MB every 16 steps, a
//     fifth of the decode time with the garbage collection it caused). Rows past a sequence's length
//     are masked by the attention bias, as padding always was.
import type { PagedKvCache } from './paged.ts';

/** A new stride is the rows needed plus this fraction, rounded up to ROUND (every padded row costs
 *  the forward a little: the graph copies and attends over the whole past buffer). */
const GROWTH = 0.25;
const ROUND = 16;
/** The stride is rebuilt smaller when it exceeds the rows needed by more than this fraction of them
 *  plus 4 x ROUND (more than a growth step: no rebuilding back and forth). */
const SHRINK = 0.6;

interface Slot {
  id: number;
  gen: number;
  /** Rows [0, valid) of the slot hold the sequence's committed rows. */
  valid: number;
  /** The cache's rewrite count for the sequence when the slot was last synced (SAQ demotions). */
  rewrites: number;
}

export interface BatchPastView {
  /** Order of the requested ids in the batch (indices into the ids given to `prepare`). */
  order: number[];
  /** The past dimension of the tensors (>= every sequence's length + the room asked for). */
  stride: number;
  /** Per layer [batch, kvHeads, stride, headDim]. */
  keys: Float32Array[];
  values: Float32Array[];
  /** Rows copied to bring the view up to date this step (for tests and profiling). */
  copiedRows: number;
}

export class BatchPast {
  private slots: Slot[] = [];
  private stride = 0;
  private capacity = 0; // slots the buffers hold
  private keys: Float32Array[] = [];
  private values: Float32Array[] = [];
  private readonly W: number;
  private readonly H: number;
  private readonly D: number;
  private readonly layers: number;

  /** A view of target layers [layerFrom, layerTo). */
  constructor(
    private readonly kv: PagedKvCache,
    private readonly layerFrom: number,
    private readonly layerTo: number,
  ) {
    this.W = kv.rowWidth;
    this.H = kv.shape.kvHeads;
    this.D = kv.shape.headDim;
    this.layers = layerTo - layerFrom;
  }

  /** Brings the buffer up to date for a batch of sequences and returns it, with room for `room` new
   *  rows after the longest (the graph writes a step's new K/V into the buffer). Sequences already
   *  held keep their slots, so the batch order is the view's (`order`), not the caller's. */
  prepare(ids: number[], room = 0): BatchPastView {
    const B = ids.length;
    const lens = ids.map((id) => this.kv.length(id));
    const need = Math.max(1, ...lens) + room;
    let copied = 0;
    if (need > this.stride || this.stride - need > SHRINK * need + 4 * ROUND)
      this.relayout(Math.ceil((need * (1 + GROWTH)) / ROUND) * ROUND, Math.max(B, this.capacity));
    else if (B > this.capacity) this.relayout(this.stride, Math.max(B, this.capacity * 2));

    // slots: keep those still in the batch and still the same sequence (generation) where they are
    const want = new Map(ids.map((id, i) => [id, i]));
    const placed: (Slot | null)[] = new Array(B).fill(null);
    const moving: { slot: Slot; from: number }[] = [];
    this.slots.forEach((s, at) => {
      if (!want.has(s.id) || this.kv.generation(s.id) !== s.gen) return;
      if (at < B) placed[at] = s;
      else moving.push({ slot: s, from: at });
    });
    const held = new Set([...placed.filter((s) => s !== null).map((s) => s.id), ...moving.map((m) => m.slot.id)]);
    const fresh = ids.filter((id) => !held.has(id));
    const slotRows = this.stride * this.W;
    for (let at = 0; at < B; at++) {
      if (placed[at]) continue;
      const m = moving.shift();
      if (m) {
        // a sequence from beyond the new batch size moves into this hole with the rows it has
        const n = m.slot.valid * this.D;
        for (let l = 0; l < this.layers; l++)
          for (let h = 0; h < this.H; h++) {
            const src = m.from * slotRows + h * this.stride * this.D;
            const dst = at * slotRows + h * this.stride * this.D;
            this.keys[l].copyWithin(dst, src, src + n);
            this.values[l].copyWithin(dst, src, src + n);
          }
        placed[at] = m.slot;
      } else {
        const id = fresh.shift()!;
        placed[at] = { id, gen: this.kv.generation(id), valid: 0, rewrites: this.kv.rewrites(id) };
      }
    }
    this.slots = placed as Slot[];

    // copy what each slot lacks
    for (let at = 0; at < B; at++) {
      const s = this.slots[at];
      const len = lens[want.get(s.id)!];
      const rewrites = this.kv.rewrites(s.id);
      if (rewrites !== s.rewrites) {
        for (const [from, to] of this.kv.rewrittenSince(s.id, s.rewrites)) {
          if (from >= s.valid) continue;
          this.kv.gatherRange(s.id, this.layerFrom, this.layerTo, from, Math.min(to, s.valid), this.keys, this.values, at, this.stride);
          copied += Math.min(to, s.valid) - from;
        }
        s.rewrites = rewrites;
      }
      if (s.valid < len) {
        this.kv.gatherRange(s.id, this.layerFrom, this.layerTo, s.valid, len, this.keys, this.values, at, this.stride);
        copied += len - s.valid;
        s.valid = len;
      }
    }
    const n = B * slotRows;
    return {
      order: this.slots.map((s) => want.get(s.id)!),
      stride: this.stride,
      keys: this.keys.map((k) => k.subarray(0, n)),
      values: this.values.map((v) => v.subarray(0, n)),
      copiedRows: copied,
    };
  }

  /** Drops everything (the next `prepare` copies the batch afresh). */
  clear(): void {
    this.slots = [];
    this.stride = 0;
    this.capacity = 0;
    this.keys = [];
    this.values = [];
  }

  /** Lays the buffers out as `capacity` slots of `stride` rows; the slots held keep their rows.
   *  The rows move inside the buffers when these are large enough (fresh memory costs a page fault
   *  per 4 KB on first touch, and garbage to collect), else into new ones with room for a growth step. */
  private relayout(stride: number, capacity: number): void {
    const from = this.stride;
    const { H, D } = this;
    // a slot longer than the new stride (a sequence that left the batch) is not carried over
    this.slots = this.slots.map((s) => (s.valid <= stride ? s : { ...s, gen: -1, valid: 0 }));
    const size = capacity * H * stride * D;
    const blocks = this.slots.length * H; // (slot, head) blocks holding rows, in buffer order
    const move = (buf: Float32Array | undefined): Float32Array => {
      if (!buf || buf.length < size) {
        const a = new Float32Array(Math.ceil(size * (1 + GROWTH)));
        for (let b = 0; b < blocks && buf; b++) a.set(buf.subarray(b * from * D, b * from * D + this.slots[(b / H) | 0].valid * D), b * stride * D);
        return a;
      }
      // growing, blocks move right: last first; shrinking, they move left: first first
      for (let i = 0; i < blocks; i++) {
        const b = stride > from ? blocks - 1 - i : i;
        const n = this.slots[(b / H) | 0].valid * D;
        if (n) buf.copyWithin(b * stride * D, b * from * D, b * from * D + n);
      }
      return buf;
    };
    this.keys = Array.from({ length: this.layers }, (_, l) => move(this.keys[l]));
    this.values = Array.from({ length: this.layers }, (_, l) => move(this.values[l]));
    this.stride = stride;
    this.capacity = capacity;
  }
}
