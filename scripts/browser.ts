// Headless Chromium through playwright-core, which never downloads a browser of its own: Debian's
// `chromium` package, or the binary named by CHROMIUM_PATH.
import { existsSync } from 'node:fs';
import { chromium, type Browser } from 'playwright-core';

const CANDIDATES = [process.env.CHROMIUM_PATH, '/usr/bin/chromium', '/usr/bin/chromium-browser', '/usr/bin/google-chrome'];

export function chromiumPath(): string | undefined {
  return CANDIDATES.find((p): p is string => !!p && existsSync(p));
}

export async function launchBrowser(): Promise<Browser> {
  const executablePath = chromiumPath();
  if (!executablePath) throw new Error('no Chromium found: apt-get install chromium (or set CHROMIUM_PATH)');
  return chromium.launch({
    executablePath,
    // the machine's network is closed: without these Chromium keeps trying to reach Google's hosts
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
}
