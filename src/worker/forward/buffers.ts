// Past buffers reused from step to step: a forward's past K/V is tens of MB at long contexts, and
// allocating it fresh every step costs more than the copy into it.

export class BufferPool {
  private readonly buffers = new Map<string, Float32Array>();

  /** A buffer of n floats for `name`, grown by doubling; its contents are whatever was left. */
  get(name: string, n: number): Float32Array {
    let b = this.buffers.get(name);
    if (!b || b.length < n) {
      b = new Float32Array(Math.max(n, (b?.length ?? 0) * 2));
      this.buffers.set(name, b);
    }
    return b.subarray(0, n);
  }
}
