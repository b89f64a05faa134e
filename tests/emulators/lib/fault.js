// fault.js — a scripted fault-injecting HTTP endpoint for kcld's tests.
//
// Loaded by emulators.js as the emulator "fault".  Listens on 127.0.0.1, port
// 0.  Every request outside /__fault/ is a data request: it consumes one step
// of the current script; once the steps are used up it is passed on ("proxy"
// to the upstream, or "ok": 200 {}), or the last step repeats.
//
// Control plane (JSON in, JSON out):
//   POST /__fault/script  {"upstream": "http://127.0.0.1:P",       (optional)
//                          "steps": [STEP, ...],
//                          "then": "proxy" | "ok" | "repeat-last",
//                          "clock_skew_seconds": S,                 (optional)
//                          "verify": {"secret": "..."},            (optional)
//                          "keep_alive_ms": MS}                    (optional)
//                         Replaces the script and resets the stats.
//   GET  /__fault/stats   {"total": N, "targets": {"Kinesis_20131202.ListStreams": N, ...},
//                          "steps_used": N, "passed": N, "skew_rejected": N,
//                          "signature_rejected": N,
//                          "connections": N, "data_connections": N,
//                          "open_data_connections": N, "log": [...]}
//   POST /__fault/reset   forget the script and the stats.
//   POST /__fault/tls     {"cert": PEM, "key": PEM} -> {"url": "https://127.0.0.1:P"}:
//                         the same endpoint (same script and stats) over TLS.
//
// A STEP is an object; all fields are optional:
//   target       only requests whose X-Amz-Target is this (full, or the part
//                after the '.', e.g. "GetRecords") use the step; others pass
//                through without consuming it
//   times        how many requests the step serves (default 1)
//   delay_ms     wait this long first (then act as below)
//   skew_seconds the response's Date header is this far off the real clock
//   status, body, headers
//                answer with this status (default 200), body (object -> JSON,
//                string -> as is; default {} or, for status >= 400, an
//                InjectedFault error) and extra headers
//   garbage      200 with a body that is not JSON
//   truncate     announce the whole body's length, send half, close
//   close        true: close the connection without answering;
//                "mid": send part of the status line and headers, then close
//   echo         true: answer 200 with the request body; "headers": answer
//                with {"method", "url", "headers", "body_length"}
//   body_bytes   answer 200 with {"pad":"abc...z abc..."} of exactly N bytes
// A step with none of the answering fields passes the request on after its
// delay (to the upstream, else 200 {}).
//
// clock_skew_seconds: the endpoint's clock runs S seconds off, and any data
// request whose X-Amz-Date is more than 5 minutes away from that clock is
// refused as AWS does (400 InvalidSignatureException, Date = skewed clock)
// before any step is looked at.
//
// keep_alive_ms: the endpoint closes a connection that has been idle this
// long after an answer (Node's keepAliveTimeout, to which Node 20 adds ~1 s;
// 60 s when not given), as dynalite and Node servers do after 5 s.
//
// verify: every data request must carry a SigV4 Authorization header that
// @smithy/signature-v4 (the AWS SDK for JavaScript's signer) reproduces with
// this secret, the access key, scope, date, signed headers and session
// token the request names; otherwise 403 InvalidSignatureException with the
// canonical string in the message, as AWS answers.  Checked after the skew
// check, before the steps.
import http from 'node:http';
import https from 'node:https';
import { SignatureV4 } from '@smithy/signature-v4';
import { Sha256 } from '@aws-crypto/sha256-js';
import { HttpRequest } from '@smithy/core/protocols';

const HOST = '127.0.0.1';
const LOG_MAX = 2000;
const ANSWERING = ['status', 'body', 'headers', 'garbage', 'truncate', 'close', 'echo', 'body_bytes'];

function newStats() {
  return {
    total: 0, targets: {}, steps_used: 0, passed: 0, skew_rejected: 0, signature_rejected: 0,
    data_connections: 0, log: [],
  };
}

function readBody(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

function sleep(ms, timers) {
  return new Promise((resolve) => {
    const t = setTimeout(() => { timers.delete(t); resolve(); }, ms);
    timers.add(t);
  });
}

function httpDate(skewSeconds) {
  return new Date(Date.now() + skewSeconds * 1000).toUTCString();
}

// "20150830T123600Z" -> epoch ms, or NaN.
function parseAmzDate(s) {
  const m = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/.exec(s || '');
  if (!m) return NaN;
  return Date.UTC(+m[1], +m[2] - 1, +m[3], +m[4], +m[5], +m[6]);
}

// Re-signs the request with `secret`; returns null when the signature
// matches, else the reason and the canonical string AWS would print.
export async function verifySignature(req, body, secret) {
  const auth = req.headers.authorization || '';
  const m = /^AWS4-HMAC-SHA256 Credential=([^/]+)\/(\d{8})\/([^/]+)\/([^/]+)\/aws4_request, ?SignedHeaders=([^,]+), ?Signature=([0-9a-f]{64})$/.exec(auth);
  if (!m) return { reason: 'missing or malformed Authorization header', canonical: '' };
  const [, akid, , region, service, signedList, signature] = m;
  const signed = signedList.split(';');
  const amzDate = parseAmzDate(req.headers['x-amz-date']);
  if (Number.isNaN(amzDate)) return { reason: 'missing X-Amz-Date', canonical: '' };
  const token = req.headers['x-amz-security-token'];
  const headers = {};
  let canonical = `${req.method}\n${req.url.split('?')[0]}\n\n`;
  for (const h of signed) {
    if (req.headers[h] === undefined) return { reason: `signed header ${h} is absent`, canonical: '' };
    canonical += `${h}:${req.headers[h]}\n`;
    if (h !== 'x-amz-date' && h !== 'x-amz-security-token') headers[h] = req.headers[h];
  }
  const signer = new SignatureV4({
    credentials: { accessKeyId: akid, secretAccessKey: secret, sessionToken: token },
    region, service, sha256: Sha256, uriEscapePath: true, applyChecksum: false,
  });
  const url = new URL(req.url, 'http://x');
  const out = await signer.sign(new HttpRequest({
    method: req.method, protocol: 'https:', hostname: String(req.headers.host || '').split(':')[0],
    path: url.pathname, query: Object.fromEntries(url.searchParams), headers,
    body: body.length ? new Uint8Array(body) : undefined,
  }), { signingDate: new Date(amzDate) });
  const want = /Signature=([0-9a-f]{64})/.exec(out.headers.authorization || '');
  if (want && want[1] === signature) return null;
  return { reason: 'signature mismatch', canonical };
}

function padBody(n) {
  const head = '{"pad":"';
  const tail = '"}';
  const k = Math.max(0, n - head.length - tail.length);
  const buf = Buffer.alloc(head.length + k + tail.length);
  buf.write(head, 0);
  for (let i = 0; i < k; i++) buf[head.length + i] = 97 + (i % 26);
  buf.write(tail, head.length + k);
  return buf;
}

export async function start() {
  let script = { steps: [], then: null, upstream: null, clock_skew_seconds: null };
  let stepIndex = 0;
  let stepUsed = 0; // requests served by the current step
  let stats = newStats();
  let dataSockets = new WeakSet();
  let connections = 0;
  const sockets = new Set();
  const dataOpen = new Set(); // data connections not yet closed
  const timers = new Set();
  const servers = [];
  const upstreamAgent = new http.Agent({ keepAlive: true });

  function reset(newScript) {
    script = newScript;
    for (const srv of servers) srv.keepAliveTimeout = newScript.keep_alive_ms || 60000;
    stepIndex = 0;
    stepUsed = 0;
    stats = newStats();
    dataSockets = new WeakSet();
  }

  function json(res, status, obj, headers = {}) {
    const body = Buffer.from(JSON.stringify(obj));
    res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': body.length, ...headers });
    res.end(body);
  }

  // The step this request uses, or null (pass it on).
  function pickStep(target) {
    const steps = script.steps || [];
    if (stepIndex < steps.length) {
      const step = steps[stepIndex];
      if (step.target && step.target !== target && step.target !== target.split('.').pop()) return null;
      stepUsed++;
      if (stepUsed >= (step.times || 1)) { stepIndex++; stepUsed = 0; }
      stats.steps_used++;
      return step;
    }
    const then = script.then || (script.upstream ? 'proxy' : 'ok');
    if (then === 'repeat-last' && steps.length > 0) {
      const step = steps[steps.length - 1];
      if (step.target && step.target !== target && step.target !== target.split('.').pop()) return null;
      stats.steps_used++;
      return step;
    }
    return null;
  }

  function pass(req, res, body, skew) {
    stats.passed++;
    const then = script.then || (script.upstream ? 'proxy' : 'ok');
    if (!script.upstream || then === 'ok') {
      const ct = req.headers['content-type'] || 'application/json';
      const out = Buffer.from('{}');
      res.writeHead(200, { 'Content-Type': ct, 'Content-Length': out.length, Date: httpDate(skew) });
      res.end(out);
      return;
    }
    const up = new URL(req.url, script.upstream);
    const preq = http.request(up, { method: req.method, headers: req.headers, agent: upstreamAgent }, (pres) => {
      const headers = { ...pres.headers };
      if (skew) headers.date = httpDate(skew);
      res.writeHead(pres.statusCode, headers);
      pres.pipe(res);
    });
    preq.on('error', (e) => {
      if (!res.headersSent) json(res, 502, { __type: 'ProxyError', message: String(e.message) });
      else res.destroy();
    });
    preq.end(body);
  }

  function writeRawAndClose(socket, text) {
    socket.end(text);
    const t = setTimeout(() => { timers.delete(t); socket.destroy(); }, 200);
    timers.add(t);
  }

  async function answer(req, res, step, body) {
    const skew = step.skew_seconds ?? script.clock_skew_seconds ?? 0;
    if (step.delay_ms) {
      await sleep(step.delay_ms, timers);
      if (req.socket.destroyed) return 'client-gone';
    }
    if (!ANSWERING.some((k) => k in step)) {
      pass(req, res, body, skew);
      return 'pass';
    }
    const ct = req.headers['content-type'] || 'application/x-amz-json-1.1';
    if (step.close === 'mid') {
      writeRawAndClose(req.socket, `HTTP/1.1 200 OK\r\nContent-Type: ${ct}\r\nContent-Len`);
      return 'close-mid';
    }
    if (step.close) {
      req.socket.destroy();
      return 'close';
    }
    if (step.garbage) {
      const out = Buffer.from(typeof step.body === 'string' ? step.body : '<html><body>Service Unavailable</body></html>');
      res.writeHead(200, { 'Content-Type': ct, 'Content-Length': out.length, Date: httpDate(skew) });
      res.end(out);
      return 'garbage';
    }
    if (step.echo === 'headers') {
      json(res, 200, { method: req.method, url: req.url, headers: req.headers, body_length: body.length },
        { Date: httpDate(skew) });
      return 'echo-headers';
    }
    if (step.echo) {
      res.writeHead(200, { 'Content-Type': ct, 'Content-Length': body.length, Date: httpDate(skew) });
      res.end(body);
      return 'echo';
    }
    const status = step.status || 200;
    let out;
    if (step.body_bytes) out = padBody(step.body_bytes);
    else if (typeof step.body === 'string') out = Buffer.from(step.body);
    else if (step.body !== undefined) out = Buffer.from(JSON.stringify(step.body));
    else if (status >= 400) out = Buffer.from(JSON.stringify({ __type: 'InjectedFault', message: `injected HTTP ${status}` }));
    else out = Buffer.from(step.truncate ? JSON.stringify({ Records: [], pad: 'x'.repeat(4000) }) : '{}');
    const headers = { 'Content-Type': ct, 'Content-Length': out.length, Date: httpDate(skew), ...(step.headers || {}) };
    if (step.truncate) {
      let head = `HTTP/1.1 ${status} X\r\n`;
      for (const [k, v] of Object.entries(headers)) head += `${k}: ${v}\r\n`;
      head += 'Connection: close\r\n\r\n';
      writeRawAndClose(req.socket, Buffer.concat([Buffer.from(head), out.subarray(0, out.length >> 1)]));
      return 'truncate';
    }
    res.writeHead(status, headers);
    res.end(out);
    return `status-${status}`;
  }

  async function data(req, res) {
    const body = await readBody(req);
    const target = req.headers['x-amz-target'] || '-';
    stats.total++;
    stats.targets[target] = (stats.targets[target] || 0) + 1;
    if (!dataSockets.has(req.socket)) {
      dataSockets.add(req.socket);
      stats.data_connections++;
      dataOpen.add(req.socket);
      req.socket.on('close', () => dataOpen.delete(req.socket));
    }
    const entry = { target, amz_date: req.headers['x-amz-date'] || null, action: null };
    if (stats.log.length < LOG_MAX) stats.log.push(entry);

    const skew = script.clock_skew_seconds;
    if (typeof skew === 'number') {
      const sent = parseAmzDate(req.headers['x-amz-date']);
      const now = Date.now() + skew * 1000;
      if (!(Math.abs(sent - now) <= 300 * 1000)) {
        stats.skew_rejected++;
        entry.action = 'skew-rejected';
        json(res, 400, {
          __type: 'InvalidSignatureException',
          message: 'Signature expired: the request time is more than 5 minutes away from the server time.',
        }, { Date: httpDate(skew) });
        return;
      }
    }
    if (script.verify && script.verify.secret) {
      const bad = await verifySignature(req, body, script.verify.secret);
      if (bad) {
        stats.signature_rejected++;
        entry.action = 'signature-rejected';
        json(res, 403, {
          __type: 'InvalidSignatureException',
          message: `The request signature we calculated does not match the signature you provided (${bad.reason}). ` +
            'Check your AWS Secret Access Key and signing method. Consult the service documentation for details.\n\n' +
            `The Canonical String for this request should have been\n'${bad.canonical}'\n`,
        });
        return;
      }
    }
    const step = pickStep(target);
    entry.action = step ? await answer(req, res, step, body) : (pass(req, res, body, 0), 'pass');
  }

  async function control(req, res) {
    const body = await readBody(req);
    const path = req.url.split('?')[0];
    if (req.method === 'GET' && path === '/__fault/stats') {
      json(res, 200, { ...stats, connections, open_data_connections: dataOpen.size });
    } else if (req.method === 'POST' && path === '/__fault/script') {
      let s;
      try { s = JSON.parse(body.toString() || '{}'); } catch (e) { json(res, 400, { error: 'bad JSON' }); return; }
      if (!s || typeof s !== 'object' || (s.steps !== undefined && !Array.isArray(s.steps))) {
        json(res, 400, { error: 'steps must be an array' });
        return;
      }
      reset({ steps: s.steps || [], then: s.then || null, upstream: s.upstream || null,
        verify: s.verify || null,
        keep_alive_ms: typeof s.keep_alive_ms === 'number' ? s.keep_alive_ms : null,
        clock_skew_seconds: typeof s.clock_skew_seconds === 'number' ? s.clock_skew_seconds : null });
      json(res, 200, { ok: true });
    } else if (req.method === 'POST' && path === '/__fault/reset') {
      reset({ steps: [], then: null, upstream: null, clock_skew_seconds: null });
      json(res, 200, { ok: true });
    } else if (req.method === 'POST' && path === '/__fault/tls') {
      let s;
      try { s = JSON.parse(body.toString()); } catch (e) { json(res, 400, { error: 'bad JSON' }); return; }
      const srv = https.createServer({ cert: s.cert, key: s.key }, handler);
      const url = await listen(srv, 'https');
      json(res, 200, { url });
    } else {
      json(res, 404, { error: `no such control path: ${path}` });
    }
  }

  function handler(req, res) {
    const p = req.url.startsWith('/__fault/') ? control(req, res) : data(req, res);
    p.catch((e) => {
      process.stderr.write(`fault: ${e.stack || e}\n`);
      if (!res.headersSent) json(res, 500, { __type: 'FaultEndpointError', message: String(e.message) });
    });
  }

  function listen(server, scheme) {
    server.keepAliveTimeout = 60000;
    server.on('connection', (sock) => {
      connections++;
      sockets.add(sock);
      sock.on('close', () => sockets.delete(sock));
    });
    server.on('secureConnection', () => {});
    servers.push(server);
    return new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, HOST, () => resolve(`${scheme}://${HOST}:${server.address().port}`));
    });
  }

  const url = await listen(http.createServer(handler), 'http');
  return {
    url,
    close() {
      for (const t of timers) clearTimeout(t);
      for (const s of sockets) s.destroy();
      for (const s of servers) s.close();
      upstreamAgent.destroy();
    },
  };
}
