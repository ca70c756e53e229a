// Engine-side Prometheus metrics (the server's own live in src/server/metrics.ts): acceptance per
// draft position, KV cache accounting. Registered into the server's registry.
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import type { KvStats } from '../kvcache/paged.ts';
import type { EngineHooks } from './engine.ts';
import type { DraftCapSnapshot } from '../worker/protocol.ts';

export function engineMetricsHooks(registry: Registry, log?: EngineHooks['log']): EngineHooks {
  const registers = [registry];
  const perPos = new Counter({
    name: 'specserve_spec_decode_num_accepted_tokens_per_pos_total',
    help: 'Accepted draft tokens by position along the accepted path (0 = first draft token)',
    labelNames: ['drafter', 'position'] as const,
    registers,
  });
  const fallbacks = new Counter({
    name: 'specserve_spec_decode_fallbacks_total',
    help: 'Requests that asked for speculation which could not run for them and decoded plainly',
    labelNames: ['drafter'] as const,
    registers,
  });
  let kv: KvStats | null = null;
  const tiers = new Set(['fp32', 'reserved']); // every tier reported so far (stairs: q8, q6, q5, ...)
  new Gauge({
    name: 'specserve_kv_cache_bytes',
    help: 'KV cache bytes by tier (fp32 window, qN quantized stairs of N bits, q4-8 for stairs mixing widths by layer, reserved = promised to admitted requests and not yet written, free = budget not in use)',
    labelNames: ['tier'] as const,
    registers,
    collect() {
      if (!kv) return;
      for (const tier of Object.keys(kv.bytesByTier)) tiers.add(tier);
      for (const tier of tiers) this.set({ tier }, kv.bytesByTier[tier] ?? 0);
      this.set({ tier: 'free' }, kv.bytesTotal - kv.bytesInUse);
    },
  });
  new Gauge({
    // the name and the 0–1 range an inference pool's endpoint picker reads (vLLM's kv_cache_usage_perc)
    name: 'specserve_kv_cache_usage_perc',
    help: 'KV cache in use (written or reserved for admitted requests) over the budget, 0 to 1',
    registers,
    collect() {
      if (kv) this.set(kv.bytesTotal > 0 ? kv.bytesInUse / kv.bytesTotal : 0);
    },
  });
  new Gauge({
    name: 'specserve_kv_cache_tokens',
    help: 'Committed tokens held in the KV cache',
    registers,
    collect() {
      if (kv) this.set(kv.tokens);
    },
  });
  new Gauge({
    name: 'specserve_kv_cache_blocks_free',
    help: 'Free KV cache blocks',
    registers,
    collect() {
      if (kv) this.set(kv.blocksFree);
    },
  });
  new Gauge({
    name: 'specserve_kv_cache_sequences',
    help: 'Sequences holding KV cache blocks',
    registers,
    collect() {
      if (kv) this.set(kv.sequences);
    },
  });
  let caps: DraftCapSnapshot[] = [];
  new Gauge({
    name: 'specserve_spec_draft_cap',
    help: "Draft tokens per sequence and step the goodput policy currently allows, by drafter ('mixed' = batches of several) and batch-size class (0 = speculation off)",
    labelNames: ['drafter', 'batch_class'] as const,
    registers,
    collect() {
      for (const c of caps) this.set({ drafter: c.drafter, batch_class: c.batchClass }, c.cap);
    },
  });
  // 16 KiB .. 256 MiB in powers of 4: one 16-token fp32 block of the tiny model is 96 KiB
  const kvPeak = new Histogram({
    name: 'specserve_kv_request_peak_bytes',
    help: 'Most KV cache bytes each request held at once, whether it finished, was cancelled or failed (written blocks and quantized stairs, without its admission reservation)',
    buckets: Array.from({ length: 8 }, (_, i) => 16384 * 4 ** i),
    registers,
  });
  return {
    log,
    onRequestKv(peakBytes) {
      kvPeak.observe(peakBytes);
    },
    onSpecStep(m) {
      for (const p of m.acceptedPositions) perPos.inc({ drafter: m.drafter, position: String(p) });
    },
    onFallback(drafter) {
      fallbacks.inc({ drafter });
    },
    onLoad(_running, _waiting, stats, draftCaps) {
      kv = stats;
      if (draftCaps) caps = draftCaps;
    },
  };
}
