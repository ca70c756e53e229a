// Request validation: zod schemas from schemas.ts, failures turned straight into ApiError so the
// error handler sees one kind of error. Clients get one message naming one field (`param`), the
// way OpenAI reports validation problems, rather than a list of zod issues.

import type { FastifySchemaCompiler } from 'fastify';
import { safeParse, type $ZodIssue, type $ZodType } from 'zod/v4/core';
import { ApiError } from '../errors.ts';
import { UNSUPPORTED_ISSUE } from './unsupported.ts';

export const validatorCompiler: FastifySchemaCompiler<$ZodType> =
  ({ schema, httpPart }) =>
  (data) => {
    const result = safeParse(schema, data);
    if (result.success) return { value: result.data };
    return { error: apiErrorFromIssues(result.error.issues, httpPart) };
  };

export function apiErrorFromIssues(issues: readonly $ZodIssue[], httpPart?: string): ApiError {
  const issue = mostSpecific(issues[0]);
  const param = issue.path.length > 0 ? issue.path.join('.') : null;
  const unsupported = issue.code === 'custom' && issue.params?.apiCode === UNSUPPORTED_ISSUE.apiCode;
  if (unsupported) return new ApiError('unsupported_parameter', issue.message, param);
  const detail = issue.message.replace(/^Invalid input: /, '');
  const where = param === null ? (httpPart === 'body' || httpPart === undefined ? 'request body' : httpPart) : `'${param}'`;
  const message = param === null && issue.code === 'invalid_type' ? `Invalid ${where}: must be a JSON object` : `Invalid ${where}: ${detail}`;
  return new ApiError('invalid_request', message, param);
}

// A union failure lists every branch's issues; the useful one is from the branch that got past the
// type check at the union's own level (e.g. an array of content parts with a bad part), so the
// client is told `messages.0.content.1.text` rather than just `messages.0.content`.
function mostSpecific(issue: $ZodIssue): $ZodIssue {
  if (issue.code !== 'invalid_union' || issue.errors.length === 0) return issue;
  const candidates = issue.errors
    .map((branch) => branch[0])
    .filter((first): first is $ZodIssue => first !== undefined && !(first.code === 'invalid_type' && first.path.length === 0));
  if (candidates.length === 0) return issue;
  const deepest = candidates.reduce((best, next) => (next.path.length > best.path.length ? next : best));
  return mostSpecific({ ...deepest, path: [...issue.path, ...deepest.path] } as $ZodIssue);
}
