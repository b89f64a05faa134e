// fixture.mjs - a Kinesis endpoint that serves pre-built bodies from memory.
//
//   node fixture.mjs --shards N [--records R] [--size BYTES] [--per-call K]
//                    [--json] [--empty] [--dump FILE]
//
// Serves DescribeStreamSummary, ListShards, GetShardIterator and GetRecords on
// an ephemeral 127.0.0.1 port (keep-alive).  Every GetRecords answer is a
// Buffer built before the server listens: shard s holds R records of BYTES
// bytes (1 KiB by default), K per call (10000 at most); the last call of a
// shard has a null NextShardIterator (shard end).  With --json the payloads
// are JSON objects of BYTES bytes, {"type", "device", "temperature", "pad"},
// 16 of them in turn: record i has type "buy" when i % 16 == 0 (the filter
// benchmark keeps those), and partition key pk-(i % 256).  With --empty every shard is
// open and every GetRecords answer is empty (the scale benchmark).  --dump
// writes every body, each prefixed by its length (uint32 LE), to FILE for the
// floor program.  Once listening it prints one JSON line {"url": ...} to
// stdout.  GET /__stats answers the request counts, the connections accepted,
// the times (epoch ms) of the first GetRecords and of the last shard end
// served, how many distinct shards asked for an iterator (shardsStarted) and
// when the last of all shards first did (allStartedAt, 0 until then).  The
// process ends when stdin closes.
import http from 'node:http';
import fs from 'node:fs';

const args = process.argv.slice(2);
const opt = { shards: 1, records: 10000, size: 1024, perCall: 10000,
              json: false, empty: false, dump: null };
for (let i = 0; i < args.length; i++) {
  const a = args[i];
  if (a === '--shards') opt.shards = Number(args[++i]);
  else if (a === '--records') opt.records = Number(args[++i]);
  else if (a === '--size') opt.size = Number(args[++i]);
  else if (a === '--per-call') opt.perCall = Number(args[++i]);
  else if (a === '--json') opt.json = true;
  else if (a === '--empty') opt.empty = true;
  else if (a === '--dump') opt.dump = args[++i];
  else { process.stderr.write(`fixture: unknown argument ${a}\n`); process.exit(2); }
}

const STREAM = 'bench';
const ARN = `arn:aws:kinesis:us-east-1:000000000000:stream/${STREAM}`;
const shardId = (s) => `shardId-${String(s).padStart(12, '0')}`;
// 56 decimal digits, increasing with the record's index within its shard.
const seqOf = (s, i) =>
  `49${String(s).padStart(6, '0')}${String(i + 1).padStart(48, '0')}`;
const now = () => performance.timeOrigin + performance.now();

// A handful of distinct payloads, so the bodies are not one repeated string.
const payloads = [];
for (let v = 0; v < 16; v++) {
  let b = Buffer.alloc(opt.size);
  if (opt.json) {
    const o = { type: v === 0 ? 'buy' : `type-${v}`, device: `dev-${v}`,
                temperature: 20 + v / 4, pad: '' };
    const bare = JSON.stringify(o).length;
    o.pad = 'x'.repeat(Math.max(0, opt.size - bare));
    b = Buffer.from(JSON.stringify(o));
  } else {
    for (let j = 0; j < b.length; j++) b[j] = (j * 31 + v * 7 + (j >> 5)) & 0xff;
  }
  payloads.push(b.toString('base64'));
}

const calls = Math.max(1, Math.ceil(opt.records / opt.perCall));
const bodies = [];   // bodies[s][c]
const ts = Math.floor(Date.now() / 1000);
let dumpFd = opt.dump ? fs.openSync(opt.dump, 'w') : null;
for (let s = 0; s < opt.shards; s++) {
  const list = [];
  if (!opt.empty) {
    for (let c = 0; c < calls; c++) {
      const parts = [];
      const end = Math.min(opt.records, (c + 1) * opt.perCall);
      for (let i = c * opt.perCall; i < end; i++)
        parts.push(`{"SequenceNumber":"${seqOf(s, i)}",` +
                   `"ApproximateArrivalTimestamp":${ts},` +
                   `"Data":"${payloads[i & 15]}",` +
                   `"PartitionKey":"pk-${i & 255}"}`);
      const next = c + 1 < calls ? `"it-${s}-${c + 1}"` : 'null';
      const extra = c + 1 < calls ? '' : ',"ChildShards":[]';
      const body = Buffer.from(`{"Records":[${parts.join(',')}],` +
                               `"NextShardIterator":${next},` +
                               `"MillisBehindLatest":0${extra}}`);
      list.push({ body, count: end - c * opt.perCall, last: c + 1 === calls });
      if (dumpFd !== null) {
        const len = Buffer.alloc(4);
        len.writeUInt32LE(body.length);
        fs.writeSync(dumpFd, len);
        fs.writeSync(dumpFd, body);
      }
    }
  }
  bodies.push(list);
}
if (dumpFd !== null) fs.closeSync(dumpFd);

const stats = { requests: {}, firstGet: 0, lastEnd: 0, ends: 0,
                recordsServed: 0, bytesServed: 0, connections: 0,
                shardsStarted: 0, allStartedAt: 0 };
const started = new Uint8Array(opt.shards);

function send(res, code, obj, extraHeaders) {
  const body = Buffer.isBuffer(obj) ? obj : Buffer.from(JSON.stringify(obj));
  res.writeHead(code, { 'Content-Type': 'application/x-amz-json-1.1',
                        'Content-Length': body.length,
                        'x-amzn-RequestId': 'bench', ...extraHeaders });
  res.end(body);
}

function error(res, type, msg) {
  send(res, 400, { __type: type, message: msg });
}

function shardIndex(id) {
  const m = /^shardId-(\d+)$/.exec(id || '');
  const s = m ? Number(m[1]) : -1;
  return s >= 0 && s < opt.shards ? s : -1;
}

const emptyRecords = (s) => Buffer.from(
  `{"Records":[],"NextShardIterator":"it-${s}-0","MillisBehindLatest":0}`);

function handle(op, req, res) {
  stats.requests[op] = (stats.requests[op] || 0) + 1;
  switch (op) {
  case 'DescribeStreamSummary':
    return send(res, 200, { StreamDescriptionSummary: {
      StreamName: STREAM, StreamARN: ARN, StreamStatus: 'ACTIVE',
      StreamModeDetails: { StreamMode: 'PROVISIONED' },
      RetentionPeriodHours: 24, StreamCreationTimestamp: ts,
      EnhancedMonitoring: [], EncryptionType: 'NONE',
      OpenShardCount: opt.shards, ConsumerCount: 0 } });
  case 'ListShards': {
    const shards = [];
    const span = (2n ** 128n) / BigInt(opt.shards);
    for (let s = 0; s < opt.shards; s++) {
      const lo = span * BigInt(s);
      const hi = s + 1 === opt.shards ? 2n ** 128n - 1n : lo + span - 1n;
      const range = { StartingSequenceNumber: seqOf(s, -1) };
      if (!opt.empty) range.EndingSequenceNumber = seqOf(s, opt.records);
      shards.push({ ShardId: shardId(s), SequenceNumberRange: range,
                    HashKeyRange: { StartingHashKey: lo.toString(),
                                    EndingHashKey: hi.toString() } });
    }
    return send(res, 200, { Shards: shards });
  }
  case 'GetShardIterator': {
    const s = shardIndex(req.ShardId);
    if (s < 0) return error(res, 'ResourceNotFoundException', 'no shard');
    if (!started[s]) {
      started[s] = 1;
      if (++stats.shardsStarted === opt.shards) stats.allStartedAt = now();
    }
    let c = 0;
    const seq = req.StartingSequenceNumber;
    if (seq && /^\d{56}$/.test(seq)) {
      const i = Number(seq.slice(8)) - 1;
      c = Math.min(Math.floor(i / opt.perCall), calls - 1);
    }
    return send(res, 200, { ShardIterator: `it-${s}-${c}` });
  }
  case 'GetRecords': {
    const m = /^it-(\d+)-(\d+)$/.exec(req.ShardIterator || '');
    if (!m) return error(res, 'InvalidArgumentException', 'bad iterator');
    const s = Number(m[1]), c = Number(m[2]);
    if (!stats.firstGet) stats.firstGet = now();
    if (opt.empty) return send(res, 200, emptyRecords(s));
    const b = bodies[s] && bodies[s][c];
    if (!b) return error(res, 'InvalidArgumentException', 'bad iterator');
    stats.recordsServed += b.count;
    stats.bytesServed += b.body.length;
    if (b.last) { stats.ends++; stats.lastEnd = now(); }
    return send(res, 200, b.body,
                { 'x-bench-next': b.last ? '' : `it-${s}-${c + 1}` });
  }
  default:
    return error(res, 'UnknownOperationException', `fixture: ${op}`);
  }
}

const server = http.createServer((req, res) => {
  if (req.method === 'GET' && req.url === '/__stats') {
    return send(res, 200, stats);
  }
  const target = String(req.headers['x-amz-target'] || '');
  const op = target.slice(target.indexOf('.') + 1);
  const chunks = [];
  req.on('data', (d) => chunks.push(d));
  req.on('end', () => {
    let body = {};
    try { body = chunks.length ? JSON.parse(Buffer.concat(chunks)) : {}; }
    catch (_) { return error(res, 'SerializationException', 'bad json'); }
    handle(op, body, res);
  });
});
server.on('connection', () => { stats.connections++; });
server.keepAliveTimeout = 120000;
server.headersTimeout = 130000;
server.listen(0, '127.0.0.1', () => {
  const url = `http://127.0.0.1:${server.address().port}`;
  process.stdout.write(JSON.stringify({ url, bodies: opt.shards * calls }) +
                       '\n');
});
process.stdin.on('end', () => process.exit(0));
process.stdin.on('error', () => process.exit(0));
process.stdin.resume();
process.on('SIGTERM', () => process.exit(0));
