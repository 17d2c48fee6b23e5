// client_test.mjs - the official `openai` npm client against `treni serve`.
//
//   node client_test.mjs [TRENI_BINARY] [MODEL_DIR]
//   TRENI_SERVE_ARGS="--device gpu" node client_test.mjs build/bin/treni /path/to/Qwen2.5-0.5B-Instruct
//
// Starts `treni serve` on the tiny Qwen2 fixture (CPU executor) on a free
// loopback port and checks what the client gets: the model list, a streamed
// chat (role, content deltas, finish_reason, usage), logprobs, a tool-call
// round trip, a completion, and errors surfacing as the client's typed
// errors. The fixture's weights are random, so the tool call is forced with
// tool_choice (named function, then "required"): the server opens the call
// and constrains the arguments to a JSON object (see docs/user-guide.md).
// Ends the server with SIGTERM and expects a clean exit.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import OpenAI from 'openai';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '..', '..');
const binary = process.argv[2] ?? path.join(root, 'build', 'bin', 'treni');
const modelDir = process.argv[3] ?? path.join(root, 'test', 'fixtures', 'qwen2');

function startServer() {
  const extra = (process.env.TRENI_SERVE_ARGS ?? '').split(/\s+/).filter(Boolean);
  const args = ['serve', modelDir, '--port', '0', '--max-seq', '512', '--served-model-name', 'treni-test', ...extra];
  const server = spawn(binary, args, {
    stdio: ['ignore', 'inherit', 'pipe'],
  });
  return new Promise((resolve, reject) => {
    let log = '';
    const timer = setTimeout(() => reject(new Error(`no "listening" line in 120 s:\n${log}`)), 120000);
    server.stderr.on('data', (data) => {
      log += data.toString();
      process.stderr.write(data);
      const match = log.match(/listening on http:\/\/127\.0\.0\.1:(\d+)/);
      if (match) {
        clearTimeout(timer);
        resolve({ server, port: Number(match[1]) });
      }
    });
    server.on('exit', (code) => reject(new Error(`treni serve exited (${code}):\n${log}`)));
  });
}

const { server, port } = await startServer();
const exited = new Promise((resolve) => server.on('exit', (code, signal) => resolve({ code, signal })));
let last = Date.now();
const client = new OpenAI({ baseURL: `http://127.0.0.1:${port}/v1`, apiKey: 'unused', maxRetries: 0 });
const model = 'treni-test';
let checks = 0;
const check = (name) => {
  checks += 1;
  const now = Date.now();
  console.log(`ok ${checks} - ${name} (${now - last} ms)`);
  last = now;
};

try {
  // Models.
  const models = await client.models.list();
  assert.deepEqual(models.data.map((m) => m.id), [model]);
  check('models.list');

  // Streaming chat.
  const stream = await client.chat.completions.create({
    model,
    messages: [{ role: 'system', content: 'Be brief.' }, { role: 'user', content: 'Tell me about the plan.' }],
    max_tokens: 16,
    temperature: 0,
    stream: true,
    stream_options: { include_usage: true },
  });
  let role = null;
  let content = '';
  let finish = null;
  let usage = null;
  let chunks = 0;
  for await (const chunk of stream) {
    chunks += 1;
    if (chunk.usage) usage = chunk.usage;
    for (const choice of chunk.choices) {
      if (choice.delta.role) role = choice.delta.role;
      if (choice.delta.content) content += choice.delta.content;
      if (choice.finish_reason) finish = choice.finish_reason;
    }
  }
  assert.equal(role, 'assistant');
  assert.ok(chunks >= 3, `only ${chunks} chunks`);
  assert.ok(['stop', 'length'].includes(finish), `finish_reason ${finish}`);
  assert.ok(usage && usage.completion_tokens > 0 && usage.prompt_tokens > 0);
  assert.equal(usage.total_tokens, usage.prompt_tokens + usage.completion_tokens);
  const plain = await client.chat.completions.create({
    model,
    messages: [{ role: 'system', content: 'Be brief.' }, { role: 'user', content: 'Tell me about the plan.' }],
    max_tokens: 16,
    temperature: 0,
  });
  assert.equal(content, plain.choices[0].message.content, 'streamed and unstreamed greedy text differ');
  assert.ok(plain.awareness && plain.awareness.perplexity >= 1, 'awareness missing');
  check('streaming chat (role, deltas, finish_reason, usage; equals the unstreamed text)');

  // Logprobs.
  const withLogprobs = await client.chat.completions.create({
    model,
    messages: [{ role: 'user', content: 'Name a buffer.' }],
    max_tokens: 8,
    logprobs: true,
    top_logprobs: 3,
    seed: 11,
  });
  const tokens = withLogprobs.choices[0].logprobs.content;
  assert.equal(tokens.length, withLogprobs.usage.completion_tokens);
  for (const token of tokens) {
    assert.equal(typeof token.token, 'string');
    assert.ok(token.logprob <= 0);
    assert.ok(Array.isArray(token.bytes));
    assert.equal(token.top_logprobs.length, 3);
    assert.ok(token.top_logprobs[0].logprob >= token.top_logprobs[2].logprob);
  }
  check('logprobs with top_logprobs');

  // Tool-call round trip.
  const tools = [
    {
      type: 'function',
      function: {
        name: 'get_weather',
        description: 'Current weather of a city',
        parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] },
      },
    },
    { type: 'function', function: { name: 'get_time', parameters: { type: 'object', properties: {} } } },
  ];
  const messages = [{ role: 'user', content: 'What is the weather in Paris?' }];
  const call = await client.chat.completions.create({
    model,
    messages,
    tools,
    tool_choice: { type: 'function', function: { name: 'get_weather' } },
    max_tokens: 24,
  });
  const choice = call.choices[0];
  assert.equal(choice.finish_reason, 'tool_calls');
  assert.equal(choice.message.tool_calls.length, 1);
  const toolCall = choice.message.tool_calls[0];
  assert.equal(toolCall.type, 'function');
  assert.equal(toolCall.function.name, 'get_weather');
  assert.ok(toolCall.id.startsWith('call_'));
  const args = JSON.parse(toolCall.function.arguments);
  assert.equal(typeof args, 'object');
  const answer = await client.chat.completions.create({
    model,
    messages: [
      ...messages,
      choice.message,
      { role: 'tool', tool_call_id: toolCall.id, content: JSON.stringify({ celsius: 21 }) },
    ],
    tools,
    max_tokens: 8,
  });
  assert.equal(answer.choices[0].message.role, 'assistant');
  check('tool call round trip (named tool_choice, tool result sent back)');

  const required = await client.chat.completions.create({
    model,
    messages,
    tools,
    tool_choice: 'required',
    max_tokens: 24,
    stream: true,
  });
  let streamedCall = null;
  let streamedFinish = null;
  for await (const chunk of required) {
    for (const c of chunk.choices) {
      if (c.delta.tool_calls) streamedCall = c.delta.tool_calls[0];
      if (c.finish_reason) streamedFinish = c.finish_reason;
    }
  }
  assert.equal(streamedFinish, 'tool_calls');
  assert.ok(['get_weather', 'get_time'].includes(streamedCall.function.name));
  assert.equal(typeof JSON.parse(streamedCall.function.arguments), 'object');
  check('streamed tool call with tool_choice "required"');

  // Completions.
  const completion = await client.completions.create({ model, prompt: 'The runtime runs', max_tokens: 6, logprobs: 2 });
  assert.equal(completion.object, 'text_completion');
  assert.equal(completion.choices[0].logprobs.tokens.length, completion.usage.completion_tokens);
  check('completions with logprobs');

  // Errors arrive as the client's typed errors.
  await assert.rejects(
    client.chat.completions.create({ model: 'gpt-4o', messages }),
    (err) => err instanceof OpenAI.NotFoundError && err.status === 404 && err.code === 'model_not_found',
  );
  await assert.rejects(
    client.chat.completions.create({ model, messages: [] }),
    (err) => err instanceof OpenAI.BadRequestError && err.param === 'messages',
  );
  await assert.rejects(
    client.chat.completions.create({ model, messages, temperature: 7 }),
    (err) => err instanceof OpenAI.BadRequestError && err.param === 'temperature',
  );
  check('errors: NotFoundError and BadRequestError with code and param');
} finally {
  server.kill('SIGTERM');
}
const { code, signal } = await exited;
assert.equal(signal, null, `treni serve died of ${signal}`);
assert.equal(code, 0, `treni serve exited with ${code} after SIGTERM`);
check('clean shutdown on SIGTERM');
console.log(`all ${checks} checks passed`);
