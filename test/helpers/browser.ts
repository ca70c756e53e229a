// Headless Chromium for the browser tests, through playwright-core (which never downloads a browser
// of its own): Debian's `chromium` package, or the binary named by CHROMIUM_PATH. `.ci/run` installs
// the package and sets SPECSERVE_REQUIRE_BROWSER, so there a missing browser fails instead of skipping.
import { existsSync } from 'node:fs';
import { chromium, type Browser, type Page } from 'playwright-core';

const CANDIDATES = [process.env.CHROMIUM_PATH, '/usr/bin/chromium', '/usr/bin/chromium-browser', '/usr/bin/google-chrome'];

export function chromiumPath(): string | undefined {
  return CANDIDATES.find((p): p is string => !!p && existsSync(p));
}

/** Why the browser tests cannot run here, or undefined when they can. Throws where they must run. */
export function browserSkipReason(): string | undefined {
  if (chromiumPath()) return undefined;
  const reason = 'no Chromium found: apt-get install chromium (or set CHROMIUM_PATH)';
  if (process.env.SPECSERVE_REQUIRE_BROWSER === '1') throw new Error(reason);
  return reason;
}

export async function launchBrowser(): Promise<Browser> {
  return chromium.launch({
    executablePath: chromiumPath(),
    // the machine's network is closed: without these Chromium keeps trying to reach Google's hosts
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
}

/** Console errors and uncaught exceptions of a page, collected as they happen. */
export function pageProblems(page: Page, allow: RegExp[] = []): string[] {
  const problems: string[] = [];
  page.on('console', (message) => {
    if ((message.type() === 'error' || message.type() === 'warning') && !allow.some((re) => re.test(message.text()))) {
      problems.push(`console ${message.type()}: ${message.text()}`);
    }
  });
  page.on('pageerror', (error) => problems.push(`page error: ${error.message}`));
  return problems;
}
