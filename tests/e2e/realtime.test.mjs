// WebSocket, push and browser SSE clients against switchyard, with the npm ws package.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import crypto from 'node:crypto';
import WebSocket from 'ws';
import { startSim, startRouter, stop } from './lib.mjs';

const KEYS = { WEB_APP_KEY: 'wk-' + crypto.randomBytes(12).toString('hex'),
  PUSHER_KEY: 'pk-' + crypto.randomBytes(12).toString('hex'),
  ORIG_PROVIDER_KEY: 'sk-orig-PROVIDER-SECRET', NEW_PROVIDER_KEY: 'sk-new-PROVIDER-SECRET' };
const ORIGIN = 'http://allowed.example';

function configText(o, n) {
  const users = Array.from({ length: 1000 }, (_, i) => `  - { name: u${i}, key_sha256: "${crypto.createHash('sha256').update(`user-key-${i}`).digest('hex')}", user: "user-${i}" }`).join('\n');
  return `
listen: "127.0.0.1:0"
workers: 2
admin: { listen: "127.0.0.1:0" }
forward_headers: ["x-sim-fault"]
providers:
  original: { name: openai, base_url: "${o.url}", api_key_env: ORIG_PROVIDER_KEY }
  new: { name: relay, base_url: "${n.url}", api_key_env: NEW_PROVIDER_KEY }
flags:
  use_new_provider: { percentage: 50, sticky: ["header:x-user-id", "body:user", "api_key"] }
clients:
  - { name: web-app, key_env: WEB_APP_KEY, user: "user-web", permissions: [chat] }
  - { name: pusher, key_env: PUSHER_KEY, user: "user-pusher", permissions: [push] }
${users}
cors: { allow_origins: ["${ORIGIN}"], allow_credentials: true, max_age_s: 600 }
realtime: { max_message_bytes: 65536, ping_interval_ms: 500, idle_timeout_ms: 5000, heartbeat_ms: 200, handshake_timeout_ms: 2000 }
`;
}

let o, n, r;
const url = () => `ws://127.0.0.1:${r.port}/v1/realtime`;

before(async () => {
  o = await startSim('original', ['--api-key', KEYS.ORIG_PROVIDER_KEY, '--chunk-ms', '2']);
  n = await startSim('new', ['--api-key', KEYS.NEW_PROVIDER_KEY, '--chunk-ms', '2']);
  r = await startRouter(configText(o, n), KEYS);
});

after(async () => {
  const codes = await stop(r, o, n);
  assert.equal(codes[0], 0, `router exit ${codes[0]}: ${r.log().slice(-2000)}`);
  assert.ok(!/AddressSanitizer|runtime error:|LeakSanitizer/.test(r.log()), r.log().slice(-3000));
  assert.ok(!r.log().includes('PROVIDER-SECRET'), 'a provider key reached the log');
});

function open(opts = {}) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(opts.url || url(), { headers: opts.headers || {} });
    const inbox = [];
    const waiters = [];
    ws.on('message', (d) => {
      const raw = d.toString();
      assert.ok(!raw.includes('PROVIDER-SECRET'), 'a provider key reached a client');
      const m = JSON.parse(raw);
      const i = waiters.findIndex((w) => w.pred(m));
      if (i >= 0) waiters.splice(i, 1)[0].resolve(m); else inbox.push(m);
    });
    ws.next = (pred, ms = 10000) => new Promise((res, rej) => {
      const i = inbox.findIndex(pred);
      if (i >= 0) return res(inbox.splice(i, 1)[0]);
      const t = setTimeout(() => rej(new Error('timeout waiting for a message')), ms);
      waiters.push({ pred, resolve: (m) => { clearTimeout(t); res(m); } });
    });
    ws.closed = new Promise((res) => ws.on('close', (code, reason) => res({ code, reason: reason.toString() })));
    ws.on('open', () => resolve(ws));
    ws.on('error', reject);
  });
}

async function chat(ws, id, content = 'hello') {
  ws.send(JSON.stringify({ type: 'chat', id, model: 'gpt-4.1', messages: [{ role: 'user', content }] }));
  let text = '';
  let pieces = 0;
  for (;;) {
    const m = await ws.next((x) => x.id === id);
    if (m.type === 'stream') { text += m.content; pieces++; assert.ok(m.provider === 'openai' || m.provider === 'relay'); continue; }
    if (m.type === 'complete') return { text, pieces, done: m };
    throw new Error(`chat ${id}: ${JSON.stringify(m)}`);
  }
}

test('auth by message, stream a chat delta by delta, heartbeat', async () => {
  const ws = await open();
  ws.send(JSON.stringify({ type: 'auth', token: KEYS.WEB_APP_KEY }));
  const ok = await ws.next((m) => m.type === 'auth_success');
  assert.equal(ok.user, 'user-web');
  ws.send(JSON.stringify({ type: 'heartbeat' }));
  await ws.next((m) => m.type === 'pong');
  const res = await chat(ws, 'r1');
  assert.ok(res.pieces >= 3, `pieces ${res.pieces}`);
  assert.ok(res.text.length > 0);
  assert.ok(res.done.usage.completion_tokens > 0);
  assert.equal(res.done.finish_reason, 'stop');
  ws.close();
});

test('auth by header; two chats at once on one connection', async () => {
  const ws = await open({ headers: { Authorization: `Bearer ${KEYS.WEB_APP_KEY}` } });
  const [a, b] = await Promise.all([chat(ws, 'a'), chat(ws, 'b')]);
  assert.ok(a.text && b.text);
  ws.close();
});

test('a bad token closes with 4401; chat before auth too', async () => {
  const ws = await open();
  ws.send(JSON.stringify({ type: 'auth', token: 'nope' }));
  assert.equal((await ws.closed).code, 4401);
  const ws2 = await open();
  ws2.send(JSON.stringify({ type: 'chat', id: 'x', model: 'gpt-4.1', messages: [] }));
  assert.equal((await ws2.closed).code, 4401);
});

test('a WebSocket from another origin is refused; the allowed origin is accepted', async () => {
  await assert.rejects(open({ headers: { Origin: 'http://evil.example' } }), /403/);
  const ws = await open({ headers: { Origin: ORIGIN, Authorization: `Bearer ${KEYS.WEB_APP_KEY}` } });
  ws.close();
});

test('1,000 concurrent connections each stream a chat, with no error', async () => {
  const conns = await Promise.all(Array.from({ length: 1000 }, (_, i) => open({ headers: { Authorization: `Bearer user-key-${i}` } })));
  const results = await Promise.all(conns.map((ws, i) => chat(ws, `c${i}`, `q${i}`)));
  assert.equal(results.filter((x) => x.text.length > 0).length, 1000);
  conns.forEach((ws) => ws.close());
});

test('a push to 1,000 users reaches each of them exactly once', async () => {
  const conns = await Promise.all(Array.from({ length: 1000 }, (_, i) => open({ headers: { Authorization: `Bearer user-key-${i}` } })));
  const counts = new Array(1000).fill(0);
  conns.forEach((ws, i) => ws.on('message', (d) => { if (JSON.parse(d).type === 'push') counts[i]++; }));
  // subscribed to a channel as well: a user targeted twice still gets one message
  await Promise.all(conns.slice(0, 100).map(async (ws) => { ws.send(JSON.stringify({ type: 'subscribe', channel: 'news' })); await ws.next((m) => m.type === 'subscribed'); }));
  const targets = Array.from({ length: 1000 }, (_, i) => `user-${i}`).concat(['user-offline']);
  const res = await fetch(`http://127.0.0.1:${r.port}/v1/push`, { method: 'POST',
    headers: { Authorization: `Bearer ${KEYS.PUSHER_KEY}`, 'content-type': 'application/json' },
    body: JSON.stringify({ targets, channel: 'news', message: { text: 'hello all' } }) });
  assert.equal(res.status, 200);
  const body = await res.json();
  assert.equal(body.delivered, 1000);
  assert.deepEqual(body.offline, ['user-offline']);
  const deadline = Date.now() + 10000;
  while (counts.some((c) => c < 1) && Date.now() < deadline) await new Promise((s) => setTimeout(s, 50));
  await new Promise((s) => setTimeout(s, 300));
  assert.equal(counts.filter((c) => c === 1).length, 1000, `counts: ${JSON.stringify(counts.filter((c) => c !== 1).slice(0, 5))}`);
  conns.forEach((ws) => ws.close());
  // a key without the push permission cannot push
  const denied = await fetch(`http://127.0.0.1:${r.port}/v1/push`, { method: 'POST',
    headers: { Authorization: `Bearer ${KEYS.WEB_APP_KEY}`, 'content-type': 'application/json' },
    body: JSON.stringify({ targets: ['user-1'], message: 1 }) });
  assert.equal(denied.status, 403);
});

test('a silent client is pinged and closed when idle; pongs keep it open', async () => {
  const ws = await open({ headers: { Authorization: `Bearer ${KEYS.WEB_APP_KEY}` } });
  let pings = 0;
  ws.on('ping', () => pings++);
  await new Promise((s) => setTimeout(s, 1600));
  assert.ok(pings >= 2, `pings ${pings}`);
  assert.equal(ws.readyState, WebSocket.OPEN, 'answered pings keep the connection');
  ws.close();
});

function rawUpgrade(port) {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1', () => {
      s.write(`GET /v1/realtime HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
        `Sec-WebSocket-Key: ${crypto.randomBytes(16).toString('base64')}\r\nSec-WebSocket-Version: 13\r\n` +
        `Authorization: Bearer ${KEYS.WEB_APP_KEY}\r\n\r\n`);
    });
    let buf = Buffer.alloc(0);
    const onData = (d) => {
      buf = Buffer.concat([buf, d]);
      const i = buf.indexOf('\r\n\r\n');
      if (i >= 0) { s.off('data', onData); assert.ok(buf.toString().startsWith('HTTP/1.1 101')); resolve({ s, rest: buf.subarray(i + 4) }); }
    };
    s.on('data', onData);
    s.on('error', reject);
  });
}

function frame(opcode, payload, { fin = true, mask = true } = {}) {
  const len = payload.length;
  const head = [((fin ? 0x80 : 0) | opcode)];
  if (len < 126) head.push((mask ? 0x80 : 0) | len);
  else if (len < 65536) head.push((mask ? 0x80 : 0) | 126, len >> 8, len & 255);
  else { head.push((mask ? 0x80 : 0) | 127, 0, 0, 0, 0, (len >>> 24) & 255, (len >> 16) & 255, (len >> 8) & 255, len & 255); }
  const key = crypto.randomBytes(4);
  const body = Buffer.from(payload);
  if (mask) for (let i = 0; i < body.length; i++) body[i] ^= key[i % 4];
  return Buffer.concat([Buffer.from(head), mask ? key : Buffer.alloc(0), body]);
}

function closeCode(s, rest) {
  return new Promise((resolve) => {
    let buf = rest;
    const done = () => {
      // find a close frame (opcode 8) among server frames
      let i = 0;
      while (i + 2 <= buf.length) {
        const op = buf[i] & 15; let len = buf[i + 1] & 127; let off = i + 2;
        if (len === 126) { len = buf.readUInt16BE(off); off += 2; }
        if (op === 8) return resolve(len >= 2 ? buf.readUInt16BE(off) : 1005);
        i = off + len;
      }
      resolve(null);
    };
    s.on('data', (d) => { buf = Buffer.concat([buf, d]); });
    s.on('close', done);
    setTimeout(() => { s.destroy(); }, 3000);
  });
}

test('bad frames close the connection with the proper code, and nothing else breaks', async () => {
  const cases = [
    ['oversized message', frame(1, Buffer.alloc(70000, 97)), 1009],
    ['unmasked client frame', frame(1, Buffer.from('{"type":"heartbeat"}'), { mask: false }), 1002],
    ['continuation without a start', frame(0, Buffer.from('x')), 1002],
    ['reserved bits set', Buffer.from([0xf1, 0x80, 1, 2, 3, 4]), 1002],
    ['reserved opcode', Buffer.from([0x83, 0x80, 1, 2, 3, 4]), 1002],
    ['binary message', frame(2, Buffer.from([1, 2, 3])), 1003],
    ['invalid UTF-8 text', frame(1, Buffer.from([0xc3, 0x28])), 1007],
  ];
  for (const [name, bytes, want] of cases) {
    const { s, rest } = await rawUpgrade(r.port);
    const got = closeCode(s, rest);
    s.write(bytes);
    const code = await got;
    console.log(`frame case ${name}: ${code}`);
    assert.equal(code, want, name);
  }
  // Arbitrary junk: wslay answers some of it (a fragmented control frame, an absurd
  // length) with a close frame that carries no status code; the connection must end
  // either way, and the router must keep serving.
  for (const junk of [Buffer.from('\xff\xff\xff\xff this is not websocket', 'latin1'),
    Buffer.from('hello world this is text\r\n')]) {
    const { s, rest } = await rawUpgrade(r.port);
    const got = closeCode(s, rest);
    s.write(junk);
    const code = await got;
    assert.ok(code === 1002 || code === 1005 || code === 1009, `junk closed with ${code}`);
  }
  // fragmented but valid: reassembled and answered
  const ws = await open({ headers: { Authorization: `Bearer ${KEYS.WEB_APP_KEY}` } });
  const res = await chat(ws, 'after-bad-frames');
  assert.ok(res.text.length > 0);
  ws.close();
});

test('browser SSE: session token, message events, done; CORS for the allowed origin only', async () => {
  const t = await fetch(`http://127.0.0.1:${r.port}/v1/session-token`, { method: 'POST', headers: { Authorization: `Bearer ${KEYS.WEB_APP_KEY}`, Origin: ORIGIN } });
  assert.equal(t.status, 200);
  assert.equal(t.headers.get('access-control-allow-origin'), ORIGIN);
  const { token, user } = await t.json();
  assert.equal(user, 'user-web');
  const res = await fetch(`http://127.0.0.1:${r.port}/v1/stream?model=gpt-4.1&message=hi&token=${encodeURIComponent(token)}`, { headers: { Origin: ORIGIN } });
  assert.equal(res.status, 200);
  assert.equal(res.headers.get('content-type'), 'text/event-stream');
  assert.equal(res.headers.get('access-control-allow-origin'), ORIGIN);
  const text = await res.text();
  assert.ok(!text.includes('PROVIDER-SECRET'));
  const events = text.split('\n\n').filter(Boolean).map((b) => b.split('\n')[0]);
  assert.ok(events.includes('event: message'), text.slice(0, 300));
  assert.equal(events[events.length - 1], 'event: done');
  const bad = await fetch(`http://127.0.0.1:${r.port}/v1/stream?model=gpt-4.1&message=hi&token=forged.token.123.abc`);
  assert.equal(bad.status, 401);
  const other = await fetch(`http://127.0.0.1:${r.port}/v1/models`, { headers: { Authorization: `Bearer ${KEYS.WEB_APP_KEY}`, Origin: 'http://evil.example' } });
  assert.equal(other.headers.get('access-control-allow-origin'), null);
  const pre = await fetch(`http://127.0.0.1:${r.port}/v1/chat/completions`, { method: 'OPTIONS', headers: { Origin: ORIGIN, 'Access-Control-Request-Method': 'POST' } });
  assert.equal(pre.status, 204);
  assert.equal(pre.headers.get('access-control-allow-origin'), ORIGIN);
  assert.equal(pre.headers.get('vary'), 'Origin');
  assert.equal(pre.headers.get('access-control-max-age'), '600');
  const preBad = await fetch(`http://127.0.0.1:${r.port}/v1/chat/completions`, { method: 'OPTIONS', headers: { Origin: 'http://evil.example', 'Access-Control-Request-Method': 'POST' } });
  assert.equal(preBad.headers.get('access-control-allow-origin'), null);
});

test('without a known key, /v1 answers 401', async () => {
  const res = await fetch(`http://127.0.0.1:${r.port}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"model":"gpt-4.1","messages":[]}' });
  assert.equal(res.status, 401);
  assert.equal((await res.json()).error.code, 'invalid_api_key');
});

test('reconnect after switchyard restarts', async () => {
  const ws = await open({ headers: { Authorization: `Bearer ${KEYS.WEB_APP_KEY}` } });
  await chat(ws, 'before');
  const port = r.port;
  const [code] = await stop(r);
  assert.equal(code, 0, `router exit ${code}: ${r.log().slice(-2000)}`);
  assert.ok(!/AddressSanitizer|runtime error:|LeakSanitizer/.test(r.log()), r.log().slice(-3000));
  const closed = await ws.closed;
  assert.ok(closed.code === 1006 || closed.code === 1001 || closed.code === 1000, `close ${closed.code}`);
  const cfg = configText(o, n).replace('listen: "127.0.0.1:0"', `listen: "127.0.0.1:${port}"`);
  r = await startRouter(cfg, KEYS);
  const ws2 = await open({ headers: { Authorization: `Bearer ${KEYS.WEB_APP_KEY}` } });
  const res = await chat(ws2, 'after');
  assert.ok(res.text.length > 0);
  ws2.close();
});
