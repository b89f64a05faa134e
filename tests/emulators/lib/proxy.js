// proxy.js — a tiny HTTP forward proxy for kcld's proxy tests.
//
// Plain HTTP: a request in absolute form ("GET http://host:port/path") is
// forwarded to that host and the answer passed back.  HTTPS: CONNECT
// host:port opens a TCP tunnel.  Every request is recorded.
// Control plane (requests in origin form, i.e. to the proxy itself):
//   GET /__stats  {"forwarded": ["GET http://...", ...],
//                  "connects": ["127.0.0.1:443", ...]}
//   POST /__reset forget them.
import http from 'node:http';
import { tunnel } from './h2util.js';

const HOST = '127.0.0.1';

export async function start() {
  let stats = { forwarded: [], connects: [] };
  const sockets = new Set();

  const server = http.createServer((req, res) => {
    if (!/^https?:\/\//.test(req.url)) {
      if (req.url === '/__reset') stats = { forwarded: [], connects: [] };
      res.writeHead(200, { 'Content-Type': 'application/json' });
      res.end(JSON.stringify(stats));
      return;
    }
    stats.forwarded.push(`${req.method} ${req.url}`);
    const target = new URL(req.url);
    const up = http.request({
      host: target.hostname, port: target.port || 80, method: req.method,
      path: target.pathname + target.search, headers: req.headers,
    }, (ur) => {
      res.writeHead(ur.statusCode, ur.headers);
      ur.pipe(res);
    });
    up.on('error', () => { res.writeHead(502); res.end('bad gateway'); });
    req.pipe(up);
  });
  server.on('connect', (req, client, head) => {
    stats.connects.push(req.url);
    tunnel(req, client, head);
  });
  server.on('connection', (s) => { sockets.add(s); s.on('close', () => sockets.delete(s)); });
  const url = await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, HOST, () => resolve(`http://${HOST}:${server.address().port}`));
  });
  return { url, close: () => { for (const s of sockets) s.destroy(); server.close(); } };
}
