// OFREP answers compared with flagd's own `fractional` evaluator (@openfeature/flagd-core,
// pinned: later releases change the hash input) for 10,000 random keys per percentage.
// flagd weights are integers, so p% is written as [["new", p*100], ["original", 10000-p*100]]
// (the same split at basis-point resolution).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { FlagdCore } from '@openfeature/flagd-core';
import { startSim, startRouter, stop, config } from './lib.mjs';

const logger = { error() {}, warn() {}, info() {}, debug() {} };

function flagdFor(percentBp) {
  const core = new FlagdCore();
  core.setConfigurations(JSON.stringify({
    flags: {
      use_new_provider: {
        state: 'ENABLED',
        variants: { new: true, original: false },
        defaultVariant: 'original',
        targeting: { fractional: [['new', percentBp], ['original', 10000 - percentBp]] },
      },
    },
  }));
  return core;
}

function randomKey(rng) {
  const alphabet = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.@';
  const len = 1 + Math.floor(rng() * 40);
  let s = '';
  for (let i = 0; i < len; i++) s += alphabet[Math.floor(rng() * alphabet.length)];
  return s;
}

function mulberry32(seed) {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

for (const pct of [10, 37.5, 50]) {
  test(`OFREP equals flagd fractional at ${pct}% for 10,000 keys`, async () => {
    const original = await startSim('original');
    const neu = await startSim('new');
    const router = await startRouter(config(original.url, neu.url, pct));
    try {
      const flagd = flagdFor(Math.round(pct * 100));
      const rng = mulberry32(1000 + pct * 10);
      const keys = Array.from({ length: 10000 }, () => randomKey(rng));
      let mismatches = 0;
      let news = 0;
      const url = `http://127.0.0.1:${router.adminPort}/ofrep/v1/evaluate/flags/use_new_provider`;
      for (let i = 0; i < keys.length; i += 100) {
        const batch = keys.slice(i, i + 100);
        const answers = await Promise.all(batch.map(async (k) => {
          const r = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' },
            body: JSON.stringify({ context: { targetingKey: k } }) });
          assert.equal(r.status, 200);
          return r.json();
        }));
        batch.forEach((k, j) => {
          const want = flagd.resolveBooleanEvaluation('use_new_provider', false, { targetingKey: k }, logger);
          const got = answers[j];
          if (got.value !== want.value || got.variant !== want.variant) mismatches++;
          if (got.value) news++;
        });
      }
      assert.equal(mismatches, 0, `${mismatches} keys disagree with flagd`);
      const share = news / keys.length;
      assert.ok(Math.abs(share - pct / 100) < 0.02, `share ${share}`);
    } finally {
      await stop(router, original, neu);
    }
  });
}
