// kinesis_efo.js — Kinesis with enhanced fan-out, for kcld's tests: an
// in-process kinesalite behind a front that adds the consumer APIs and
// SubscribeToShard, speaking HTTP/1.1 and HTTP/2 with prior knowledge (h2c)
// on one port.  Loaded by emulators.js as the emulator "kinesis_efo".
//
// Every other Kinesis operation goes to kinesalite (StreamARN turned into
// StreamName, which kinesalite 3.3.3 wants).
//
// Consumers: RegisterStreamConsumer (CREATING, ACTIVE after
// register_delay_ms; ResourceInUseException when the name exists,
// LimitExceededException past 20 per stream), DescribeStreamConsumer (by
// ConsumerARN, or StreamARN + ConsumerName), ListStreamConsumers (MaxResults
// pages with NextToken), DeregisterStreamConsumer (DELETING, gone after
// register_delay_ms).
//
// SubscribeToShard {ConsumerARN, ShardId, StartingPosition}: refused
// before the stream starts (HTTP 400) with ResourceNotFoundException (no
// such consumer or shard), ResourceInUseException (consumer not ACTIVE, or
// a subscription of this consumer to this shard still open) or
// LimitExceededException (a call for this consumer and shard less than
// limit_ms after the last).  Otherwise 200 application/vnd.amazon.eventstream
// (frames made by @smithy/eventstream-codec): initial-response, then a
// SubscribeToShardEvent whenever kinesalite has records (polled every
// poll_ms) and at least every heartbeat_ms: {Records (as GetRecords gives
// them), ContinuationSequenceNumber (the last record's, or the starting
// sequence number; left out while the subscription has none), MillisBehindLatest};
// while the client holds the stream back (HTTP/2 flow control) no more is
// read from kinesalite.
// When the shard is closed and read to its end: a last event with
// ChildShards (from ListShards) and no ContinuationSequenceNumber, then the
// end.  After end_after_ms (300000, as Kinesis) the stream ends.
//
// Control plane (JSON in, JSON out, any protocol):
//   POST /__efo/script {"register_delay_ms", "poll_ms", "heartbeat_ms",
//        "limit_ms", "end_after_ms", "event_records" (at most this many
//        records in one event; 10000), "behind_ms" (while not 0, open
//        subscriptions read nothing and their heartbeats say
//        MillisBehindLatest behind_ms: a consumer that gets no records
//        while behind),
//        "refuse": [{"type": "ResourceInUseException", "times": N,
//                    "op": "SubscribeToShard", "status": 400}],
//                                 answered as HTTP status (400 by default)
//        "faults": [{"after_events": N, "what": "exception", "type": T} |
//                   {"after_events": N, "what": "reset"} |  half a frame,
//                                                           then RST_STREAM
//                   {"after_events": N, "what": "bad_crc"}, "times": 1]}
//        merges into the current script; faults apply to the next
//        subscriptions, each fault `times` subscriptions (default 1);
//        "upstream": "http://127.0.0.1:PORT" sends every Kinesis call to
//        that endpoint instead of the in-process kinesalite (e.g. a fault
//        proxy in front of a shared kinesalite: the chaos run).
//   POST /__efo/stats  {"calls": {Operation: N}, "subscriptions": [{"shard",
//        "consumer", "start", "events", "records", "ended": why, "proto"}],
//        "open": N, "h2_sessions": HTTP/2 connections accepted, ever}
//   POST /__efo/reset  script and stats back to the start (consumers stay).
//   POST /__efo/tls {"cert": PEM, "key": PEM} -> {"url": "https://127.0.0.1:P"}
//        the same endpoint (same state) over TLS as well, HTTP/2 or HTTP/1.1
//        by ALPN, as Kinesis: there curl multiplexes subscriptions over a
//        connection, where h2c gives each its own (libcurl 7.88).
import http from 'node:http';
import kinesalite from 'kinesalite';
import { EventStreamCodec } from '@smithy/eventstream-codec';
import { dualServer, readBody, sendJson, tlsServer } from './h2util.js';

const HOST = '127.0.0.1';
const TARGET_PREFIX = 'Kinesis_20131202.';
const ACCOUNT = '000000000000';
const enc = new TextEncoder();
const codec = new EventStreamCodec((b) => new TextDecoder().decode(b), (s) => enc.encode(s));
const DEFAULTS = { register_delay_ms: 200, poll_ms: 20, heartbeat_ms: 1000, limit_ms: 1000,
  end_after_ms: 300000, event_records: 10000, behind_ms: 0, refuse: [], faults: [] };

const str = (value) => ({ type: 'string', value });
function eventFrame(type, payload) {
  return Buffer.from(codec.encode({ headers: { ':message-type': str('event'),
    ':event-type': str(type), ':content-type': str('application/json') },
  body: enc.encode(JSON.stringify(payload)) }));
}
function exceptionFrame(type, message) {
  return Buffer.from(codec.encode({ headers: { ':message-type': str('exception'),
    ':exception-type': str(type), ':content-type': str('application/json') },
  body: enc.encode(JSON.stringify({ message })) }));
}

function upstream(port, target, data) {
  const body = Buffer.from(JSON.stringify(data));
  return new Promise((resolve, reject) => {
    const req = http.request({ host: HOST, port, method: 'POST', path: '/', headers: {
      'content-type': 'application/x-amz-json-1.1', 'x-amz-target': TARGET_PREFIX + target,
      'content-length': body.length, authorization: 'AWS4-HMAC-SHA256 Credential=a/20150830/us-east-1/kinesis/aws4_request, SignedHeaders=host, Signature=0',
      'x-amz-date': '20150830T123600Z' } }, (r) => {
      readBody(r).then((b) => resolve({ status: r.statusCode, body: b }), reject);
    });
    req.on('error', reject);
    req.end(body);
  });
}

async function call(port, target, data) {
  const r = await upstream(port, target, data);
  const j = r.body.length ? JSON.parse(r.body.toString()) : {};
  if (r.status !== 200) {
    const e = new Error(j.message || `HTTP ${r.status}`);
    e.type = (j.__type || 'InternalFailure').split('#').pop();
    e.status = r.status;
    throw e;
  }
  return j;
}

const streamName = (arn) => (arn && arn.includes(':stream/') ? arn.split(':stream/')[1].split('/')[0] : arn);
const streamArn = (name) => `arn:aws:kinesis:us-east-1:${ACCOUNT}:stream/${name}`;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

export async function start() {
  const k = kinesalite({ createStreamMs: 0, deleteStreamMs: 0, updateStreamMs: 0, shardLimit: 1000 });
  await new Promise((resolve, reject) => { k.once('error', reject); k.listen(0, HOST, resolve); });
  let kport = k.address().port;
  let script = structuredClone(DEFAULTS);
  let stats = { calls: {}, subscriptions: [] };
  const consumers = new Map(); // ARN -> {ConsumerName, ConsumerARN, ConsumerStatus, StreamARN, ...}
  const open = new Map();      // consumerARN|shard -> subscription
  const lastCall = new Map();  // consumerARN|shard -> ms
  let seq = 1;

  const clientError = (res, type, message, status = 400) =>
    sendJson(res, status, { __type: type, message }, { 'x-amzn-errortype': type });

  function refused(op) {
    const r = script.refuse.find((x) => (!x.op || x.op === op) && (x.times ?? 1) > 0);
    if (!r) return null;
    r.times = (r.times ?? 1) - 1;
    return r;
  }

  function findConsumer(d) {
    if (d.ConsumerARN) return consumers.get(d.ConsumerARN);
    const arn = d.StreamARN || streamArn(d.StreamName);
    for (const c of consumers.values()) if (c.StreamARN === arn && c.ConsumerName === d.ConsumerName) return c;
    return undefined;
  }

  const describe = (c) => ({ ConsumerName: c.ConsumerName, ConsumerARN: c.ConsumerARN,
    ConsumerStatus: c.ConsumerStatus, ConsumerCreationTimestamp: c.created, StreamARN: c.StreamARN });

  const ops = {
    RegisterStreamConsumer(d, res) {
      if (!d.StreamARN || !d.ConsumerName) return clientError(res, 'InvalidArgumentException', 'StreamARN and ConsumerName are required');
      let existing = 0;
      for (const c of consumers.values()) {
        if (c.StreamARN !== d.StreamARN) continue;
        existing++;
        if (c.ConsumerName === d.ConsumerName) {
          return clientError(res, 'ResourceInUseException', `Consumer ${c.ConsumerARN} under account ${ACCOUNT} already exists.`);
        }
      }
      if (existing >= 20) return clientError(res, 'LimitExceededException', 'Consumer limit of 20 for the stream reached.');
      const now = Date.now() / 1000;
      const c = { ConsumerName: d.ConsumerName, StreamARN: d.StreamARN, ConsumerStatus: 'CREATING',
        ConsumerARN: `${d.StreamARN}/consumer/${d.ConsumerName}:${Math.floor(now)}${seq++}`, created: now };
      consumers.set(c.ConsumerARN, c);
      setTimeout(() => { if (c.ConsumerStatus === 'CREATING') c.ConsumerStatus = 'ACTIVE'; }, script.register_delay_ms);
      return sendJson(res, 200, { Consumer: { ConsumerName: c.ConsumerName, ConsumerARN: c.ConsumerARN,
        ConsumerStatus: c.ConsumerStatus, ConsumerCreationTimestamp: c.created } });
    },
    DescribeStreamConsumer(d, res) {
      const c = findConsumer(d);
      if (!c) return clientError(res, 'ResourceNotFoundException', `Consumer ${d.ConsumerARN || d.ConsumerName} not found.`);
      return sendJson(res, 200, { ConsumerDescription: describe(c) });
    },
    ListStreamConsumers(d, res) {
      const all = [...consumers.values()].filter((c) => c.StreamARN === d.StreamARN);
      const startAt = d.NextToken ? Number(Buffer.from(d.NextToken, 'base64').toString()) : 0;
      const max = d.MaxResults || 100;
      const page = all.slice(startAt, startAt + max);
      const out = { Consumers: page.map((c) => ({ ConsumerName: c.ConsumerName, ConsumerARN: c.ConsumerARN,
        ConsumerStatus: c.ConsumerStatus, ConsumerCreationTimestamp: c.created })) };
      if (startAt + max < all.length) out.NextToken = Buffer.from(String(startAt + max)).toString('base64');
      return sendJson(res, 200, out);
    },
    DeregisterStreamConsumer(d, res) {
      const c = findConsumer(d);
      if (!c) return clientError(res, 'ResourceNotFoundException', 'Consumer not found.');
      c.ConsumerStatus = 'DELETING';
      setTimeout(() => consumers.delete(c.ConsumerARN), script.register_delay_ms);
      return sendJson(res, 200, {});
    },
    SubscribeToShard: subscribe,
  };

  async function subscribe(d, res, req) {
    const c = d.ConsumerARN && consumers.get(d.ConsumerARN);
    const key = `${d.ConsumerARN}|${d.ShardId}`;
    const now = Date.now();
    const last = lastCall.get(key);
    lastCall.set(key, now);
    if (!c) return clientError(res, 'ResourceNotFoundException', `Consumer ${d.ConsumerARN} not found.`);
    if (c.ConsumerStatus !== 'ACTIVE') return clientError(res, 'ResourceInUseException', `Consumer ${c.ConsumerARN} is ${c.ConsumerStatus}.`);
    if (last !== undefined && now - last < script.limit_ms) {
      return clientError(res, 'LimitExceededException', `Rate exceeded for consumer ${c.ConsumerARN} and shard ${d.ShardId}.`);
    }
    if (open.has(key)) return clientError(res, 'ResourceInUseException', `Another active subscription exists for consumer ${c.ConsumerARN} and shard ${d.ShardId}.`);
    const name = streamName(c.StreamARN);
    const sp = d.StartingPosition || {};
    let iterator;
    try {
      const it = await call(kport, 'GetShardIterator', { StreamName: name, ShardId: d.ShardId,
        ShardIteratorType: sp.Type, StartingSequenceNumber: sp.SequenceNumber,
        Timestamp: sp.Timestamp });
      iterator = it.ShardIterator;
    } catch (e) {
      return clientError(res, e.type || 'InternalFailure', e.message, e.status || 500);
    }
    const sub = { shard: d.ShardId, consumer: c.ConsumerARN, start: sp, events: 0, records: 0,
      ended: null, proto: req.httpVersion };
    stats.subscriptions.push(sub);
    open.set(key, sub);
    const faults = script.faults.filter((f) => (f.times ?? 1) > 0);
    for (const f of faults) f.times = (f.times ?? 1) - 1;
    const fired = new Set(); // this subscription's faults done
    let cont = sp.SequenceNumber || null;
    let closed = false;
    const finish = (why) => {
      if (sub.ended) return;
      sub.ended = why;
      open.delete(key);
    };
    res.on('close', () => finish(sub.ended || 'client'));
    res.writeHead(200, { 'content-type': 'application/vnd.amazon.eventstream' });
    res.write(eventFrame('initial-response', {}));
    const t0 = Date.now();
    let lastEvent = 0;
    while (!sub.ended) {
      const f = faults.find((x) => x.after_events === sub.events && !fired.has(x));
      if (f) {
        fired.add(f);
        if (f.what === 'exception') {
          res.end(exceptionFrame(f.type || 'InternalFailure', 'injected'));
          finish('exception');
          break;
        }
        const frame = eventFrame('SubscribeToShardEvent', { Records: [], MillisBehindLatest: 0,
          ContinuationSequenceNumber: cont || undefined });
        if (f.what === 'bad_crc') {
          frame[frame.length - 1] ^= 0xff;
          res.write(frame);
          finish('bad_crc');
          break;
        }
        if (f.what === 'reset') {
          res.write(frame.subarray(0, frame.length >> 1), () => setTimeout(() => {
            if (req.stream) req.stream.close(2); else req.socket.destroy();
          }, 50));
          finish('reset');
          break;
        }
      }
      if (Date.now() - t0 >= script.end_after_ms) {
        res.end();
        finish('expired');
        break;
      }
      if (script.behind_ms) {
        if (Date.now() - lastEvent >= script.heartbeat_ms) {
          res.write(eventFrame('SubscribeToShardEvent', { Records: [],
            MillisBehindLatest: script.behind_ms, ContinuationSequenceNumber: cont || undefined }));
          sub.events++;
          lastEvent = Date.now();
        }
        await sleep(script.poll_ms);
        continue;
      }
      let r;
      try {
        r = await call(kport, 'GetRecords', { ShardIterator: iterator, Limit: script.event_records });
      } catch (e) {
        if (!sub.ended) res.end(exceptionFrame(e.type || 'InternalFailure', e.message));
        finish('error');
        break;
      }
      if (sub.ended) break;
      const records = r.Records || [];
      if (records.length) cont = records[records.length - 1].SequenceNumber;
      iterator = r.NextShardIterator;
      if (!iterator) closed = true;
      if (records.length || closed || Date.now() - lastEvent >= script.heartbeat_ms) {
        const ev = { Records: records, MillisBehindLatest: r.MillisBehindLatest || 0 };
        if (closed) {
          const all = await call(kport, 'ListShards', { StreamName: name });
          ev.ChildShards = all.Shards.filter((s) => s.ParentShardId === d.ShardId || s.AdjacentParentShardId === d.ShardId)
            .map((s) => ({ ShardId: s.ShardId, ParentShards: [s.ParentShardId, s.AdjacentParentShardId].filter(Boolean),
              HashKeyRange: s.HashKeyRange }));
        } else if (cont) {
          ev.ContinuationSequenceNumber = cont;
        }
        // Held back by flow control (a paused client): wait, as Kinesis
        // does, instead of piling events up here.
        if (!res.write(eventFrame('SubscribeToShardEvent', ev)) && !sub.ended) {
          await new Promise((resolve) => {
            const done = () => { res.off('drain', done); res.off('close', done); resolve(); };
            res.on('drain', done);
            res.on('close', done);
          });
        }
        sub.events++;
        sub.records += records.length;
        lastEvent = Date.now();
      }
      if (closed) {
        res.end();
        finish('shard_end');
        break;
      }
      await sleep(script.poll_ms);
    }
  }

  async function handler(req, res) {
    try {
      const u = new URL(req.url, 'http://x');
      const body = await readBody(req);
      if (u.pathname === '/__efo/script') {
        const s = JSON.parse(body.toString() || '{}');
        if (s.upstream) kport = Number(new URL(s.upstream).port);
        script = { ...script, ...s };
        return sendJson(res, 200, script);
      }
      if (u.pathname === '/__efo/stats') {
        return sendJson(res, 200, { ...stats, open: open.size,
                                    h2_sessions: srv.counts.h2 });
      }
      if (u.pathname === '/__efo/tls') {
        const tls = await tlsServer(handler, JSON.parse(body.toString()),
                                    srv.counts);
        extra.push(tls);
        return sendJson(res, 200, { url: tls.url });
      }
      if (u.pathname === '/__efo/reset') {
        script = structuredClone(DEFAULTS);
        stats = { calls: {}, subscriptions: [] };
        lastCall.clear();
        return sendJson(res, 200, {});
      }
      const target = String(req.headers['x-amz-target'] || '');
      const op = target.startsWith(TARGET_PREFIX) ? target.slice(TARGET_PREFIX.length) : target;
      stats.calls[op] = (stats.calls[op] || 0) + 1;
      const data = body.length ? JSON.parse(body.toString()) : {};
      if (ops[op]) {
        const r = refused(op);
        if (r) return clientError(res, r.type, `injected ${r.type}`, r.status ?? 400);
        return await ops[op](data, res, req);
      }
      if (data.StreamARN && !data.StreamName) {
        data.StreamName = streamName(data.StreamARN);
        delete data.StreamARN;
      }
      const r = await upstream(kport, op, data);
      res.writeHead(r.status, { 'content-type': 'application/x-amz-json-1.1', 'content-length': r.body.length });
      res.end(r.body);
    } catch (e) {
      process.stderr.write(`kinesis_efo: ${e.stack || e}\n`);
      if (!res.headersSent) sendJson(res, 500, { __type: 'InternalFailure', message: String(e.message) });
    }
  }

  const extra = [];
  const srv = await dualServer(handler);
  return { url: srv.url,
           close: () => { for (const t of extra) t.close(); srv.close(); k.close(); } };
}
