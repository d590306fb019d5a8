// The official openai SDK, unchanged but for baseURL, against switchyard.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import { startSim, startRouter, stop, config } from './lib.mjs';

let original, neu, router, client;

before(async () => {
  original = await startSim('original');
  neu = await startSim('new');
  router = await startRouter(config(original.url, neu.url, 50));
  client = new OpenAI({ apiKey: 'sk-client-e2e', baseURL: `http://127.0.0.1:${router.port}/v1`, maxRetries: 0 });
});

after(async () => {
  const codes = await stop(router, original, neu);
  assert.equal(codes[0], 0, `router exit status ${codes[0]}: ${router.log().slice(-1500)}`);
  assert.ok(!/AddressSanitizer|runtime error:|LeakSanitizer/.test(router.log()), router.log().slice(-3000));
});

test('chat completion through the SDK', async () => {
  const res = await client.chat.completions.create({
    model: 'gpt-4.1', messages: [{ role: 'user', content: 'Say hello' }], user: 'e2e-user-1',
  });
  assert.equal(res.object, 'chat.completion');
  assert.ok(res.choices[0].message.content.length > 0);
  assert.ok(res.usage.total_tokens > 0);
});

test('streamed chat completion through the SDK', async () => {
  const stream = await client.chat.completions.create({
    model: 'gpt-4.1', messages: [{ role: 'user', content: 'Stream please' }], stream: true,
    stream_options: { include_usage: true }, user: 'e2e-user-2',
  });
  let text = '';
  let usage = null;
  let chunks = 0;
  for await (const chunk of stream) {
    chunks++;
    if (chunk.choices[0]?.delta?.content) text += chunk.choices[0].delta.content;
    if (chunk.usage) usage = chunk.usage;
  }
  assert.ok(chunks >= 3, `chunks: ${chunks}`);
  assert.ok(text.length > 0);
  assert.ok(usage && usage.completion_tokens > 0, 'usage chunk requested by the client arrives');
});

test('responses carry the switchyard headers, sticky per user', async () => {
  const seen = new Set();
  for (let i = 0; i < 5; i++) {
    const { response } = await client.chat.completions.create({
      model: 'gpt-4.1', messages: [{ role: 'user', content: 'x' }], user: 'sticky-user',
    }).withResponse();
    seen.add(response.headers.get('x-switchyard-variant'));
    assert.ok(response.headers.get('x-switchyard-request-id'));
  }
  assert.equal(seen.size, 1);
});

test('embeddings and models through the SDK', async () => {
  const emb = await client.embeddings.create({ model: 'text-embedding-3-small', input: 'hello' });
  assert.ok(emb.data[0].embedding.length > 0);
  const models = await client.models.list();
  assert.ok(models.data.length > 0);
});

test('errors reach the SDK as API errors', async () => {
  await assert.rejects(
    client.chat.completions.create({ model: 'gpt-4.1', messages: [] }, { headers: { 'x-sim-fault': 'status=400' } }),
    (err) => err instanceof OpenAI.APIError && err.status === 400,
  );
});
