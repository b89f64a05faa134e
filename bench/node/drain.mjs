// drain.mjs - the fixture alone: fetches every GetRecords body of every shard
// over keep-alive connections and throws it away unparsed (the next iterator
// comes in the fixture's x-bench-next header), so the serving rate of the
// fixture is known to exceed what the consumers reach.
//
//   node drain.mjs ENDPOINT SHARDS RECORDS_PER_SHARD
//
// Ends at once when its stdin closes (the driver that started it is gone).
import http from 'node:http';

process.stdin.on('end', () => process.exit(0));
process.stdin.on('error', () => process.exit(0));
process.stdin.resume();

const [endpoint, shardsArg, perShard] = process.argv.slice(2);
const agent = new http.Agent({ keepAlive: true, maxSockets: 64 });
const url = new URL(endpoint);

function get(iterator) {
  const body = JSON.stringify({ ShardIterator: iterator, Limit: 10000 });
  return new Promise((resolve, reject) => {
    const req = http.request({
      host: url.hostname, port: url.port, method: 'POST', path: '/', agent,
      headers: { 'Content-Type': 'application/x-amz-json-1.1',
                 'X-Amz-Target': 'Kinesis_20131202.GetRecords',
                 'Content-Length': Buffer.byteLength(body) } }, (res) => {
      let n = 0;
      res.on('data', (d) => { n += d.length; });
      res.on('end', () => resolve({ n, next: res.headers['x-bench-next'] }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(body);
  });
}

const shards = Number(shardsArg);
let bytes = 0;
const t0 = performance.now();
await Promise.all([...Array(shards).keys()].map(async (s) => {
  let it = `it-${s}-0`;
  while (it) { const r = await get(it); bytes += r.n; it = r.next; }
}));
const seconds = (performance.now() - t0) / 1000;
process.stdout.write(JSON.stringify({
  records: shards * Number(perShard), body_bytes: bytes, seconds }) + '\n');
agent.destroy();
process.exit(0);
