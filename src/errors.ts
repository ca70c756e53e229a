// The one error table. Every error the server returns is one of these codes; the engine throws
// them too, so an engine-side problem (context too long, queue full) reaches the client with the
// right status and OpenAI `type` without any translation layer.
// Codes are never reused for a different meaning.

export const ERRORS = {
  invalid_request: { status: 400, type: 'invalid_request_error', message: 'Invalid request' },
  invalid_json: { status: 400, type: 'invalid_request_error', message: 'Request body is not valid JSON' },
  context_length_exceeded: { status: 400, type: 'invalid_request_error', message: 'Prompt too long' },
  unknown_drafter: { status: 400, type: 'invalid_request_error', message: 'Unknown drafter' },
  unsupported_parameter: { status: 400, type: 'invalid_request_error', message: 'Unsupported parameter' },
  invalid_api_key: { status: 401, type: 'authentication_error', message: 'Invalid or missing API key' },
  model_not_found: { status: 404, type: 'invalid_request_error', message: 'Model not found' },
  not_found: { status: 404, type: 'invalid_request_error', message: 'Not found' },
  body_too_large: { status: 413, type: 'invalid_request_error', message: 'Request body too large' },
  unsupported_media_type: { status: 415, type: 'invalid_request_error', message: 'Unsupported content type' },
  queue_full: { status: 429, type: 'rate_limit_error', message: 'Server is at capacity; retry later' },
  internal_error: { status: 500, type: 'server_error', message: 'Internal server error' },
  engine_failed: { status: 500, type: 'server_error', message: 'The inference worker failed' },
  request_timeout: { status: 504, type: 'server_error', message: 'Request timed out' },
  model_loading: { status: 503, type: 'server_error', message: 'Model is still loading' },
  overloaded: { status: 503, type: 'server_error', message: 'Server is overloaded (event loop delay too high); retry later' },
  shutting_down: { status: 503, type: 'server_error', message: 'Server is shutting down' },
} as const satisfies Record<string, { status: number; type: string; message: string }>;

export type ErrorCode = keyof typeof ERRORS;

export class ApiError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  readonly type: string;
  readonly param: string | null;
  /** Seconds, for 429/503. */
  readonly retryAfter?: number;

  constructor(code: ErrorCode, message?: string, param: string | null = null, retryAfter?: number) {
    super(message ?? ERRORS[code].message);
    this.name = 'ApiError';
    this.code = code;
    this.status = ERRORS[code].status;
    this.type = ERRORS[code].type;
    this.param = param;
    this.retryAfter = retryAfter;
  }

  toJSON() {
    return { error: { message: this.message, type: this.type, param: this.param, code: this.code } };
  }
}

/** A request's drafter must be "none" or one the model lists (available or not: an unavailable
 *  one falls back to plain decoding and says why). */
export function assertKnownDrafter(drafter: string, known: readonly { name: string }[]): void {
  if (drafter === 'none' || known.some((d) => d.name === drafter)) return;
  const names = ['none', ...known.map((d) => d.name)].join(', ');
  throw new ApiError('unknown_drafter', `Unknown drafter '${drafter}'; known: ${names}`, 'speculative.drafter');
}
