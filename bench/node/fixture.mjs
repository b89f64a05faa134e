// fixture.mjs - a Kinesis endpoint that serves pre-built bodies from memory.
//
//   node fixture.mjs --shards N [--records R] [--size BYTES] [--per-call K]
//                    [--json] [--empty] [--dump FILE] [--efo] [--live RATE]
//                    [--tls DIR]
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
//
// --efo serves enhanced fan-out too, HTTP/1.1 and h2c on the one port
// (tests/emulators/lib/h2util.js): RegisterStreamConsumer and
// DescribeStreamConsumer (one consumer per name, ACTIVE at once) and
// SubscribeToShard, whose events carry the same records K per event (the
// first from the starting position, record-exact; the last with ChildShards
// [] and no continuation: the shard's end; built before the server listens),
// written as fast as HTTP/2 flow control lets them go.  With --empty a subscription sends an event with no
// records every 5 s (as Kinesis does at the tip) and lasts 5 minutes.  A
// subscription counts as the shard's start (shardsStarted) and as its
// GetRecords (firstGet, recordsServed, lastEnd).
//
// --tls DIR serves HTTPS from DIR/cert.pem and DIR/key.pem instead: HTTP/2
// by ALPN (SubscribeToShard) and HTTP/1.1 on the same port, as Kinesis
// does; the URL printed is then https://.
//
// --live RATE (the latency benchmark): every shard is open and starts
// empty; between GET /__live/start and GET /__live/stop the fixture makes
// RATE records a second on each, whose data is {"t": <epoch ms when made>,
// "n": N}: GetRecords answers what was made since its iterator (LATEST:
// from now), and open subscriptions get each record in an event of its
// own as soon as it is made (an empty event every 5 s otherwise).
import http from 'node:http';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import { dualServer, tlsServer } from '../../tests/emulators/lib/h2util.js';

const args = process.argv.slice(2);
const opt = { shards: 1, records: 10000, size: 1024, perCall: 10000,
              json: false, empty: false, dump: null, efo: false, live: 0,
              tls: null };
for (let i = 0; i < args.length; i++) {
  const a = args[i];
  if (a === '--shards') opt.shards = Number(args[++i]);
  else if (a === '--records') opt.records = Number(args[++i]);
  else if (a === '--size') opt.size = Number(args[++i]);
  else if (a === '--per-call') opt.perCall = Number(args[++i]);
  else if (a === '--json') opt.json = true;
  else if (a === '--empty') opt.empty = true;
  else if (a === '--dump') opt.dump = args[++i];
  else if (a === '--efo') opt.efo = true;
  else if (a === '--tls') opt.tls = args[++i];
  else if (a === '--live') { opt.live = Number(args[++i]); opt.empty = true; }
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
  if (!opt.empty && !opt.efo) {
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
    if (opt.live) return send(res, 200, { ShardIterator: `it-${s}-${liveFrom(s, req.ShardIteratorType, req.StartingSequenceNumber)}` });
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
    if (opt.live) return send(res, 200, liveRecords(s, c));
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

// ======== Live records (--live) ========

const live = [];     // live[s]: records made, as JSON text
const liveSubs = new Set();   // open subscriptions: {s, push(record index)}
let liveTimer = null;

function liveFrom(s, type, seq) {
  live[s] = live[s] || [];
  if (type === 'LATEST') return live[s].length;
  if (seq && /^\d{56}$/.test(seq))
    return Number(seq.slice(8)) - 1 + (type === 'AFTER_SEQUENCE_NUMBER' ? 1 : 0);
  return 0;
}

function liveRecords(s, from) {
  const all = live[s] || [];
  const recs = all.slice(from, from + 10000);
  stats.recordsServed += recs.length;
  return Buffer.from(`{"Records":[${recs.join(',')}],"NextShardIterator":` +
                     `"it-${s}-${from + recs.length}","MillisBehindLatest":0}`);
}

function liveMake() {
  for (let s = 0; s < opt.shards; s++) {
    live[s] = live[s] || [];
    const i = live[s].length;
    const data = Buffer.from(JSON.stringify({ t: now(), n: i })).toString('base64');
    live[s].push(`{"SequenceNumber":"${seqOf(s, i)}",` +
                 `"ApproximateArrivalTimestamp":${Date.now() / 1000},` +
                 `"Data":"${data}","PartitionKey":"pk-${i & 255}"}`);
    for (const sub of liveSubs) if (sub.s === s) sub.push();
  }
}

function liveStart() {
  if (liveTimer) return;
  const t0 = now();
  let n = 0;
  const tick = () => {
    while (now() >= t0 + (n * 1000) / opt.live) { liveMake(); n++; }
    liveTimer = setTimeout(tick, Math.max(0, t0 + (n * 1000) / opt.live - now()));
  };
  tick();
}

function liveStop() {
  clearTimeout(liveTimer);
  liveTimer = null;
}

// ======== Enhanced fan-out (--efo) ========

const consumers = new Map();  // name -> ARN
let codec = null;
if (opt.efo) {
  const require = createRequire(new URL('../../tests/emulators/package.json',
                                        import.meta.url));
  const { EventStreamCodec } = require('@smithy/eventstream-codec');
  const enc = new TextEncoder();
  codec = new EventStreamCodec((b) => new TextDecoder().decode(b),
                               (x) => enc.encode(x));
}

function frame(type, payload) {
  const str = (value) => ({ type: 'string', value });
  return Buffer.from(codec.encode({
    headers: { ':message-type': str('event'), ':event-type': str(type),
               ':content-type': str('application/json') },
    body: Buffer.isBuffer(payload) ? payload
      : Buffer.from(JSON.stringify(payload)) }));
}

// The event of shard s's records [from, to): the shard's last when `to` is
// its end.
function recordsEvent(s, from, to) {
  const parts = [];
  for (let i = from; i < to; i++)
    parts.push(`{"SequenceNumber":"${seqOf(s, i)}",` +
               `"ApproximateArrivalTimestamp":${ts},` +
               `"Data":"${payloads[i & 15]}",` +
               `"PartitionKey":"pk-${i & 255}"}`);
  const tail = to >= opt.records ? '"ChildShards":[]'
    : `"ContinuationSequenceNumber":"${seqOf(s, to - 1)}"`;
  return frame('SubscribeToShardEvent', Buffer.from(
    `{"Records":[${parts.join(',')}],"MillisBehindLatest":` +
    `${to >= opt.records ? 0 : 1000},${tail}}`));
}

// Built on demand, kept: shard s's event c (records c*K .. (c+1)*K).
const events = [];
function eventOf(s, c) {
  events[s] = events[s] || [];
  if (!events[s][c])
    events[s][c] = recordsEvent(s, c * opt.perCall,
                                Math.min(opt.records, (c + 1) * opt.perCall));
  return events[s][c];
}

function consumerOp(op, req, res) {
  if (op === 'RegisterStreamConsumer' || op === 'DescribeStreamConsumer') {
    const name = req.ConsumerName ||
      String(req.ConsumerARN || '').replace(/^.*\/consumer\/([^:]*):.*$/, '$1');
    if (op === 'DescribeStreamConsumer' && !consumers.has(name))
      return error(res, 'ResourceNotFoundException', 'no consumer');
    if (op === 'RegisterStreamConsumer' && consumers.has(name))
      return error(res, 'ResourceInUseException', 'consumer exists');
    if (!consumers.has(name))
      consumers.set(name, `${ARN}/consumer/${name}:${ts}`);
    const c = { ConsumerName: name, ConsumerARN: consumers.get(name),
                ConsumerStatus: 'ACTIVE', ConsumerCreationTimestamp: ts,
                StreamARN: ARN };
    return send(res, 200, op === 'RegisterStreamConsumer'
      ? { Consumer: c } : { ConsumerDescription: c });
  }
  return null;
}

async function subscribe(req, res) {
  const s = shardIndex(req.ShardId);
  if (s < 0) return error(res, 'ResourceNotFoundException', 'no shard');
  if (!started[s]) {
    started[s] = 1;
    if (++stats.shardsStarted === opt.shards) stats.allStartedAt = now();
  }
  const sp = req.StartingPosition || {};
  let i = 0;   // the first record to send
  if (sp.SequenceNumber && /^\d{56}$/.test(sp.SequenceNumber))
    i = Number(sp.SequenceNumber.slice(8)) - 1 +
        (sp.Type === 'AFTER_SEQUENCE_NUMBER' ? 1 : 0);
  let closed = false;
  res.on('close', () => { closed = true; });
  res.writeHead(200, { 'content-type': 'application/vnd.amazon.eventstream' });
  res.write(frame('initial-response', {}));
  const put = async (buf) => {
    if (!res.write(buf) && !closed)
      await new Promise((r) => { res.once('drain', r); res.once('close', r); });
  };
  if (opt.live) {
    live[s] = live[s] || [];
    let next = liveFrom(s, sp.Type, sp.SequenceNumber);
    const sub = { s, push: () => {
      if (closed) return;
      const recs = live[s].slice(next);
      if (!recs.length) return;
      next += recs.length;
      stats.recordsServed += recs.length;
      res.write(frame('SubscribeToShardEvent', Buffer.from(
        `{"Records":[${recs.join(',')}],"MillisBehindLatest":0,` +
        `"ContinuationSequenceNumber":"${seqOf(s, next - 1)}"}`)));
    } };
    liveSubs.add(sub);
    sub.push();
    const t0 = now();
    while (!closed && now() - t0 < 300000) {
      await new Promise((r) => setTimeout(r, 5000));
      if (!closed)
        res.write(frame('SubscribeToShardEvent', { Records: [],
          ContinuationSequenceNumber: seqOf(s, next - 1), MillisBehindLatest: 0 }));
    }
    liveSubs.delete(sub);
    return closed ? undefined : res.end();
  }
  if (opt.empty) {
    const t0 = now();
    while (!closed && now() - t0 < 300000) {
      if (!stats.firstGet) stats.firstGet = now();
      await put(frame('SubscribeToShardEvent', { Records: [],
        ContinuationSequenceNumber: seqOf(s, i - 1), MillisBehindLatest: 0 }));
      await new Promise((r) => setTimeout(r, 5000));
    }
    return res.end();
  }
  while (!closed && i < opt.records) {
    if (!stats.firstGet) stats.firstGet = now();
    const c = Math.floor(i / opt.perCall), end = Math.min(opt.records,
                                                          (c + 1) * opt.perCall);
    const buf = i === c * opt.perCall ? eventOf(s, c) : recordsEvent(s, i, end);
    stats.recordsServed += end - i;
    stats.bytesServed += buf.length;
    i = end;
    if (i >= opt.records) { stats.ends++; stats.lastEnd = now(); }
    await put(buf);
  }
  if (!closed) res.end();
}

function onRequest(req, res) {
  if (req.method === 'GET' && req.url === '/__stats') {
    return send(res, 200, stats);
  }
  if (req.method === 'GET' && (req.url === '/__live/start' ||
                               req.url === '/__live/stop')) {
    if (req.url === '/__live/start') liveStart(); else liveStop();
    return send(res, 200, { made: live.map((l) => l.length) });
  }
  const target = String(req.headers['x-amz-target'] || '');
  const op = target.slice(target.indexOf('.') + 1);
  const chunks = [];
  req.on('data', (d) => chunks.push(d));
  req.on('end', () => {
    let body = {};
    try { body = chunks.length ? JSON.parse(Buffer.concat(chunks)) : {}; }
    catch (_) { return error(res, 'SerializationException', 'bad json'); }
    if (opt.efo && op === 'SubscribeToShard') {
      stats.requests[op] = (stats.requests[op] || 0) + 1;
      return subscribe(body, res);
    }
    if (opt.efo && consumerOp(op, body, res) !== null) return;
    handle(op, body, res);
  });
}

function listening(url) {
  process.stdout.write(JSON.stringify({ url, bodies: opt.shards * calls }) +
                       '\n');
}

if (opt.efo) {
  // Every event is built before the server listens, as the GetRecords
  // bodies are: building one (JSON, then the codec's CRCs) costs the
  // fixture more than kcld spends on it, and a fixture that makes its
  // events while it serves would pace kcld and charge it the idle
  // wake-ups of a slow peer.  Only a resubscription from inside an event
  // builds one on demand.
  if (!opt.empty && !opt.live)
    for (let s = 0; s < opt.shards; s++)
      for (let c = 0; c < calls; c++) eventOf(s, c);
}
if (opt.tls) {
  const dir = opt.tls;
  const srv = await tlsServer(onRequest, {
    cert: fs.readFileSync(`${dir}/cert.pem`),
    key: fs.readFileSync(`${dir}/key.pem`) }, { h1: 0, h2: 0 });
  listening(srv.url);
} else if (opt.efo) {
  const srv = await dualServer(onRequest);
  listening(srv.url);
} else {
  const server = http.createServer(onRequest);
  server.on('connection', () => { stats.connections++; });
  server.keepAliveTimeout = 120000;
  server.headersTimeout = 130000;
  server.listen(0, '127.0.0.1',
                () => listening(`http://127.0.0.1:${server.address().port}`));
}
process.stdin.on('end', () => process.exit(0));
process.stdin.on('error', () => process.exit(0));
process.stdin.resume();
process.on('SIGTERM', () => process.exit(0));
