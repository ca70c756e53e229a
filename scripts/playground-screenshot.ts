// npm run screenshot — starts the server on the bundled model, races prompt lookup against plain
// decoding in the playground (headless Chromium) and saves the page as docs/playground.png, the
// picture in the README. The server runs the static draft policy: the default goodput policy
// starts by exploring draft caps, and for a batch of two on this tiny model it often settles on
// not drafting at all, which would picture the policy rather than the page.
import { spawn } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Command } from 'commander';
import { waitHealthy } from '../bench/server-bench.ts';
import { launchBrowser } from './browser.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const o = new Command()
  .name('screenshot')
  .option('--port <n>', 'port for the server', (v) => parseInt(v, 10), 8797)
  .option('--drafter <name>', 'drafter raced against plain decoding', 'prompt-lookup')
  .option('--out <file>', 'where the PNG goes', path.join(ROOT, 'docs', 'playground.png'))
  .parse()
  .opts();

const base = `http://127.0.0.1:${o.port}`;
const server = spawn(process.execPath, ['--import', 'tsx', path.join(ROOT, 'src', 'cli.ts'), '--port', String(o.port), '--log-level', 'warn', '--draft-policy', 'static'], { cwd: ROOT, stdio: 'inherit' });
try {
  await waitHealthy(base);
  const browser = await launchBrowser();
  try {
    const page = await browser.newPage({ viewport: { width: 1280, height: 940 } });
    await page.goto(`${base}/`);
    await page.waitForSelector(`[data-testid="drafter"] option[value="${o.drafter}"]`, { state: 'attached' });
    await page.selectOption('[data-testid="drafter"]', o.drafter);
    await page.check('[data-testid="race"]');
    await page.click('[data-testid="send"]');
    await page.waitForFunction(() => (document.querySelector('[data-testid="race-verdict"]')?.textContent ?? '').length > 0, null, { timeout: 60_000 });
    // point at a drafted token so the picture shows what that tells
    await page.locator('[data-testid="output"] [data-source="draft"]').nth(3).hover();
    await page.screenshot({ path: o.out, fullPage: true });
    console.log(`wrote ${o.out}: ${await page.textContent('[data-testid="race-verdict"]')}`);
  } finally {
    await browser.close();
  }
} finally {
  server.kill('SIGTERM');
}
