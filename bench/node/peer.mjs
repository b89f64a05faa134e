// peer.mjs - the peer consumer: @aws-sdk/client-kinesis doing what kcld does
// with a no-op handler, without leases.
//
//   node peer.mjs throughput ENDPOINT STREAM
//   node peer.mjs latency ENDPOINT STREAM SECONDS IDLE_MS
//
// throughput: lists the shards and reads every shard from TRIM_HORIZON to its
// end (null NextShardIterator) concurrently, GetRecords with Limit 10000; the
// SDK decodes each record's Data from base64 to a Uint8Array, and the peer
// counts records and bytes.  Prints one JSON line: records, bytes, seconds
// (first GetRecords to the last shard end), CPU seconds and page faults
// (minor + major) over the same span, peak RSS (KiB).
// latency: reads every shard from LATEST, waiting IDLE_MS after an empty
// read (the KCL's idleTimeBetweenReads); every record's Data is JSON {"t":
// epoch ms at put}; prints {"latencies": [ms...]} after SECONDS.
// Ends at once when its stdin closes (the driver that started it is gone).
import { KinesisClient, ListShardsCommand, GetShardIteratorCommand,
         GetRecordsCommand } from '@aws-sdk/client-kinesis';
import { NodeHttpHandler } from '@smithy/node-http-handler';
import http from 'node:http';

const [mode, endpoint, stream, secs, idle] = process.argv.slice(2);
const client = new KinesisClient({
  endpoint, region: 'us-east-1', maxAttempts: 3,
  // The Kinesis client defaults to HTTP/2 (for SubscribeToShard); the fixture
  // and kinesalite speak HTTP/1.1, as kcld does: keep-alive connections.
  requestHandler: new NodeHttpHandler({
    httpAgent: new http.Agent({ keepAlive: true, maxSockets: 64 }) }),
  credentials: { accessKeyId: 'test', secretAccessKey: 'test' },
});
const now = () => performance.timeOrigin + performance.now();
process.stdin.on('end', () => process.exit(0));
process.stdin.on('error', () => process.exit(0));
process.stdin.resume();
const faults = () => {
  const u = process.resourceUsage();
  return u.minorPageFault + u.majorPageFault;
};
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function shards() {
  const out = [];
  let token;
  do {
    const r = await client.send(new ListShardsCommand(
      token ? { NextToken: token } : { StreamName: stream }));
    for (const s of r.Shards) out.push(s.ShardId);
    token = r.NextToken;
  } while (token);
  return out;
}

async function iterator(id, type) {
  const r = await client.send(new GetShardIteratorCommand(
    { StreamName: stream, ShardId: id, ShardIteratorType: type }));
  return r.ShardIterator;
}

async function throughput() {
  const ids = await shards();
  const its = await Promise.all(ids.map((id) => iterator(id, 'TRIM_HORIZON')));
  let records = 0, bytes = 0;
  const cpu0 = process.cpuUsage();
  const faults0 = faults();
  const t0 = now();
  await Promise.all(its.map(async (it) => {
    while (it) {
      const r = await client.send(new GetRecordsCommand(
        { ShardIterator: it, Limit: 10000 }));
      for (const rec of r.Records) { records++; bytes += rec.Data.length; }
      it = r.NextShardIterator;
    }
  }));
  const seconds = (now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  process.stdout.write(JSON.stringify({
    records, bytes, seconds, cpu: (cpu.user + cpu.system) / 1e6,
    faults: faults() - faults0, rss_kib: process.resourceUsage().maxRSS }) +
    '\n');
}

async function latency() {
  const ids = await shards();
  const end = now() + Number(secs) * 1000;
  const lat = [];
  const dec = new TextDecoder();
  await Promise.all(ids.map(async (id) => {
    let it = await iterator(id, 'LATEST');
    while (it && now() < end) {
      const r = await client.send(new GetRecordsCommand({ ShardIterator: it }));
      const t = now();
      for (const rec of r.Records) {
        try { lat.push(t - JSON.parse(dec.decode(rec.Data)).t); }
        catch (_) { /* not one of ours */ }
      }
      it = r.NextShardIterator;
      if (r.Records.length === 0) await sleep(Number(idle));
    }
  }));
  process.stdout.write(JSON.stringify({ latencies: lat }) + '\n');
}

if (mode === 'throughput') await throughput();
else if (mode === 'latency') await latency();
else { process.stderr.write('usage: peer.mjs throughput|latency ...\n'); process.exit(2); }
process.exit(0);
