// The playground in a real browser (headless Chromium) against the real server and model.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { Browser, Page } from 'playwright-core';
import { browserSkipReason, launchBrowser, pageProblems } from '../helpers/browser.ts';
import { startServer, type RunningServer } from '../helpers/server.ts';

const skip = browserSkipReason();
const $ = (id: string) => `[data-testid="${id}"]`;

async function openPlayground(page: Page, url: string): Promise<void> {
  await page.goto(`${url}/`);
  await page.waitForSelector(`${$('drafter')} option[value="prompt-lookup"]`, { state: 'attached' });
}

async function sendAndFinish(page: Page, lane = 'stats'): Promise<void> {
  await page.click($('send'));
  await page.waitForFunction((sel) => document.querySelector(sel)?.textContent?.includes('finish'), $(lane), { timeout: 60_000 });
}

describe('playground in Chromium', { skip }, () => {
  let server: RunningServer;
  let browser: Browser;
  before(async () => {
    // the static draft policy: the goodput one explores caps on a fresh server and may rightly
    // turn drafting off for a batch of two (race mode), which would make the race assertions luck
    [server, browser] = await Promise.all([startServer(['--draft-policy', 'static']), launchBrowser()]);
  });
  after(async () => {
    await Promise.all([browser?.close(), server?.stop()]);
  });

  test('pick a drafter, send a repeating prompt: tokens of both sources stream, with statistics', async () => {
    const page = await browser.newPage();
    const problems = pageProblems(page);
    await openPlayground(page, server.url);
    const drafters = await page.$$eval(`${$('drafter')} option`, (options) => options.map((o) => (o as HTMLOptionElement).value));
    assert.ok(drafters.includes('none') && drafters.includes('medusa'), `drafters offered: ${drafters}`);
    await page.selectOption($('drafter'), 'prompt-lookup');
    await page.fill($('prompt'), 'The socket module provides access to the socket interface. The socket module provides access to the socket interface. The socket module');
    // tokens show up while the stream is still running
    await page.click($('send'));
    await page.waitForSelector(`${$('output')} [data-source]`, { timeout: 30_000 });
    await page.waitForFunction((sel) => document.querySelector(sel)?.textContent?.includes('finish'), $('stats'), { timeout: 60_000 });
    const drafted = await page.locator(`${$('output')} [data-source="draft"]`).count();
    const target = await page.locator(`${$('output')} [data-source="target"]`).count();
    assert.ok(drafted > 0 && target > 0, `draft ${drafted}, target ${target}`);
    const stats = await page.textContent($('stats'));
    for (const label of ['tokens/s', 'acceptance rate', 'mean acceptance length', 'draft cap']) assert.ok(stats!.includes(label), `${label} missing from: ${stats}`);
    // pointing at a drafted token says where it sat in the draft
    await page.locator(`${$('output')} [data-source="draft"]`).first().hover();
    assert.match((await page.textContent($('token-detail')))!, /^step \d+ · draft token \d+ of \d+, confirmed by the target · draft cap \d+/);
    assert.deepEqual(problems, []);
    await page.close();
  });

  test('stop ends a long stream at once; regenerate runs the prompt again', async () => {
    const page = await browser.newPage();
    const problems = pageProblems(page);
    await openPlayground(page, server.url);
    // this model writes 900 tokens in about a second: a slow link keeps the stream open long enough
    const cdp = await page.context().newCDPSession(page);
    await cdp.send('Network.emulateNetworkConditions', { offline: false, latency: 0, downloadThroughput: 16_000, uploadThroughput: -1 });
    await page.selectOption($('drafter'), 'none');
    await page.fill('#max-tokens', '900');
    await page.click($('send'));
    await page.waitForSelector(`${$('output')} [data-source]`, { timeout: 30_000 });
    await page.click($('stop'));
    await page.waitForFunction((sel) => !(document.querySelector(sel) as HTMLButtonElement).disabled, $('send'), { timeout: 5_000 });
    const stopped = await page.locator(`${$('output')} [data-source]`).count();
    assert.ok(stopped < 900, `${stopped} tokens`);
    assert.ok(!(await page.textContent($('stats')))!.includes('finish'), 'a stopped stream should not report a finish reason');
    assert.equal(await page.textContent($('error')), '');
    await cdp.send('Network.emulateNetworkConditions', { offline: false, latency: 0, downloadThroughput: -1, uploadThroughput: -1 });
    await page.fill('#max-tokens', '16');
    await page.click($('regenerate'));
    await page.waitForFunction((sel) => document.querySelector(sel)?.textContent?.includes('finish'), $('stats'), { timeout: 60_000 });
    assert.deepEqual(problems, []);
    await page.close();
  });

  test('race mode: plain and speculative side by side, same greedy text', async () => {
    const page = await browser.newPage();
    const problems = pageProblems(page);
    await openPlayground(page, server.url);
    await page.selectOption($('drafter'), 'prompt-lookup');
    await page.check($('race'));
    await sendAndFinish(page);
    await page.waitForFunction((sel) => (document.querySelector(sel)?.textContent ?? '').length > 0, $('race-verdict'), { timeout: 60_000 });
    const verdict = await page.textContent($('race-verdict'));
    assert.match(verdict!, /prompt-lookup: [\d.]+× fewer target steps per token, [\d.]+× the tokens\/s of plain decoding.*Same text, token for token\./);
    // greedy prompt lookup on this prompt lands drafts: fewer steps for the same tokens
    assert.ok(Number(/([\d.]+)× fewer/.exec(verdict!)![1]) > 1.2, verdict!);
    assert.equal(await page.locator(`${$('output-plain')} [data-source="draft"]`).count(), 0);
    assert.ok((await page.locator(`${$('output')} [data-source="draft"]`).count()) > 0);
    assert.deepEqual(problems, []);
    await page.close();
  });
});

describe('playground with an API key', { skip }, () => {
  let server: RunningServer;
  let browser: Browser;
  before(async () => {
    [server, browser] = await Promise.all([startServer(['--api-key', 'sekret']), launchBrowser()]);
  });
  after(async () => {
    await Promise.all([browser?.close(), server?.stop()]);
  });

  test('the page asks for the key, then chats with it', async () => {
    const page = await browser.newPage();
    // the first API call's 401 is how the page learns that it needs a key
    const problems = pageProblems(page, [/status of 401/]);
    await page.goto(`${server.url}/`);
    await page.waitForSelector($('api-key'), { state: 'visible' });
    await page.fill($('api-key'), 'sekret');
    await page.click($('save-key'));
    await page.waitForSelector(`${$('drafter')} option[value="prompt-lookup"]`, { state: 'attached' });
    await page.selectOption($('drafter'), 'none');
    await page.selectOption($('mode'), 'chat');
    await page.fill($('prompt'), 'What does the socket module do?');
    await page.fill('#max-tokens', '8');
    await sendAndFinish(page);
    assert.ok((await page.locator(`${$('output')} [data-source="target"]`).count()) > 0);
    assert.equal(await page.locator(`${$('output')} [data-source="draft"]`).count(), 0);
    assert.deepEqual(problems, []);
    await page.close();
  });
});
