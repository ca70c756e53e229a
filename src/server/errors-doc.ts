// The error table as README markdown, generated from src/errors.ts so the docs cannot drift.

import { ERRORS } from '../errors.ts';

export function errorTableMarkdown(): string {
  const rows = Object.entries(ERRORS).map(
    ([code, { status, type, message }]) => `| \`${code}\` | ${status} | \`${type}\` | ${message.replaceAll('|', '\\|')} |`,
  );
  return ['| code | HTTP | type | default message |', '| --- | --- | --- | --- |', ...rows].join('\n');
}
