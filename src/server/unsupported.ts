// Parameters clients may send that would change the output but this server does not implement.
// Each gets a 400 `unsupported_parameter` naming it instead of a silent drop; any other unknown
// field is ignored (it cannot change the result). `active` says when a value actually asks for
// the feature, so a client sending the harmless default (`tools: []`, `logit_bias: {}`,
// `response_format: {type: "text"}`) is not refused.

import type { z } from 'zod';

type Body = Record<string, unknown>;
type Active = (value: unknown, body: Body) => boolean;

const present: Active = (value) => value !== undefined && value !== null;
const nonEmpty: Active = (value) => {
  if (Array.isArray(value)) return value.length > 0;
  if (value !== null && typeof value === 'object') return Object.keys(value).length > 0;
  return present(value, {});
};
const notToolChoiceDefault: Active = (value) => present(value, {}) && value !== 'none' && value !== 'auto';

const SHARED: Record<string, Active> = {
  logit_bias: nonEmpty,
  response_format: (value) =>
    present(value, {}) && !(typeof value === 'object' && (value as { type?: unknown }).type === 'text'),
  // vLLM sampling extensions some clients send; they change what is generated.
  repetition_penalty: (value) => present(value, {}) && value !== 1,
  min_p: (value) => present(value, {}) && value !== 0,
  use_beam_search: (value) => value === true,
  stop_token_ids: nonEmpty,
  include_stop_str_in_output: (value) => value === true,
  bad_words: nonEmpty,
  allowed_token_ids: nonEmpty,
  prompt_logprobs: present,
  guided_json: present,
  guided_regex: present,
  guided_choice: present,
  guided_grammar: present,
  structured_outputs: present,
};

export const COMPLETION_UNSUPPORTED: Record<string, Active> = {
  ...SHARED,
  suffix: (value) => (typeof value === 'string' ? value.length > 0 : present(value, {})),
  // best_of == n is plain sampling; more would need server-side ranking.
  best_of: (value, body) => typeof value === 'number' && value > ((body.n as number | null | undefined) ?? 1),
};

export const CHAT_UNSUPPORTED: Record<string, Active> = {
  ...SHARED,
  tools: nonEmpty,
  tool_choice: notToolChoiceDefault,
  functions: nonEmpty,
  function_call: notToolChoiceDefault,
  audio: present,
  modalities: (value) => Array.isArray(value) && value.some((m) => m !== 'text'),
  web_search_options: present,
  reasoning_effort: present,
  verbosity: present,
};

/** Marks a zod issue so the validator maps it to `unsupported_parameter` instead of `invalid_request`. */
export const UNSUPPORTED_ISSUE = { apiCode: 'unsupported_parameter' } as const;

export function unsupportedMessage(param: string): string {
  return `Unsupported parameter: '${param}' is not supported by this server`;
}

/** A zod refinement that refuses every active unsupported field of `body`. */
export function refuseUnsupported(table: Record<string, Active>) {
  return (body: Body, ctx: z.RefinementCtx) => {
    for (const [field, active] of Object.entries(table)) {
      if (active(body[field], body)) {
        ctx.addIssue({ code: 'custom', path: [field], message: unsupportedMessage(field), params: UNSUPPORTED_ISSUE });
      }
    }
  };
}
