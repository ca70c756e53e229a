import assert from 'node:assert/strict';
import { test } from 'node:test';
import { makeApp } from './helpers.ts';

test('the playground page and its assets are served without a key, nothing else under /playground/', async () => {
  const { app } = await makeApp({ config: { apiKey: 'sekret' } });
  for (const url of ['/', '/playground']) {
    const page = await app.inject({ url });
    assert.equal(page.statusCode, 200, url);
    assert.match(page.headers['content-type'] as string, /^text\/html/);
    // the hooks the browser test and users' scripts rely on
    for (const id of ['prompt', 'drafter', 'send', 'output', 'stats']) assert.ok(page.body.includes(`data-testid="${id}"`), id);
  }
  // every asset the page names is served, offline (no CDN)
  const page = (await app.inject({ url: '/' })).body;
  const assets = [...page.matchAll(/(?:src|href)="(\/playground\/[^"]+)"/g)].map((m) => m[1]);
  const app_js = (await app.inject({ url: '/playground/app.js' })).body;
  assets.push(...[...app_js.matchAll(/from '(\/playground\/[^']+)'/g)].map((m) => m[1]));
  assert.ok(assets.length >= 4, `assets: ${assets}`);
  for (const url of assets) {
    const res = await app.inject({ url });
    assert.equal(res.statusCode, 200, url);
    assert.ok(res.body.length > 100, url);
  }
  assert.ok(!/https?:\/\//.test(page.replace(/https?:\/\/www\.w3\.org[^"]*/g, '')), 'the page loads nothing from elsewhere');
  for (const url of ['/playground/../package.json', '/playground/%2e%2e/package.json', '/playground/index.html', '/playground/vendor/']) {
    const res = await app.inject({ url });
    assert.ok([401, 404].includes(res.statusCode), `${url}: ${res.statusCode}`);
    assert.ok(!res.body.includes('"devDependencies"'), url);
  }
  // the API itself still wants the key
  assert.equal((await app.inject({ url: '/v1/models' })).statusCode, 401);
});
