// sqs_unresolvable.js — fauxqs handing out queue URLs whose host can never
// resolve (".invalid", RFC 2606), so kcld's SQS tests prove that requests go
// to the configured endpoint and a QueueUrl only travels in the body.
// Loaded by emulators.js as the emulator "sqs_unresolvable".
import { buildApp } from 'fauxqs';

export async function start() {
  const app = buildApp({ logger: false, host: 'kcld-test.invalid' });
  const url = await app.listen({ port: 0, host: '127.0.0.1' });
  return { url, close: () => app.close() };
}
