// The browser tests' Chromium (scripts/browser.ts). `.ci/run` installs Debian's package and sets
// SPECSERVE_REQUIRE_BROWSER, so there a missing browser fails instead of skipping.
import type { Page } from 'playwright-core';
import { chromiumPath } from '../../scripts/browser.ts';

export { launchBrowser } from '../../scripts/browser.ts';

/** Why the browser tests cannot run here, or undefined when they can. Throws where they must run. */
export function browserSkipReason(): string | undefined {
  if (chromiumPath()) return undefined;
  const reason = 'no Chromium found: apt-get install chromium (or set CHROMIUM_PATH)';
  if (process.env.SPECSERVE_REQUIRE_BROWSER === '1') throw new Error(reason);
  return reason;
}

/** Console errors and warnings and uncaught exceptions of a page, collected as they happen. */
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
