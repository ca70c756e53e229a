// Engine options with their defaults, in one place. The CLI/config layer fills these from flags,
// environment and config file (src/config.ts).

/** LANTERN (lossy, opt-in): neighbours walked per draft token when a request does not say.
 *  Defaults to `4`. */
export const LANTERN_K = 4;
/** LANTERN: total-variation budget per token when a request does not say. Defaults to `0.1` (the
 *  paper's default). */
export const LANTERN_DELTA = 0.1;

export const ENGINE_DEFAULTS = {
  /** Execution provider preference: "auto" tries CUDA then falls back to CPU. */
  provider: 'auto' as 'auto' | 'cuda' | 'cpu',
  /**
   * Weight format of the target graph, among those the model folder has (onnx/decoder_spec.onnx,
   * _int8, _q4; models/tooling/write_graphs.py writes them): 'auto' = int8 on the CPU provider when
   * present, else fp32 (see resolveVariant in model-config.ts).
   */
  dtype: 'auto' as 'auto' | 'fp32' | 'int8' | 'int4',
  /**
   * Intra-op threads for onnxruntime; 0 = one fewer than the CPU cores, at least 1 (autoThreads).
   * The inference worker's compute and the HTTP/SSE thread's work each want a core: on 2 cores one
   * intra-op thread decoded faster than two at every concurrency measured (1, 4 and 16 streams;
   * docs/benchmarks.md).
   */
  threads: 0,
  /**
   * Let onnxruntime's idle intra-op threads spin between ops. Spinning shaves a little latency
   * off a lone request on an otherwise idle machine, but the spinning threads take the cores the
   * HTTP/SSE thread needs: measured here (2 cores), plain aggregate tokens/s at 16 streams was
   * 1.5-2.5x higher with spinning off. Off by default.
   */
  spinThreads: false,
  /** Most sequences decoded together in one target forward. */
  maxBatchSize: 32,
  /** Requests waiting beyond the running batch before new ones get 429. */
  maxQueuedRequests: 256,
  /** KV cache budget in bytes. */
  kvCacheBytes: 512 * 1024 * 1024,
  /** KV precision: 'fp32' keeps outputs exact; 'saq' quantizes older tokens in stairs (lossy). */
  kvCache: 'fp32' as 'fp32' | 'saq',
  /** Drafter used when a request does not choose one ("none" = plain decoding). */
  defaultDrafter: 'none',
  /** Draft tokens verified per step when a request does not say. */
  maxDraftTokens: 8,
  /** Per-request deadline in milliseconds (0 = none). */
  requestTimeoutMs: 10 * 60 * 1000,
  /** Tokens of prompt prefilled per step, so long prompts do not stall running streams. */
  prefillChunk: 256,
  /**
   * How many draft tokens a step verifies per sequence: 'goodput' measures tokens/ms under each
   * cap per batch size and uses the best (0 = speculation off where it does not pay); 'static'
   * shares a fixed 32 draft tokens per step over the batch (deterministic drafting, for tests).
   */
  draftPolicy: 'goodput' as 'goodput' | 'static',
  /** Kangaroo's stop threshold; undefined = the one calibrated with the adapter (its manifest). */
  kangarooThreshold: undefined as number | undefined,
};

export type EngineOptions = typeof ENGINE_DEFAULTS & {
  /** Model folder (config.json, tokenizer.json, onnx/...). */
  modelDir: string;
  /** Name served in /v1/models; defaults to the folder name. */
  modelId?: string;
};
