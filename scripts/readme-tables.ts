// npm run docs — rewrites the generated tables in README.md (between their markers) from the code,
// so the configuration and error tables cannot drift (test/server/docs.test.ts checks them).
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { configTableMarkdown } from '../src/config.ts';
import { errorTableMarkdown } from '../src/server/errors-doc.ts';

const file = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'README.md');
let readme = readFileSync(file, 'utf8');
for (const [name, table] of [['config-table', configTableMarkdown()], ['error-table', errorTableMarkdown()]] as const) {
  const re = new RegExp(`(<!-- ${name} -->\\n)[\\s\\S]*?(\\n<!-- /${name} -->)`);
  if (!re.test(readme)) throw new Error(`README.md has no <!-- ${name} --> markers`);
  readme = readme.replace(re, `$1${table.trim()}$2`);
}
writeFileSync(file, readme);
console.log('README.md tables updated');
