// Starts the real binaries for end-to-end tests and stops them (by PID) afterwards.
import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const BUILD = process.env.BUILD || 'build';
const bin = (name) => path.join(ROOT, BUILD, name);
const tmp = mkdtempSync(path.join(tmpdir(), 'switchyard-e2e-'));

function waitFor(child, stream, pattern, what) {
  return new Promise((resolve, reject) => {
    let seen = '';
    const done = () => { clearTimeout(timer); child.off('exit', onExit); stream.off('data', onData); };
    const onExit = (code) => { done(); reject(new Error(`${what} exited (${code}): ${seen.slice(-2000)}`)); };
    const onData = (d) => {
      seen += d.toString();
      const m = seen.match(pattern);
      if (m) { done(); resolve({ m }); }
    };
    const timer = setTimeout(() => { done(); reject(new Error(`${what} did not start: ${seen.slice(-2000)}`)); }, 15000);
    child.on('exit', onExit);
    stream.on('data', onData);
  });
}

export async function startSim(name, args = []) {
  const child = spawn(bin('switchyard-sim'), ['--port', '0', '--name', name, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  const { m } = await waitFor(child, child.stdout, /listening on ([0-9.]+):(\d+)/, `sim ${name}`);
  child.stdout.resume();
  return { child, url: `http://${m[1]}:${m[2]}/v1`, port: Number(m[2]) };
}

export async function startRouter(config, env = {}) {
  const file = path.join(tmp, `router-${Date.now()}-${Math.random()}.yaml`);
  writeFileSync(file, config);
  const child = spawn(bin('switchyard'), ['-c', file], { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, ...env } });
  let log = '';
  child.stderr.on('data', (d) => { log += d.toString(); });
  const { m } = await waitFor(child, child.stderr, /event=listening addr=[^ ]+:(\d+) admin=[^ ]+:(\d+)/, 'router');
  return { child, port: Number(m[1]), adminPort: Number(m[2]), log: () => log };
}

export function stop(...procs) {
  return Promise.all(procs.filter(Boolean).map((p) => new Promise((resolve) => {
    if (p.child.exitCode !== null) return resolve(p.child.exitCode);
    p.child.once('exit', (code) => resolve(code));
    p.child.kill('SIGTERM');
  })));
}

export function config(originalUrl, newUrl, percentage, extra = '') {
  return `
listen: "127.0.0.1:0"
workers: 2
admin: { listen: "127.0.0.1:0" }
forward_headers: ["x-sim-fault"]
providers:
  original: { name: openai, base_url: "${originalUrl}" }
  new: { name: relay, base_url: "${newUrl}" }
flags:
  use_new_provider:
    percentage: ${percentage}
    sticky: ["header:x-user-id", "body:user", "api_key"]
${extra}
`;
}
