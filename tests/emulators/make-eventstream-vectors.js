// make-eventstream-vectors.js — event-stream frames made by the AWS SDK's
// own encoder (@smithy/eventstream-codec), for kcld's decoder tests.
//
//   node tests/emulators/make-eventstream-vectors.js
//
// Writes tests/unit/eventstream/vectors.json (read by
// tests/unit/test_eventstream.c) and the seed corpus
// tests/fuzz/corpus/fuzz_eventstream/.  Deterministic: run it again after
// changing it and commit what it wrote.  Each vector is
//   {"name", "frame": hex of the whole frame,
//    "headers": [{"name", "type": 0..9, "num"?: decimal text,
//                 "value"?: hex}], "payload": hex}
// with the header value types of the event-stream format (0 true, 1 false,
// 2 byte, 3 short, 4 integer, 5 long, 6 bytes, 7 string, 8 timestamp,
// 9 uuid); "num" for the numeric ones, "value" for bytes, string, uuid.
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { EventStreamCodec, Int64 } from '@smithy/eventstream-codec';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '../..');
const enc = new TextEncoder();
const dec = new TextDecoder();
const codec = new EventStreamCodec((b) => dec.decode(b), (s) => enc.encode(s));

const TYPES = { boolean: null, byte: 2, short: 3, integer: 4, long: 5, binary: 6,
  string: 7, timestamp: 8, uuid: 9 };

const str = (value) => ({ type: 'string', value });
const hex = (b) => Buffer.from(b).toString('hex');

function event(type, payload, extra = {}) {
  return {
    headers: { ':message-type': str('event'), ':event-type': str(type),
      ':content-type': str('application/json'), ...extra },
    body: enc.encode(typeof payload === 'string' ? payload : JSON.stringify(payload)),
  };
}

function exception(type, message) {
  return {
    headers: { ':message-type': str('exception'), ':exception-type': str(type),
      ':content-type': str('application/json') },
    body: enc.encode(JSON.stringify({ message })),
  };
}

// What the test expects of each header, in the encoder's order.
function expected(headers) {
  return Object.entries(headers).map(([name, h]) => {
    const e = { name };
    switch (h.type) {
      case 'boolean': e.type = h.value ? 0 : 1; e.num = h.value ? '1' : '0'; break;
      case 'byte': case 'short': case 'integer':
        e.type = TYPES[h.type]; e.num = String(h.value); break;
      case 'long': e.type = 5; e.num = h.value.toString(); break;
      case 'timestamp': e.type = 8; e.num = String(h.value.getTime()); break;
      case 'binary': e.type = 6; e.value = hex(h.value); break;
      case 'string': e.type = 7; e.value = hex(enc.encode(h.value)); break;
      case 'uuid': e.type = 9; e.value = h.value.replace(/-/g, ''); break;
      default: throw new Error(`type ${h.type}`);
    }
    return e;
  });
}

const records = {
  Records: [
    { SequenceNumber: '49590338271490256608559692538361571095921575989136588898',
      ApproximateArrivalTimestamp: 1.6e9, Data: 'aGVsbG8=', PartitionKey: 'pk-1' },
  ],
  ContinuationSequenceNumber: '49590338271490256608559692538361571095921575989136588898',
  MillisBehindLatest: 0,
};

const messages = [
  ['initial-response', event('initial-response', {})],
  ['records', event('SubscribeToShardEvent', records)],
  ['records-empty', event('SubscribeToShardEvent', {
    Records: [], ContinuationSequenceNumber: '495903382714902566085596925383615710959215759891',
    MillisBehindLatest: 12000 })],
  ['child-shards', event('SubscribeToShardEvent', {
    Records: [], MillisBehindLatest: 0,
    ChildShards: [{ ShardId: 'shardId-000000000002', ParentShards: ['shardId-000000000000'],
      HashKeyRange: { StartingHashKey: '0', EndingHashKey: '1701411834604692317316873037158841' } }] })],
  ['exception-in-use', exception('ResourceInUseException', 'Another active subscription exists')],
  ['exception-kms', exception('KMSAccessDeniedException', 'no access to the key')],
  ['error', { headers: { ':message-type': str('error'), ':error-code': str('InternalFailure'),
    ':error-message': str('We encountered an internal error') }, body: new Uint8Array(0) }],
  ['no-headers', { headers: {}, body: enc.encode('payload only') }],
  ['empty', { headers: {}, body: new Uint8Array(0) }],
  ['all-types', { headers: {
    't': { type: 'boolean', value: true },
    'f': { type: 'boolean', value: false },
    'byte': { type: 'byte', value: -128 },
    'short': { type: 'short', value: -32768 },
    'int': { type: 'integer', value: 2147483647 },
    'long': { type: 'long', value: Int64.fromNumber(-9007199254740991) },
    'bin': { type: 'binary', value: new Uint8Array([0, 1, 2, 255]) },
    'str': { type: 'string', value: 'h\u00e9llo \u2603' },
    'ts': { type: 'timestamp', value: new Date(1700000000123) },
    'id': { type: 'uuid', value: '0a1b2c3d-4e5f-6071-8293-a4b5c6d7e8f9' },
    'empty-str': { type: 'string', value: '' },
    'empty-bin': { type: 'binary', value: new Uint8Array(0) },
  }, body: new Uint8Array([0, 0xff, 0x80]) }],
  ['long-string', { headers: { 'big': str('x'.repeat(2000)) }, body: enc.encode('y') }],
  ['large-payload', { headers: { ':message-type': str('event') },
    body: Uint8Array.from({ length: 20000 }, (_, i) => (i * 7) & 0xff) }],
];

const vectors = messages.map(([name, m]) => ({
  name,
  frame: hex(codec.encode(m)),
  headers: expected(m.headers),
  payload: hex(m.body),
}));

const out = path.join(root, 'tests/unit/eventstream/vectors.json');
fs.mkdirSync(path.dirname(out), { recursive: true });
fs.writeFileSync(out, JSON.stringify({
  generator: 'tests/emulators/make-eventstream-vectors.js',
  encoder: '@smithy/eventstream-codec',
  vectors,
}, null, 1) + '\n');

// Seeds (fuzz_eventstream.c reads one mode byte first): each small frame
// alone, as is (0x05) and with the target fixing CRCs after mutation (0x85),
// and a stream of several back to back.
const corpus = path.join(root, 'tests/fuzz/corpus/fuzz_eventstream');
fs.rmSync(corpus, { recursive: true, force: true });
fs.mkdirSync(corpus, { recursive: true });
const seed = (mode, b) => Buffer.concat([Buffer.from([mode]), b]);
for (const v of vectors) {
  const b = Buffer.from(v.frame, 'hex');
  if (b.length > 4000) continue;
  fs.writeFileSync(path.join(corpus, v.name), seed(0x05, b));
  fs.writeFileSync(path.join(corpus, `${v.name}-fixcrc`), seed(0x85, b));
}
fs.writeFileSync(path.join(corpus, 'stream'), seed(0x0b, Buffer.concat(
  vectors.filter((v) => v.frame.length / 2 <= 1024).map((v) => Buffer.from(v.frame, 'hex')))));
process.stdout.write(`wrote ${vectors.length} vectors to ${path.relative(root, out)}\n`);
