// emu.mjs - dynalite (and with --kinesis, kinesalite) for the benchmarks,
// counting requests by operation.
//
//   node emu.mjs [--kinesis | --kinesis-efo]
//
// Uses the emulators installed for the tests (tests/emulators/node_modules).
// --kinesis-efo serves Kinesis with enhanced fan-out (SubscribeToShard over
// h2c) from tests/emulators/lib/kinesis_efo.js instead of plain kinesalite
// (its requests are not counted here: POST /__efo/stats on it).
// Prints one JSON line {"dynamodb": URL, "kinesis": URL, "stats": URL}; GET
// STATS answers {"dynamodb": {Op: count...}, "kinesis": {...},
// "connections": {"dynamodb": N, "kinesis": N}}.  Ends when stdin closes.
import http from 'node:http';
import { createRequire } from 'node:module';

const require = createRequire(new URL('../../tests/emulators/package.json',
                                      import.meta.url));
const dynalite = require('dynalite');
const counts = { dynamodb: {}, kinesis: {},
                 connections: { dynamodb: 0, kinesis: 0 } };

function counted(name, server) {
  server.on('connection', () => { counts.connections[name]++; });
  server.on('request', (req) => {
    const t = String(req.headers['x-amz-target'] || 'other');
    const op = t.slice(t.indexOf('.') + 1);
    counts[name][op] = (counts[name][op] || 0) + 1;
  });
  return server;
}

function listen(server) {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1',
                  () => resolve(`http://127.0.0.1:${server.address().port}`));
  });
}

const out = {};
out.dynamodb = await listen(counted('dynamodb', dynalite(
  { createTableMs: 0, deleteTableMs: 0, updateTableMs: 0 })));
if (process.argv.includes('--kinesis')) {
  const kinesalite = require('kinesalite');
  out.kinesis = await listen(counted('kinesis', kinesalite(
    { createStreamMs: 0, deleteStreamMs: 0, updateStreamMs: 0,
      shardLimit: 1000 })));
} else if (process.argv.includes('--kinesis-efo')) {
  const efo = await import(new URL('../../tests/emulators/lib/kinesis_efo.js',
                                   import.meta.url));
  out.kinesis = (await efo.start()).url;
}
out.stats = await listen(http.createServer((req, res) => {
  res.writeHead(200, { 'Content-Type': 'application/json' });
  res.end(JSON.stringify(counts));
}));
process.stdout.write(JSON.stringify(out) + '\n');
process.stdin.on('end', () => process.exit(0));
process.stdin.on('error', () => process.exit(0));
process.stdin.resume();
process.on('SIGTERM', () => process.exit(0));
