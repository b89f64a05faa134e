// h2test.js — an HTTP/2 (h2c) and HTTP/1.1 endpoint for the streaming tests
// of kcld's HTTP client (tests/integration/test_http_stream.c).  Loaded by
// emulators.js as the emulator "h2test".
//
//   /stream?id=ID&bytes=N&chunk=C&interval=MS&reset_after=R
//       200 application/octet-stream: N bytes, byte i = i % 251, written C
//       bytes at a time (default 16384), MS ms apart (default 0: as fast as
//       flow control lets it), then the end.  With reset_after, the stream
//       is reset (HTTP/2 RST_STREAM INTERNAL_ERROR; HTTP/1.1: the socket is
//       destroyed) once R bytes are written.
//   /status?code=S&type=T
//       status S with {"__type": T, "message": "..."} and x-amzn-ErrorType.
//   /echo
//       200 {"method", "url", "httpVersion", "headers", "body"}.
//   POST /__h2/stats
//       {"h1": HTTP/1.1 connections, "h2": HTTP/2 sessions,
//        "streams": {ID: {"acked": bytes whose write completed, "ended",
//        "closed", "rst": RST code the stream closed with (0 = none),
//        "proto": "2.0" | "1.1"}}}
//   POST /__h2/reset    forgets the stats.
//   POST /__h2/tls {"cert": PEM, "key": PEM} -> {"url": "https://127.0.0.1:P"}
//       the same endpoint (same stats) over TLS, HTTP/2 or HTTP/1.1 by ALPN.
//   POST /__h2/limited?streams=N -> {"url": "http://127.0.0.1:P"}
//       the same endpoint over h2c alone, allowing N concurrent streams per
//       session (SETTINGS_MAX_CONCURRENT_STREAMS; beyond them Node refuses).
//   POST /__h2/proxy -> {"url": "http://127.0.0.1:P"}
//       an HTTP proxy that serves CONNECT only (a tunnel to the target); the
//       stats then also hold "connects": [{"target", "auth"}] (auth: the
//       Proxy-Authorization header, or "").
import http from 'node:http';
import http2 from 'node:http2';
import { dualServer, listenLoopback, readBody, sendJson, tlsServer, tunnel } from './h2util.js';

// A CONNECT-only proxy on an ephemeral loopback port; each CONNECT is
// recorded in `connects`.
async function connectProxy(connects) {
  const proxy = http.createServer((req, res) => { res.writeHead(405); res.end(); });
  proxy.on('connect', (req, client, head) => {
    connects.push({ target: req.url, auth: req.headers['proxy-authorization'] || '' });
    tunnel(req, client, head);
  });
  const url = await listenLoopback(proxy);
  return { url, close: () => proxy.close() };
}

export async function start() {
  let streams = {};
  const connects = [];
  const extra = [];
  const srv = await dualServer(handler);
  async function handler(req, res) {
    const u = new URL(req.url, 'http://x');
    const q = (k, d) => (u.searchParams.has(k) ? Number(u.searchParams.get(k)) : d);
    if (u.pathname === '/__h2/stats') {
      await readBody(req);
      sendJson(res, 200, { h1: srv.counts.h1, h2: srv.counts.h2, streams, connects });
      return;
    }
    if (u.pathname === '/__h2/limited') {
      await readBody(req);
      const h2 = http2.createServer({ settings: { maxConcurrentStreams: q('streams', 1) } },
        handler);
      const url = await listenLoopback(h2);
      extra.push({ close: () => h2.close() });
      sendJson(res, 200, { url });
      return;
    }
    if (u.pathname === '/__h2/proxy') {
      await readBody(req);
      const p = await connectProxy(connects);
      extra.push(p);
      sendJson(res, 200, { url: p.url });
      return;
    }
    if (u.pathname === '/__h2/tls') {
      const tls = await tlsServer(handler, JSON.parse((await readBody(req)).toString()), srv.counts);
      extra.push(tls);
      sendJson(res, 200, { url: tls.url });
      return;
    }
    if (u.pathname === '/__h2/reset') {
      await readBody(req);
      streams = {};
      connects.length = 0;
      srv.counts.h1 = 0;
      srv.counts.h2 = 0;
      sendJson(res, 200, {});
      return;
    }
    const body = await readBody(req);
    if (u.pathname === '/echo') {
      sendJson(res, 200, { method: req.method, url: req.url, httpVersion: req.httpVersion,
        headers: req.headers, body: body.toString('utf8') });
      return;
    }
    if (u.pathname === '/status') {
      const type = u.searchParams.get('type') || 'InjectedFault';
      sendJson(res, q('code', 400), { __type: type, message: `injected ${type}` },
        { 'x-amzn-errortype': `${type}:http://internal.amazon.com/` });
      return;
    }
    if (u.pathname !== '/stream') {
      sendJson(res, 404, { __type: 'NotFound', message: u.pathname });
      return;
    }
    const id = u.searchParams.get('id') || String(Object.keys(streams).length);
    const st = { acked: 0, ended: false, closed: false, rst: 0, proto: req.httpVersion };
    streams[id] = st;
    const total = q('bytes', 0), chunk = q('chunk', 16384), interval = q('interval', 0);
    const resetAfter = q('reset_after', -1);
    if (req.stream) req.stream.on('close', () => { st.closed = true; st.rst = req.stream.rstCode || 0; });
    else res.on('close', () => { st.closed = true; });
    res.writeHead(200, { 'content-type': 'application/octet-stream' });
    let sent = 0;
    const step = () => {
      if (st.closed) return;
      if (resetAfter >= 0 && sent >= resetAfter) {
        // Once every byte before the reset has gone out (a reset drops
        // what is still queued).
        if (st.acked < sent) { setTimeout(step, 5); return; }
        setTimeout(() => {
          if (req.stream) req.stream.close(2 /* INTERNAL_ERROR */);
          else req.socket.destroy();
        }, 300);
        return;
      }
      if (sent >= total) {
        res.end(() => { st.ended = true; });
        return;
      }
      let n = Math.min(chunk, total - sent);
      if (resetAfter >= 0) n = Math.min(n, resetAfter - sent);
      const buf = Buffer.alloc(n);
      for (let i = 0; i < n; i++) buf[i] = (sent + i) % 251;
      sent += n;
      const ok = res.write(buf, (err) => { if (!err) st.acked += n; });
      const next = () => (interval ? setTimeout(step, interval) : setImmediate(step));
      if (ok) next();
      else res.once('drain', next);
    };
    step();
  }
  return { url: srv.url, close: () => { for (const t of extra) t.close(); srv.close(); } };
}
