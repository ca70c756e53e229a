// Optional bearer-token check. Keys are compared as SHA-256 digests so timingSafeEqual always gets
// equal-length buffers and the comparison time does not leak the key's length or prefix.

import { createHash, timingSafeEqual } from 'node:crypto';
import type { FastifyRequest } from 'fastify';
import { ApiError } from '../errors.ts';

const digest = (value: string) => createHash('sha256').update(value, 'utf8').digest();

export function createApiKeyCheck(apiKey: string) {
  const expected = digest(apiKey);
  return async function checkApiKey(request: FastifyRequest): Promise<void> {
    if (request.routeOptions.config?.public === true) return;
    const match = /^Bearer\s+(\S.*)$/i.exec(request.headers.authorization ?? '');
    if (!match) {
      throw new ApiError('invalid_api_key', 'Missing API key: send the header "Authorization: Bearer <key>"');
    }
    if (!timingSafeEqual(digest(match[1].trim()), expected)) {
      throw new ApiError('invalid_api_key', 'Incorrect API key provided');
    }
  };
}
