// kinesis_paged.js — kinesalite behind a small proxy that adds what
// kinesalite 3.3.3 lacks and real Kinesis has, for kcld's Kinesis wrapper
// tests.  Loaded by emulators.js as the emulator "kinesis_paged".
//
//  - ListShards pages as Kinesis does: MaxResults is honoured (kinesalite
//    ignores it) and a NextToken is handed out while shards remain; a
//    request with NextToken must not name the stream again (400
//    InvalidArgumentException, as Kinesis answers).
//  - StreamARN is accepted wherever StreamName is (kinesalite knows names
//    only).
//  - Scripted throttling: POST /__paged/throttle {"target": "ListShards",
//    "times": N} makes the next N requests of that operation answer 400
//    LimitExceededException.
//  - POST /__paged/age_iterator {"iterator": IT, "ms": MS} -> {"iterator":
//    the same shard iterator, made MS milliseconds earlier}: with MS over
//    300000 kinesalite answers GetRecords with ExpiredIteratorException, as
//    Kinesis does for an iterator older than five minutes.
//  - GET /__paged/stats: {"targets": {"ListShards": N, ...}, "log": [bodies
//    of the last ListShards requests]}; POST /__paged/reset clears both.
import crypto from 'node:crypto';
import http from 'node:http';
import kinesalite from 'kinesalite';
import kdb from 'kinesalite/db/index.js';

const HOST = '127.0.0.1';
const TARGET_PREFIX = 'Kinesis_20131202.';

function listen(server) {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, HOST, () => resolve(server.address().port));
  });
}

function readBody(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

function send(res, status, obj) {
  const body = Buffer.from(JSON.stringify(obj));
  res.writeHead(status, {
    'content-type': 'application/x-amz-json-1.1',
    'content-length': body.length,
  });
  res.end(body);
}

function clientError(res, type, message) {
  send(res, 400, { __type: type, message });
}

// One request to kinesalite; resolves {status, headers, body (Buffer)}.
function upstream(port, headers, data) {
  const body = Buffer.from(JSON.stringify(data));
  const h = { ...headers, 'content-length': body.length, host: `${HOST}:${port}` };
  delete h['transfer-encoding'];
  return new Promise((resolve, reject) => {
    const req = http.request({ host: HOST, port, method: 'POST', path: '/', headers: h }, (r) => {
      readBody(r).then((b) => resolve({ status: r.statusCode, headers: r.headers, body: b }), reject);
    });
    req.on('error', reject);
    req.end(body);
  });
}

// Re-dates a kinesalite shard iterator (8 version bytes, then AES-256-CBC
// of "time/stream/shard/seq/padding"; the key is kinesalite's own).
function ageIterator(it, ms) {
  const buf = Buffer.from(it, 'base64');
  const dec = crypto.createDecipheriv('aes-256-cbc', kdb.ITERATOR_PWD_KEY, kdb.ITERATOR_PWD_IV);
  const pieces = Buffer.concat([dec.update(buf.subarray(8)), dec.final()]).toString('utf8').split('/');
  pieces[0] = (new Array(14).join('0') + (Number(pieces[0]) - ms)).slice(-14);
  const enc = crypto.createCipheriv('aes-256-cbc', kdb.ITERATOR_PWD_KEY, kdb.ITERATOR_PWD_IV);
  return Buffer.concat([buf.subarray(0, 8), enc.update(pieces.join('/'), 'utf8'), enc.final()])
    .toString('base64');
}

function nameFromArn(arn) {
  const i = arn.lastIndexOf(':stream/');
  return i >= 0 ? arn.slice(i + ':stream/'.length) : arn;
}

export async function start() {
  const kin = kinesalite({ createStreamMs: 0, deleteStreamMs: 0, updateStreamMs: 0, shardLimit: 1000 });
  const kinPort = await listen(kin);
  let throttles = {};
  let stats = { targets: {}, log: [] };

  async function listShards(res, headers, data) {
    let name = data.StreamName;
    let after = data.ExclusiveStartShardId;
    if (data.NextToken) {
      if (data.StreamName) {
        return clientError(res, 'InvalidArgumentException',
          'NextToken and StreamName cannot be provided together.');
      }
      try {
        const tok = JSON.parse(Buffer.from(data.NextToken, 'base64url').toString());
        name = tok.s;
        after = tok.a;
      } catch (_) {
        return clientError(res, 'InvalidArgumentException', 'Invalid NextToken.');
      }
    }
    const up = { StreamName: name };
    if (after) up.ExclusiveStartShardId = after;
    const r = await upstream(kinPort, headers, up);
    if (r.status !== 200) {
      res.writeHead(r.status, { 'content-type': r.headers['content-type'] || 'application/x-amz-json-1.1' });
      return res.end(r.body);
    }
    const shards = JSON.parse(r.body.toString()).Shards || [];
    const max = data.MaxResults || 1000;
    const page = shards.slice(0, max);
    const out = { Shards: page };
    if (shards.length > max) {
      out.NextToken = Buffer.from(JSON.stringify({ s: name, a: page[page.length - 1].ShardId }))
        .toString('base64url');
    }
    return send(res, 200, out);
  }

  async function handle(req, res) {
    const raw = await readBody(req);
    if (req.url.startsWith('/__paged/')) {
      if (req.url === '/__paged/throttle') {
        const s = JSON.parse(raw.toString() || '{}');
        throttles[s.target] = (throttles[s.target] || 0) + (s.times || 1);
        return send(res, 200, { ok: true });
      }
      if (req.url === '/__paged/age_iterator') {
        const s = JSON.parse(raw.toString() || '{}');
        return send(res, 200, { iterator: ageIterator(s.iterator, s.ms) });
      }
      if (req.url === '/__paged/stats') return send(res, 200, stats);
      if (req.url === '/__paged/reset') {
        throttles = {};
        stats = { targets: {}, log: [] };
        return send(res, 200, { ok: true });
      }
      return send(res, 404, { message: 'unknown control path' });
    }
    const target = String(req.headers['x-amz-target'] || '');
    const op = target.startsWith(TARGET_PREFIX) ? target.slice(TARGET_PREFIX.length) : target;
    stats.targets[op] = (stats.targets[op] || 0) + 1;
    let data;
    try {
      data = JSON.parse(raw.toString() || '{}');
    } catch (_) {
      return clientError(res, 'SerializationException', 'body is not JSON');
    }
    if (op === 'ListShards' && stats.log.length < 200) stats.log.push(data);
    if (throttles[op] > 0) {
      throttles[op]--;
      return clientError(res, 'LimitExceededException', 'Rate exceeded for stream (injected).');
    }
    if (data.StreamARN && !data.StreamName) data.StreamName = nameFromArn(data.StreamARN);
    delete data.StreamARN;
    if (op === 'ListShards') return listShards(res, req.headers, data);
    const r = await upstream(kinPort, req.headers, data);
    const h = { 'content-type': r.headers['content-type'] || 'application/x-amz-json-1.1' };
    res.writeHead(r.status, h);
    return res.end(r.body);
  }

  const server = http.createServer((req, res) => {
    handle(req, res).catch((e) => {
      if (!res.headersSent) send(res, 500, { __type: 'InternalFailure', message: String(e) });
      else res.destroy();
    });
  });
  const port = await listen(server);
  return {
    url: `http://${HOST}:${port}`,
    close: () => { server.close(); kin.close(); },
  };
}
