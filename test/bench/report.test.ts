import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { mdTable, writeReport } from '../../bench/report.ts';

test('HTML reports render the Markdown tables as tables', () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'report-'));
  const md = `### Run\n\nCommand: \`npm run loadtest\`\n\n${mdTable(['concurrency', 'tok/s'], [[1, '1,988.0'], [16, '4,234.0']])}`;
  writeReport(dir, 'r', {}, md, [{ title: 't', type: 'bar', labels: ['a'], yLabel: 'y', series: [{ label: 's', data: [1] }] }]);
  const html = readFileSync(path.join(dir, 'r.html'), 'utf8');
  assert.match(html, /<table>[\s\S]*<th>concurrency<\/th>[\s\S]*<td>4,234.0<\/td>[\s\S]*<\/table>/);
  assert.ok(!html.includes('| --- |'), 'raw Markdown table left in the page');
  assert.match(html, /<code>npm run loadtest<\/code>/);
  assert.equal(readFileSync(path.join(dir, 'r.md'), 'utf8'), md);
});
