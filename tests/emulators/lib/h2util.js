// h2util.js — one loopback port that speaks both HTTP/1.1 and HTTP/2 with
// prior knowledge (h2c), as AWS endpoints speak both (over TLS).  Not an
// emulator itself (no start()): shared by h2test.js, kinesis_efo.js and s3.js.
//
//   const srv = await dualServer(handler)
//     handler(req, res) gets Node's compatibility API objects for either
//     protocol (req.httpVersion is '1.1' or '2.0'; req.stream is the HTTP/2
//     stream, undefined over HTTP/1.1).
//   srv.url                 "http://127.0.0.1:PORT"
//   srv.counts              {h1: connections, h2: sessions}
//   srv.close()
//
//   const tls = await tlsServer(handler, {cert, key}, counts)
//     the same over TLS, the protocol chosen by ALPN (h2 or http/1.1), as
//     AWS endpoints do; counts as above.  tls.url is "https://127.0.0.1:P".
import http from 'node:http';
import http2 from 'node:http2';
import net from 'node:net';
import { Duplex } from 'node:stream';

const HOST = '127.0.0.1';
const PREFACE = 'PRI * HTTP/2.0\r\n';

export async function dualServer(handler) {
  const counts = { h1: 0, h2: 0 };
  const sockets = new Set();
  const h1 = http.createServer(handler);
  h1.keepAliveTimeout = 60000;
  const h2 = http2.createServer({ settings: { maxConcurrentStreams: 1000 } }, handler);
  h2.on('session', () => { counts.h2++; });
  const front = net.createServer((sock) => {
    sockets.add(sock);
    sock.on('close', () => sockets.delete(sock));
    sock.on('error', () => {});
    let head = Buffer.alloc(0);
    const onData = (buf) => {
      head = Buffer.concat([head, buf]);
      // Decide once the preface can be told apart from an HTTP/1.1 method.
      const n = Math.min(head.length, PREFACE.length);
      const isH2 = head.subarray(0, n).toString('latin1') === PREFACE.slice(0, n);
      if (isH2 && head.length < PREFACE.length) return;
      sock.removeListener('data', onData);
      if (isH2) {
        // Node's HTTP/2 session reads a socket's handle directly, past any
        // unshifted bytes: give it a stream that starts with them instead.
        h2.emit('connection', relay(sock, head));
        return;
      }
      sock.pause();
      sock.unshift(head);
      counts.h1++;
      h1.emit('connection', sock);
      sock.resume();
    };
    sock.on('data', onData);
  });
  await new Promise((resolve, reject) => {
    front.once('error', reject);
    front.listen(0, HOST, resolve);
  });
  return {
    url: `http://${HOST}:${front.address().port}`,
    counts,
    close() {
      for (const s of sockets) s.destroy();
      front.close();
      h1.close();
      h2.close();
    },
  };
}

export async function tlsServer(handler, { cert, key }, counts) {
  const sockets = new Set();
  const srv = http2.createSecureServer({ cert, key, allowHTTP1: true,
    settings: { maxConcurrentStreams: 1000 } }, handler);
  srv.on('session', () => { counts.h2++; });
  srv.on('secureConnection', (sock) => {
    sockets.add(sock);
    sock.on('close', () => sockets.delete(sock));
    if (sock.alpnProtocol !== 'h2') counts.h1++;
  });
  await new Promise((resolve, reject) => {
    srv.once('error', reject);
    srv.listen(0, HOST, resolve);
  });
  return {
    url: `https://${HOST}:${srv.address().port}`,
    close() {
      for (const s of sockets) s.destroy();
      srv.close();
    },
  };
}

// A duplex stream over `sock` whose readable side starts with `head`.
function relay(sock, head) {
  const d = new Duplex({
    read() { sock.resume(); },
    write(chunk, enc, cb) { sock.write(chunk, cb); },
    final(cb) { sock.end(); cb(); },
    destroy(err, cb) { sock.destroy(); cb(err); },
  });
  d.push(head);
  sock.on('data', (b) => { if (!d.push(b)) sock.pause(); });
  sock.on('end', () => d.push(null));
  sock.on('close', () => d.destroy());
  d.remoteAddress = sock.remoteAddress;
  d.remotePort = sock.remotePort;
  return d;
}

// Listens on an ephemeral loopback port; resolves to "http://127.0.0.1:P".
export function listenLoopback(server) {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, HOST, () => resolve(`http://${HOST}:${server.address().port}`));
  });
}

export function readBody(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

export function sendJson(res, status, obj, headers = {}) {
  const body = Buffer.from(JSON.stringify(obj));
  res.writeHead(status, { 'content-type': 'application/x-amz-json-1.1',
    'content-length': body.length, ...headers });
  res.end(body);
}

// A proxy's CONNECT: a TCP tunnel from `client` to the request's
// host:port ("[::1]:443" too), `head` (bytes after the request) first.
export function tunnel(req, client, head) {
  const at = req.url.lastIndexOf(':');
  const host = req.url.slice(0, at).replace(/^\[|\]$/g, '');
  const up = net.connect(Number(req.url.slice(at + 1)), host, () => {
    client.write('HTTP/1.1 200 Connection Established\r\n\r\n');
    if (head.length) up.write(head);
    up.pipe(client);
    client.pipe(up);
  });
  up.on('error', () => client.destroy());
  client.on('error', () => up.destroy());
}
