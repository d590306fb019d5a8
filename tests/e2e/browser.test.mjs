// A real browser (Debian's chromium, driven by playwright-core) against switchyard: a page
// from an allowed origin streams through EventSource and WebSocket; the same page from
// another origin is refused by CORS and by the WebSocket origin check.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import crypto from 'node:crypto';
import { chromium } from 'playwright-core';
import { startSim, startRouter, stop } from './lib.mjs';

const KEY = 'wk-' + crypto.randomBytes(12).toString('hex');
let o, n, r, allowed, other, browser;

function pageServer() {
  return new Promise((resolve) => {
    const srv = http.createServer(async (req, res) => {
      // The page's own backend asks switchyard for a short-lived token: the client key
      // never reaches the browser.
      const t = await fetch(`http://127.0.0.1:${r.port}/v1/session-token`, { method: 'POST', headers: { Authorization: `Bearer ${KEY}` } });
      const { token } = await t.json();
      res.writeHead(200, { 'content-type': 'text/html' });
      res.end(`<!doctype html><meta charset="utf-8"><title>switchyard test page</title><body><script>
const router = 'http://127.0.0.1:${r.port}', token = ${JSON.stringify(token)};
window.result = { sse: '', sseError: null, ws: '', wsError: null, sseDone: false, wsDone: false };
const es = new EventSource(router + '/v1/stream?model=gpt-4.1&message=hello&token=' + encodeURIComponent(token));
es.addEventListener('message', (e) => { window.result.sse += JSON.parse(e.data).content; });
es.addEventListener('done', () => { window.result.sseDone = true; es.close(); });
es.onerror = () => { if (!window.result.sseDone) { window.result.sseError = 'error'; es.close(); } };
const ws = new WebSocket(router.replace('http', 'ws') + '/v1/realtime');
ws.onopen = () => { ws.send(JSON.stringify({ type: 'auth', token })); ws.send(JSON.stringify({ type: 'chat', id: 'b1', model: 'gpt-4.1', messages: [{ role: 'user', content: 'hi' }] })); };
ws.onmessage = (e) => { const m = JSON.parse(e.data); if (m.type === 'stream') window.result.ws += m.content; if (m.type === 'complete') { window.result.wsDone = true; ws.close(); } };
ws.onerror = () => { window.result.wsError = 'error'; };
ws.onclose = (e) => { if (!window.result.wsDone) window.result.wsError = window.result.wsError || ('close ' + e.code); };
</script></body>`);
    });
    srv.listen(0, '127.0.0.1', () => resolve(srv));
  });
}

before(async () => {
  o = await startSim('original');
  n = await startSim('new');
  allowed = await pageServer();
  other = await pageServer();
  const origin = `http://127.0.0.1:${allowed.address().port}`;
  r = await startRouter(`
listen: "127.0.0.1:0"
workers: 2
admin: { listen: "127.0.0.1:0" }
providers:
  original: { name: openai, base_url: "${o.url}" }
  new: { name: relay, base_url: "${n.url}" }
flags:
  use_new_provider: { percentage: 50 }
clients:
  - { name: web-app, key_env: WEB_APP_KEY, user: "user-web", permissions: [chat] }
cors: { allow_origins: ["${origin}"], allow_credentials: true }
`, { WEB_APP_KEY: KEY });
  browser = await chromium.launch({ executablePath: process.env.CHROMIUM || '/usr/bin/chromium', headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'] });
});

after(async () => {
  if (browser) await browser.close();
  allowed?.close();
  other?.close();
  const codes = await stop(r, o, n);
  assert.equal(codes[0], 0, r.log().slice(-2000));
  assert.ok(!/AddressSanitizer|runtime error:|LeakSanitizer/.test(r.log()), r.log().slice(-3000));
});

async function run(port) {
  const page = await browser.newPage();
  await page.goto(`http://127.0.0.1:${port}/`);
  await page.waitForFunction(() => (window.result.sseDone || window.result.sseError) && (window.result.wsDone || window.result.wsError), null, { timeout: 15000 });
  const res = await page.evaluate(() => window.result);
  const html = await page.content();
  await page.close();
  return { res, html };
}

test('a page from the allowed origin streams through EventSource and WebSocket', async () => {
  const { res, html } = await run(allowed.address().port);
  assert.equal(res.sseError, null);
  assert.ok(res.sseDone && res.sse.length > 0, JSON.stringify(res));
  assert.equal(res.wsError, null);
  assert.ok(res.wsDone && res.ws.length > 0, JSON.stringify(res));
  assert.ok(!html.includes(KEY), 'the client key reached the page');
});

test('the same page from another origin is refused (CORS and WebSocket origin)', async () => {
  const { res } = await run(other.address().port);
  assert.ok(res.sseError && !res.sseDone, JSON.stringify(res));
  assert.ok(res.wsError && !res.wsDone, JSON.stringify(res));
});
