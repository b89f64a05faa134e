// Starts local AWS stand-ins on ephemeral loopback ports for kcld's tests.
//
//   node emulators.js [--ttl SECONDS] NAME...
//
// NAME is kinesis (kinesalite), dynamodb (dynalite), sqs (fauxqs) or the name of
// a module in lib/ that exports `async start() -> {url, close}`.  Once every
// server listens, one JSON line {"NAME": "http://127.0.0.1:PORT", ...} goes to
// stdout.  The process exits when its stdin closes (the test that started it
// ended, however it ended), on SIGTERM/SIGINT, or after --ttl seconds (default
// 600), so an emulator never outlives its test.
import kinesalite from 'kinesalite';
import dynalite from 'dynalite';
import { buildApp } from 'fauxqs';

const HOST = '127.0.0.1';

function listen(server) {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, HOST, () => resolve(`http://${HOST}:${server.address().port}`));
  });
}

const builtin = {
  async kinesis() {
    const s = kinesalite({ createStreamMs: 0, deleteStreamMs: 0, updateStreamMs: 0, shardLimit: 1000 });
    return { url: await listen(s), close: () => s.close() };
  },
  async dynamodb() {
    const s = dynalite({ createTableMs: 0, deleteTableMs: 0, updateTableMs: 0 });
    return { url: await listen(s), close: () => s.close() };
  },
  async sqs() {
    const app = buildApp({ logger: false, host: 'localhost' });
    const url = await app.listen({ port: 0, host: HOST });
    return { url, close: () => app.close() };
  },
};

async function start(name) {
  if (builtin[name]) return builtin[name]();
  if (!/^[a-z0-9_-]+$/.test(name)) throw new Error(`bad emulator name: ${name}`);
  const mod = await import(new URL(`./lib/${name}.js`, import.meta.url));
  return mod.start();
}

const args = process.argv.slice(2);
let ttl = 600;
const names = [];
for (let i = 0; i < args.length; i++) {
  if (args[i] === '--ttl') ttl = Number(args[++i]);
  else names.push(args[i]);
}
if (names.length === 0) {
  process.stderr.write('usage: node emulators.js [--ttl SECONDS] NAME...\n');
  process.exit(2);
}

const running = [];
function shutdown(code) {
  for (const r of running) { try { r.close(); } catch (_) { /* closing anyway */ } }
  process.exit(code);
}
process.on('SIGTERM', () => shutdown(0));
process.on('SIGINT', () => shutdown(0));
process.stdin.on('end', () => shutdown(0));
process.stdin.on('error', () => shutdown(0));
process.stdin.resume();
setTimeout(() => {
  process.stderr.write(`emulators: --ttl ${ttl}s reached, exiting\n`);
  shutdown(1);
}, ttl * 1000).unref();

try {
  const out = {};
  for (const n of names) {
    const r = await start(n);
    running.push(r);
    out[n] = r.url;
  }
  process.stdout.write(JSON.stringify(out) + '\n');
} catch (e) {
  process.stderr.write(`emulators: ${e.stack || e}\n`);
  shutdown(1);
}
