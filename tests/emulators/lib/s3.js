// s3.js — a local S3 for kcld's tests: s3rver (npm) behind a front that
// checks every request's SigV4 signature the way S3 does, which s3rver
// itself does not (it accepts any V4 signature).
//
// Loaded by emulators.js as the emulator "s3".  Both listen on 127.0.0.1,
// port 0; the front's URL is the emulator's.  s3rver keeps its objects in a
// temporary directory removed on close.
//
// The front, per request:
//   - SigV4 for S3 (@smithy/signature-v4: path as sent, encoded once;
//     x-amz-content-sha256 signed): a request signed with none of the
//     `secrets` (default: the test harnesses' "kcld-test-secret" and
//     "test"; the key id is not checked) gets 403 SignatureDoesNotMatch; an x-amz-content-sha256 that is not the
//     body's SHA-256 gets 400 XAmzContentSHA256Mismatch, as S3 answers;
//   - a scripted fault first, if one is armed (below);
//   - else the request goes to s3rver as it came (with s3rver's own key id).
// Control plane (JSON):
//   POST /__s3/fault  {"status": 503, "code": "SlowDown", "times": N,
//                      "method": "PUT"}  (method optional: only those)
//                     the next N matching requests get that error
//   POST /__s3/config {"secrets": ["...", ...]}
//   GET  /__s3/stats  {"requests": N, "rejected": N, "faults": N,
//                      "bytes_in": N, "log": [{method, path, status}]}
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { createRequire } from 'node:module';
import { SignatureV4 } from '@smithy/signature-v4';
import { Sha256 } from '@aws-crypto/sha256-js';
import { HttpRequest } from '@smithy/core/protocols';

import { listenLoopback, readBody } from './h2util.js';

const require = createRequire(import.meta.url);
const S3rver = require('s3rver');

// s3rver 3.7.1 makes ListObjectsV2 continuation tokens with DES, which
// OpenSSL 3 (Node 17 on) no longer offers: those tokens are made without a
// cipher here (base64 of its random prefix and the last key: still opaque
// to a client, which only hands them back).
for (const name of ['createCipheriv', 'createDecipheriv']) {
  const real = crypto[name];
  crypto[name] = (alg, ...rest) => (alg === 'des'
    ? { update: (d, enc) => Buffer.from(d, enc), final: () => Buffer.alloc(0) }
    : real.call(crypto, alg, ...rest));
}

const HOST = '127.0.0.1';

function xmlError(code, message) {
  return '<?xml version="1.0" encoding="UTF-8"?>\n' +
    `<Error><Code>${code}</Code><Message>${message}</Message>` +
    '<RequestId>fake-request</RequestId></Error>';
}

function parseAmzDate(s) {
  const m = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/.exec(s || '');
  return m ? Date.UTC(+m[1], m[2] - 1, +m[3], +m[4], +m[5], +m[6]) : NaN;
}

// null when the request is signed as S3 wants it with one of `secrets`,
// else [status, code, why].
async function verify(req, body, secrets) {
  const auth = req.headers.authorization || '';
  const m = /^AWS4-HMAC-SHA256 Credential=([^/]+)\/\d{8}\/([^/]+)\/([^/]+)\/aws4_request, ?SignedHeaders=([^,]+), ?Signature=([0-9a-f]{64})$/.exec(auth);
  if (!m) return [403, 'AccessDenied', 'missing or malformed Authorization header'];
  const [, akid, region, service, signedList, signature] = m;
  const sha = crypto.createHash('sha256').update(body).digest('hex');
  if (req.headers['x-amz-content-sha256'] !== sha) {
    return [400, 'XAmzContentSHA256Mismatch',
      "The provided 'x-amz-content-sha256' header does not match what was computed."];
  }
  const amzDate = parseAmzDate(req.headers['x-amz-date']);
  if (Number.isNaN(amzDate)) return [403, 'AccessDenied', 'missing X-Amz-Date'];
  const signed = signedList.split(';');
  const headers = {};
  for (const h of signed) {
    if (req.headers[h] === undefined) return [403, 'SignatureDoesNotMatch', `signed header ${h} is absent`];
    if (h !== 'x-amz-date' && h !== 'x-amz-security-token') {
      headers[h] = req.headers[h];
    }
  }
  const q = req.url.indexOf('?');
  const query = {};
  for (const [k, v] of new URLSearchParams(q < 0 ? '' : req.url.slice(q + 1))) {
    query[k] = k in query ? [].concat(query[k], v) : v;
  }
  for (const secret of secrets) {
    const signer = new SignatureV4({
      credentials: { accessKeyId: akid, secretAccessKey: secret,
        sessionToken: req.headers['x-amz-security-token'] },
      region, service, sha256: Sha256, uriEscapePath: false, applyChecksum: true,
    });
    const out = await signer.sign(new HttpRequest({
      method: req.method, protocol: 'https:',
      hostname: String(req.headers.host || '').split(':')[0],
      // The payload hash is the header's, checked against the body above.
      path: q < 0 ? req.url : req.url.slice(0, q), query, headers,
    }), { signingDate: new Date(amzDate) });
    const want = /Signature=([0-9a-f]{64})/.exec(out.headers.authorization || '');
    if (want && want[1] === signature) return null;
  }
  return [403, 'SignatureDoesNotMatch',
    'The request signature we calculated does not match the signature you provided.'];
}

export async function start() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kcld-s3rver-'));
  const s3 = new S3rver({ port: 0, address: HOST, silent: true, directory: dir,
    allowMismatchedSignatures: true, vhostBuckets: false });
  const upstream = await s3.run();
  const agent = new http.Agent({ keepAlive: true });
  let secrets = ['kcld-test-secret', 'test'];
  let fault = null;
  const stats = { requests: 0, rejected: 0, faults: 0, bytes_in: 0, log: [] };

  function answer(req, res, status, code, why) {
    stats.log.push({ method: req.method, path: req.url.split('?')[0], status });
    if (stats.log.length > 200) stats.log.shift();
    const body = req.method === 'HEAD' ? '' : xmlError(code, why);
    res.writeHead(status, { 'Content-Type': 'application/xml', 'Content-Length': Buffer.byteLength(body) });
    res.end(body);
  }

  async function control(req, res, body) {
    const p = req.url.split('?')[0];
    let j = {};
    try { j = body.length ? JSON.parse(body.toString()) : {}; } catch (e) { /* an empty object */ }
    let out = { ok: true };
    if (p === '/__s3/fault') fault = { times: 1, ...j };
    else if (p === '/__s3/config') secrets = j.secrets ?? secrets;
    else if (p === '/__s3/stats') out = stats;
    else { res.writeHead(404); res.end(); return; }
    const s = JSON.stringify(out);
    res.writeHead(200, { 'Content-Type': 'application/json' });
    res.end(s);
  }

  const server = http.createServer(async (req, res) => {
    const body = await readBody(req);
    if (req.url.startsWith('/__s3/')) { await control(req, res, body); return; }
    stats.requests++;
    stats.bytes_in += body.length;
    const bad = await verify(req, body, secrets);
    if (bad) { stats.rejected++; answer(req, res, ...bad); return; }
    if (fault && fault.times > 0 && (!fault.method || fault.method === req.method)) {
      fault.times--;
      stats.faults++;
      answer(req, res, fault.status || 503, fault.code || 'SlowDown', 'injected fault');
      return;
    }
    // s3rver knows one key id (its own) and checks no V4 signature.
    const headers = { ...req.headers,
      authorization: req.headers.authorization.replace(/Credential=[^/]+/, 'Credential=S3RVER') };
    const up = http.request({ host: HOST, port: upstream.port, method: req.method,
      path: req.url, headers, agent }, (ur) => {
      stats.log.push({ method: req.method, path: req.url.split('?')[0], status: ur.statusCode });
      res.writeHead(ur.statusCode, ur.headers);
      ur.pipe(res);
    });
    up.on('error', (e) => answer(req, res, 500, 'InternalError', String(e)));
    up.end(body);
  });
  server.keepAliveTimeout = 60000;
  return {
    url: await listenLoopback(server),
    close: () => {
      server.close();
      agent.destroy();
      s3.close().catch(() => {});
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}
