// run.mjs - kcld's benchmarks: throughput, latency, scale, failover.
//
//   node run.mjs [throughput|latency|scale|failover]...   (default: all four)
//
// Environment: KCLD_BIN (default build/kcld), KCLD_FLOOR (build/bench/floor),
// KCLD_PLUGIN (examples/plugin-count/plugin-count.so), BENCH_RECORDS (records
// per throughput configuration, default 200000), BENCH_SHARDS ("1 4 16"),
// BENCH_LEASES ("1 64 256 1024"), BENCH_WINDOW (scale steady-state window in
// seconds, default 30), BENCH_FAILOVER_REPS (runs per failover line with
// failover_time 2s, default 3), BENCH_OUT (results JSON, default
// build/bench/results.json), BENCH_PERF (a directory: profile kcld with perf
// record into it).  Prints every figure and ratio; never fails on
// slowness (it exits non-zero only when a benchmark could not run at all).
import { spawn, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import http from 'node:http';
import { KinesisClient, CreateStreamCommand, DescribeStreamSummaryCommand,
         PutRecordCommand } from '@aws-sdk/client-kinesis';
import { NodeHttpHandler } from '@smithy/node-http-handler';

const ROOT = path.resolve(new URL('../..', import.meta.url).pathname);
const HERE = path.join(ROOT, 'bench', 'node');
const KCLD = path.resolve(ROOT, process.env.KCLD_BIN || 'build/kcld');
const FLOOR = path.resolve(ROOT, process.env.KCLD_FLOOR || 'build/bench/floor');
const PLUGIN = path.resolve(ROOT, process.env.KCLD_PLUGIN ||
                            'examples/plugin-count/plugin-count.so');
const RECORDS = Number(process.env.BENCH_RECORDS || 200000);
const SHARDS = (process.env.BENCH_SHARDS || '1 4 16').split(/\s+/).map(Number);
const LEASES = (process.env.BENCH_LEASES || '1 64 256 1024').split(/\s+/)
  .map(Number);
const WINDOW = Number(process.env.BENCH_WINDOW || 30);
const OUT = path.resolve(ROOT, process.env.BENCH_OUT ||
                         'build/bench/results.json');
const TMP = fs.mkdtempSync(path.join(os.tmpdir(), 'kcld-bench-'));
const CLK_TCK = 100;
const PAGE = 4096;

const now = () => performance.timeOrigin + performance.now();
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const log = (s) => process.stdout.write(s + '\n');
const f1 = (x) => (x == null || !isFinite(x) ? 'n/a' : x.toFixed(1));
const f2 = (x) => (x == null || !isFinite(x) ? 'n/a' : x.toFixed(2));
const f3 = (x) => (x == null || !isFinite(x) ? 'n/a' : x.toFixed(3));
const children = new Set();

// ======== Processes ========

// Spawns a helper whose first stdout line is JSON; resolves {proc, info}.
// Its stdin stays open: closing it (or our exit) ends the helper.
function helper(cmd, args) {
  return new Promise((resolve, reject) => {
    const p = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'inherit'],
                                 env: { ...process.env, NODE_NO_WARNINGS: '1' } });
    children.add(p);
    p.on('exit', () => children.delete(p));
    let buf = '';
    p.stdout.on('data', (d) => {
      if (buf === null) return;   // Past the first line.
      buf += d;
      const nl = buf.indexOf('\n');
      if (nl >= 0) {
        const line = buf.slice(0, nl);
        buf = null;
        try { resolve({ proc: p, info: JSON.parse(line) }); }
        catch (e) { reject(e); }
      }
    });
    p.on('exit', (code) => reject(new Error(`${cmd} exited (${code})`)));
  });
}

function stop(p) {
  if (p && p.exitCode === null && p.signalCode === null) {
    try { p.stdin && p.stdin.end(); } catch (_) { /* gone */ }
    p.kill('SIGTERM');
  }
}

// Runs a program to its end; resolves its stdout parsed as JSON.
function runJson(cmd, args) {
  return new Promise((resolve, reject) => {
    const p = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'inherit'],
                                 env: { ...process.env, NODE_NO_WARNINGS: '1' } });
    children.add(p);
    let out = '';
    p.stdout.on('data', (d) => { out += d; });
    p.on('exit', (code) => {
      children.delete(p);
      if (code !== 0) return reject(new Error(`${cmd} exited ${code}`));
      try { resolve(JSON.parse(out.trim().split('\n').pop())); }
      catch (e) { reject(e); }
    });
  });
}

function procCpu(pid) {
  try {
    const s = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
    return (Number(f[11]) + Number(f[12])) / CLK_TCK;
  } catch (_) { return null; }
}

function procStatus(pid) {
  try {
    const s = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
    const kib = (k) => Number((new RegExp(`^${k}:\\s+(\\d+)`, 'm').exec(s) ||
                              [0, NaN])[1]);
    return { rss: kib('VmRSS'), hwm: kib('VmHWM'), threads: kib('Threads') };
  } catch (_) { return null; }
}

function getJson(url) {
  return new Promise((resolve, reject) => {
    http.get(url, (res) => {
      let b = '';
      res.on('data', (d) => { b += d; });
      res.on('end', () => { try { resolve(JSON.parse(b)); } catch (e) { reject(e); } });
    }).on('error', reject);
  });
}

function getText(url) {
  return new Promise((resolve, reject) => {
    http.get(url, (res) => {
      let b = '';
      res.on('data', (d) => { b += d; });
      res.on('end', () => resolve(b));
    }).on('error', reject);
  });
}

// ======== kcld ========

let appSeq = 0;

function kcldConfig(o) {
  const app = o.app || `bench-${process.pid}-${appSeq + 1}`;
  const name = `kcld-${++appSeq}`;
  const file = path.join(TMP, `${name}.yaml`);
  const lines = [
    `application: ${app}`, `stream: ${o.stream}`, 'region: us-east-1',
    'endpoints:', `  kinesis: ${o.kinesis}`, `  dynamodb: ${o.dynamodb}`,
    'credentials:', '  access_key_id: test', '  secret_access_key: test',
    `shutdown_timeout: 10s`,
    'lease:', `  failover_time: ${o.failover || '10s'}`,
    'fetch:', `  idle_time: ${o.idle || '1s'}`, '  max_records: 10000',
    'batch:', `  size: ${o.batch || 100}`, `  window: ${o.window || '0s'}`,
    'checkpoint:', `  interval: ${o.checkpoint || '0s'}`,
    'metrics:', `  listen: ${o.metrics === false ? '""' : '127.0.0.1:0'}`,
    'handler:',
    ...(o.out ? ['  type: stdout', `  path: ${o.out}`]
              : ['  type: plugin', `  path: ${PLUGIN}`]),
    'log:', '  level: info', '',
  ];
  fs.writeFileSync(file, lines.join('\n'));
  return { app, file, log: path.join(TMP, `${name}.log`) };
}

// Starts kcld; resolves {proc, cfg, metrics URL or null}.
async function startKcld(o) {
  const cfg = kcldConfig(o);
  const fd = fs.openSync(cfg.log, 'a');
  // BENCH_PERF=DIR records a perf profile of every kcld into DIR (the CPU
  // and RSS figures are then perf's, not kcld's).
  const perf = process.env.BENCH_PERF;
  const p = perf
    ? spawn('perf', ['record', '-g', '-q', '-o',
                     path.join(perf, `${path.basename(cfg.file)}.perf`), '--',
                     KCLD, '--config', cfg.file],
            { stdio: ['ignore', fd, fd] })
    : spawn(KCLD, ['--config', cfg.file], { stdio: ['ignore', fd, fd] });
  fs.closeSync(fd);
  children.add(p);
  p.on('exit', () => children.delete(p));
  let metrics = null;
  if (o.metrics !== false) {
    for (let i = 0; i < 200 && !metrics; i++) {
      await sleep(25);
      const m = /"metrics server listening","address":"([^"]+)"/.exec(
        fs.readFileSync(cfg.log, 'utf8'));
      if (m) metrics = `http://${m[1]}/metrics`;
      if (p.exitCode !== null) break;
    }
    if (!metrics) throw new Error(`kcld did not start; see ${cfg.log}`);
  }
  return { proc: p, cfg, metrics };
}

async function metric(k, name) {
  const text = await getText(k.metrics);
  let sum = 0;
  for (const line of text.split('\n')) {
    if (line.startsWith(name) && (line[name.length] === ' ' ||
                                  line[name.length] === '{'))
      sum += Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return sum;
}

function stopKcld(k, signal = 'SIGTERM') {
  return new Promise((resolve) => {
    if (k.proc.exitCode !== null || k.proc.signalCode !== null) return resolve();
    k.proc.once('exit', () => resolve());
    k.proc.kill(signal);
  });
}

// ======== 1. Throughput ========

async function throughputOne(ddb, shards) {
  const perShard = Math.floor(RECORDS / shards);
  const total = perShard * shards;
  const dump = path.join(TMP, `bodies-${shards}.bin`);
  const fx = await helper('node', [path.join(HERE, 'fixture.mjs'),
                                   '--shards', String(shards), '--records',
                                   String(perShard), '--dump', dump]);
  const url = fx.info.url;
  const res = { shards, records: total };
  try {
    res.fixture = await runJson('node', [path.join(HERE, 'drain.mjs'), url,
                                         String(shards), String(perShard)]);
    res.floor = await runJson(FLOOR, [dump]);
    fs.unlinkSync(dump);
    res.kcld = [];
    res.peer = [];
    for (let rep = 0; rep < 2; rep++) {
      res.kcld.push(await kcldThroughput(url, ddb, total));
      res.peer.push(await runJson('node', [path.join(HERE, 'peer.mjs'),
                                           'throughput', url, 'bench']));
    }
  } finally {
    stop(fx.proc);
  }
  return res;
}

async function kcldThroughput(url, ddb, total) {
  const k = await startKcld({ stream: 'bench', kinesis: url, dynamodb: ddb,
                              batch: 10000, checkpoint: '1s' });
  const stats0 = await getJson(`${url}/__stats`);
  const served0 = stats0.recordsServed;
  let cpu0 = null, t0 = null, t1 = null, cpu1 = null, handled = 0;
  const deadline = now() + 300000;
  while (now() < deadline && k.proc.exitCode === null) {
    if (cpu0 === null) {
      const st = await getJson(`${url}/__stats`);
      if (st.recordsServed > served0 || st.firstGet > stats0.firstGet) {
        cpu0 = procCpu(k.proc.pid);
        t0 = now();
      }
    }
    handled = await metric(k, 'kcld_records_handled_total');
    if (handled >= total) {
      t1 = now();
      cpu1 = procCpu(k.proc.pid);
      break;
    }
    await sleep(10);
  }
  const st = procStatus(k.proc.pid);
  await stopKcld(k);
  // plugin-count says what it counted at shutdown.
  const m = /\{"plugin":"count","records":(\d+),"bytes":(\d+)/.exec(
    fs.readFileSync(k.cfg.log, 'utf8'));
  const bytes = m ? Number(m[2]) : NaN;
  if (m && Number(m[1]) !== handled)
    log(`   note: plugin-count counted ${m[1]} records, the metric ${handled}`);
  if (t1 === null) throw new Error(`kcld handled ${handled}/${total}; see ${k.cfg.log}`);
  return { records: handled, bytes, seconds: (t1 - t0) / 1000,
           cpu: cpu1 - cpu0, rss_kib: st.hwm, threads: st.threads };
}

const best = (runs) => runs.reduce((a, b) => (b.seconds < a.seconds ? b : a));

async function throughput() {
  log('== 1. Throughput: fixture endpoint, 1 KiB records, 10000 per ' +
      `GetRecords, ${RECORDS} records per configuration ==`);
  const ddb = await helper('node', [path.join(HERE, 'emu.mjs')]);
  const results = [];
  try {
    for (const n of SHARDS) {
      const r = await throughputOne(ddb.info.dynamodb, n);
      results.push(r);
      const k = best(r.kcld), p = best(r.peer), fl = r.floor;
      const rate = (x) => x.records / x.seconds;
      const mb = (x) => x.bytes / x.seconds / 1e6;
      const cpm = (x) => x.cpu / (x.records / 1e6);
      r.summary = {
        fixture_rps: r.fixture.records / r.fixture.seconds,
        kcld_rps: rate(k), kcld_mbps: mb(k), kcld_cpu_per_m: cpm(k),
        kcld_hwm_mib: k.rss_kib / 1024,
        peer_rps: rate(p), peer_mbps: mb(p), peer_cpu_per_m: cpm(p),
        peer_hwm_mib: p.rss_kib / 1024,
        floor_rps: rate(fl), floor_mbps: mb(fl), floor_cpu_per_m: cpm(fl),
        kcld_over_peer: rate(k) / rate(p), kcld_over_floor: rate(k) / rate(fl),
        cpu_kcld_over_peer: cpm(k) / cpm(p),
        cpu_kcld_over_floor: cpm(k) / cpm(fl),
      };
      const s = r.summary;
      log(`-- ${n} shard(s), ${r.records} records (best of 2 runs each)`);
      log(`   fixture alone : ${f1(s.fixture_rps / 1000)} k rec/s ` +
          `(bodies fetched and discarded)`);
      log(`   kcld          : ${f1(s.kcld_rps / 1000)} k rec/s, ` +
          `${f1(s.kcld_mbps)} MB/s, ${f2(s.kcld_cpu_per_m)} CPU s/M rec, ` +
          `peak RSS ${f1(s.kcld_hwm_mib)} MiB ` +
          `(runs: ${r.kcld.map((x) => f2(x.seconds)).join(', ')} s)`);
      log(`   peer (SDK v3) : ${f1(s.peer_rps / 1000)} k rec/s, ` +
          `${f1(s.peer_mbps)} MB/s, ${f2(s.peer_cpu_per_m)} CPU s/M rec, ` +
          `peak RSS ${f1(s.peer_hwm_mib)} MiB ` +
          `(runs: ${r.peer.map((x) => f2(x.seconds)).join(', ')} s)`);
      log(`   floor         : ${f1(s.floor_rps / 1000)} k rec/s, ` +
          `${f1(s.floor_mbps)} MB/s, ${f2(s.floor_cpu_per_m)} CPU s/M rec ` +
          '(one thread)');
      log(`   ratios        : kcld/peer ${f2(s.kcld_over_peer)}x rec/s, ` +
          `kcld/floor ${f2(s.kcld_over_floor)}x rec/s; CPU per record ` +
          `kcld/peer ${f2(s.cpu_kcld_over_peer)}, kcld/floor ` +
          `${f2(s.cpu_kcld_over_floor)}`);
    }
  } finally {
    stop(ddb.proc);
  }
  return results;
}

// ======== Kinesis client for the emulator benchmarks ========

function kinesisClient(endpoint) {
  return new KinesisClient({
    endpoint, region: 'us-east-1', maxAttempts: 3,
    credentials: { accessKeyId: 'test', secretAccessKey: 'test' },
    requestHandler: new NodeHttpHandler({
      httpAgent: new http.Agent({ keepAlive: true }) }),
  });
}

async function createStream(client, name, shards) {
  await client.send(new CreateStreamCommand({ StreamName: name,
                                              ShardCount: shards }));
  for (let i = 0; i < 200; i++) {
    const r = await client.send(new DescribeStreamSummaryCommand(
      { StreamName: name }));
    if (r.StreamDescriptionSummary.StreamStatus === 'ACTIVE') return;
    await sleep(50);
  }
  throw new Error(`stream ${name} never became ACTIVE`);
}

// Follows a stdout-handler file: calls fn(event, seenAt) for each new line.
function follower(file, fn) {
  let off = 0, rest = '';
  return () => {
    let fd;
    try { fd = fs.openSync(file, 'r'); } catch (_) { return; }
    const t = now();
    const size = fs.fstatSync(fd).size;
    if (size > off) {
      const buf = Buffer.alloc(size - off);
      fs.readSync(fd, buf, 0, buf.length, off);
      off = size;
      const lines = (rest + buf.toString()).split('\n');
      rest = lines.pop();
      for (const l of lines) {
        try { fn(JSON.parse(l), t); } catch (_) { /* not a record line */ }
      }
    }
    fs.closeSync(fd);
  };
}

const pct = (a, p) => {
  if (!a.length) return null;
  const s = [...a].sort((x, y) => x - y);
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)];
};

// ======== 2. Latency ========

async function latency() {
  const RATE = 50, SECS = 20;
  log(`== 2. Latency: put -> handled on kinesalite, ${RATE} records/s for ` +
      `${SECS} s, 1 shard; kcld batch.window 0, fetch.idle_time 200ms; ` +
      'peer polling at 200 ms ==');
  const emu = await helper('node', [path.join(HERE, 'emu.mjs'), '--kinesis']);
  const client = kinesisClient(emu.info.kinesis);
  const out = path.join(TMP, 'latency.jsonl');
  let k;
  try {
    await createStream(client, 'lat', 1);
    k = await startKcld({ stream: 'lat', kinesis: emu.info.kinesis,
                          dynamodb: emu.info.dynamodb, idle: '200ms',
                          window: '0s', out });
    for (let i = 0; i < 400; i++) {
      if (await metric(k, 'kcld_get_records_calls_total') > 0) break;
      await sleep(25);
    }
    const peer = runJson('node', [path.join(HERE, 'peer.mjs'), 'latency',
                                  emu.info.kinesis, 'lat', String(SECS + 6),
                                  '200']);
    await sleep(3000);
    const lat = [];
    const follow = follower(out, (ev, t) => {
      try {
        const d = JSON.parse(Buffer.from(ev.kinesis.data, 'base64').toString());
        lat.push(t - d.t);
      } catch (_) { /* not ours */ }
    });
    const tick = setInterval(follow, 2);
    const end = now() + SECS * 1000;
    let n = 0;
    const puts = [];
    while (now() < end) {
      const due = end - SECS * 1000 + (n * 1000) / RATE;
      if (due > now()) await sleep(due - now());
      const payload = JSON.stringify({ t: now(), n });
      puts.push(client.send(new PutRecordCommand({
        StreamName: 'lat', PartitionKey: `pk-${n}`, Data: Buffer.from(payload) })));
      n++;
    }
    await Promise.all(puts);
    await sleep(2000);
    clearInterval(tick);
    follow();
    const p = await peer;
    const res = {
      put: n, rate: RATE, seconds: SECS,
      kcld: { handled: lat.length, p50: pct(lat, 50), p99: pct(lat, 99),
              max: pct(lat, 100) },
      peer: { handled: p.latencies.length, p50: pct(p.latencies, 50),
              p99: pct(p.latencies, 99), max: pct(p.latencies, 100) },
    };
    log(`   kcld : ${res.kcld.handled}/${n} handled, p50 ${f1(res.kcld.p50)} ms, ` +
        `p99 ${f1(res.kcld.p99)} ms, max ${f1(res.kcld.max)} ms ` +
        '(seen in its output file, polled every 2 ms)');
    log(`   peer : ${res.peer.handled}/${n} handled, p50 ${f1(res.peer.p50)} ms, ` +
        `p99 ${f1(res.peer.p99)} ms, max ${f1(res.peer.max)} ms`);
    log(`   ratio: kcld/peer p50 ${f2(res.kcld.p50 / res.peer.p50)}, ` +
        `p99 ${f2(res.kcld.p99 / res.peer.p99)}`);
    return res;
  } finally {
    if (k) await stopKcld(k);
    client.destroy();
    stop(emu.proc);
  }
}

// ======== 3. Scale ========

async function scale() {
  log(`== 3. Scale: one kcld holding N leases of idle shards (fixture, empty ` +
      `shards), lease.failover_time 10s, fetch.idle_time 1s; ${WINDOW} s ` +
      'steady-state window ==');
  const results = [];
  for (const n of LEASES) {
    const emu = await helper('node', [path.join(HERE, 'emu.mjs')]);
    const fx = await helper('node', [path.join(HERE, 'fixture.mjs'),
                                     '--shards', String(n), '--empty']);
    let k;
    try {
      k = await startKcld({ stream: 'bench', kinesis: fx.info.url,
                            dynamodb: emu.info.dynamodb });
      const t0 = now();
      let held = 0;
      while (now() - t0 < 120000) {
        held = await metric(k, 'kcld_leases_held');
        if (held >= n) break;
        await sleep(250);
      }
      const tHeld = (now() - t0) / 1000;
      await sleep(5000);   // Past the burst of taking and the first reads.
      const c0 = procCpu(k.proc.pid);
      const d0 = await getJson(emu.info.stats);
      const g0 = await metric(k, 'kcld_get_records_calls_total');
      const w0 = now();
      await sleep(WINDOW * 1000);
      const c1 = procCpu(k.proc.pid);
      const d1 = await getJson(emu.info.stats);
      const g1 = await metric(k, 'kcld_get_records_calls_total');
      const mins = (now() - w0) / 60000;
      const st = procStatus(k.proc.pid);
      const ops = {};
      let total = 0;
      for (const [op, c] of Object.entries(d1.dynamodb)) {
        const dlt = c - (d0.dynamodb[op] || 0);
        if (dlt) { ops[op] = dlt; total += dlt; }
      }
      const r = { leases: n, held, seconds_to_hold: tHeld,
                  rss_kib: st.rss, hwm_kib: st.hwm, threads: st.threads,
                  cpu_percent: ((c1 - c0) / (mins * 60)) * 100,
                  ddb_per_min: total / mins,
                  ddb_per_min_per_lease: total / mins / n,
                  ddb_ops: ops, get_records_per_s: (g1 - g0) / (mins * 60) };
      results.push(r);
      log(`   ${String(n).padStart(5)} leases: held ${held} after ` +
          `${f1(tHeld)} s; RSS ${f1(st.rss / 1024)} MiB (peak ` +
          `${f1(st.hwm / 1024)}), ${st.threads} threads; CPU ` +
          `${f2(r.cpu_percent)} %; DynamoDB ${f1(r.ddb_per_min)} req/min = ` +
          `${f2(r.ddb_per_min_per_lease)} per lease ` +
          `(${Object.entries(ops).map(([o, c]) => `${o} ${c}`).join(', ')}); ` +
          `GetRecords ${f1(r.get_records_per_s)}/s`);
    } finally {
      if (k) await stopKcld(k);
      stop(fx.proc);
      stop(emu.proc);
    }
  }
  if (results.length > 1) {
    const a = results[0], b = results[results.length - 1];
    const per = (b.rss_kib - a.rss_kib) / (b.leases - a.leases);
    log(`   memory per held shard: ${f1(per)} KiB ` +
        `((RSS at ${b.leases} - RSS at ${a.leases}) / ${b.leases - a.leases})`);
    results.push({ kib_per_lease: per });
  }
  return results;
}

// ======== 4. Failover ========

async function failoverOne(signal, failover) {
  const emu = await helper('node', [path.join(HERE, 'emu.mjs'), '--kinesis']);
  const client = kinesisClient(emu.info.kinesis);
  const ws = [];
  let producing = true;
  try {
    await createStream(client, 'fo', 2);
    const app = `fo-${signal}-${process.pid}-${++appSeq}`;
    const outs = [0, 1].map((i) => path.join(TMP, `${app}-w${i}.jsonl`));
    const seen = [[], []];   // per worker: {shard, t}
    const follows = outs.map((f, i) => follower(f, (ev, t) => {
      seen[i].push({ shard: ev.eventID.slice(0, ev.eventID.indexOf(':')), t });
    }));
    const tick = setInterval(() => follows.forEach((f) => f()), 2);
    // A steady producer: 40 records/s with random keys over both shards.
    let n = 0;
    const producer = (async () => {
      while (producing) {
        await client.send(new PutRecordCommand({
          StreamName: 'fo', PartitionKey: `k-${Math.random()}`,
          Data: Buffer.from(String(n++)) })).catch(() => {});
        await sleep(25);
      }
    })();
    for (let i = 0; i < 2; i++) {
      ws.push(await startKcld({ stream: 'fo', kinesis: emu.info.kinesis,
                                dynamodb: emu.info.dynamodb, failover,
                                idle: '200ms', out: outs[i], metrics: false,
                                app }));
      await sleep(500);
    }
    // Wait until ownership is settled: in the last 2 s each worker handled
    // records of at least one shard and no shard was handled by both (a
    // lease taken over re-handles records after its last checkpoint).
    const tw = now();
    const recent = (i, ms) => new Set(seen[i].filter((e) => e.t > now() - ms)
      .map((e) => e.shard));
    const settled = () => {
      const a = recent(0, 2000), b = recent(1, 2000);
      return a.size && b.size && ![...a].some((x) => b.has(x));
    };
    const fms = parseFloat(failover) * 1000;
    while (now() - tw < 6 * fms + 20000 && !settled()) await sleep(100);
    if (!settled())
      throw new Error('the two workers never settled on one shard each');
    const victim = 0, survivor = 1;
    const lost = recent(victim, 2000);
    const settle_s = (now() - tw) / 1000;
    const tk = now();
    const exited = stopKcld(ws[victim], signal);
    let tFirst = null, tExit = null;
    exited.then(() => { tExit = now(); });
    while (now() - tk < 10 * fms + 30000) {
      const hit = seen[survivor].find((e) => e.t >= tk && lost.has(e.shard));
      if (hit) { tFirst = hit.t; break; }
      await sleep(5);
    }
    await exited;
    clearInterval(tick);
    producing = false;
    await producer;
    return { signal, failover_time_s: fms / 1000, shards_moved: lost.size,
             settle_s,
             seconds: tFirst === null ? null : (tFirst - tk) / 1000,
             victim_exit_s: tExit === null ? null : (tExit - tk) / 1000 };
  } finally {
    producing = false;
    for (const w of ws) await stopKcld(w, 'SIGKILL');
    client.destroy();
    stop(emu.proc);
  }
}

async function failover() {
  const reps = Number(process.env.BENCH_FAILOVER_REPS || 3);
  log('== 4. Failover: kinesalite, 2 shards, 2 workers, a producer at ' +
      '40 records/s; time from the signal to the first record of the ' +
      `victim's shard handled by the survivor (${reps} runs with ` +
      'failover_time 2s, 1 with 10s) ==');
  const results = [];
  for (const ft of ['2s', '10s']) {
    for (const sig of ['SIGKILL', 'SIGTERM']) {
      const runs = [];
      for (let i = 0; i < (ft === '2s' ? reps : 1); i++)
        runs.push(await failoverOne(sig, ft));
      const secs = runs.map((r) => r.seconds).filter((x) => x !== null);
      const med = pct(secs, 50);
      const fts = runs[0].failover_time_s;
      results.push({ signal: sig, failover_time_s: fts, median_s: med,
                     runs });
      log(`   lease.failover_time ${ft.padStart(3)}, ${sig.padEnd(7)}: ` +
          `${med === null ? 'no record within the limit' : f2(med) + ' s'} ` +
          `(= ${f2(med / fts)} x failover_time; runs ` +
          `${runs.map((r) => (r.seconds === null ? 'none' : f2(r.seconds)))
            .join(', ')} s; victim exited after ` +
          `${runs.map((r) => f3(r.victim_exit_s)).join(', ')} s)`);
    }
  }
  return results;
}

// ======== Main ========

function machine() {
  const cpu = fs.readFileSync('/proc/cpuinfo', 'utf8');
  const model = (/^model name\s*:\s*(.*)$/m.exec(cpu) || [])[1] || 'unknown';
  const mem = fs.readFileSync('/proc/meminfo', 'utf8');
  const kib = Number(/^MemTotal:\s+(\d+)/m.exec(mem)[1]);
  let rev = '';
  try { rev = execFileSync('git', ['-C', ROOT, 'rev-parse', '--short', 'HEAD'])
    .toString().trim(); } catch (_) { /* not a checkout */ }
  return { nproc: os.cpus().length, cpu: model,
           memory_gib: +(kib / 1048576).toFixed(1), kernel: os.release(),
           node: process.version, load: os.loadavg().map((x) => +x.toFixed(2)),
           kcld_commit: rev, date: new Date().toISOString() };
}

const all = { throughput, latency, scale, failover };
const which = process.argv.slice(2).length ? process.argv.slice(2)
  : Object.keys(all);
const results = { machine: machine() };
log(`machine: ${results.machine.nproc} CPUs (${results.machine.cpu}), ` +
    `${results.machine.memory_gib} GiB, Linux ${results.machine.kernel}, ` +
    `node ${results.machine.node}, load ${results.machine.load.join(' ')}, ` +
    `kcld ${results.machine.kcld_commit}`);
let status = 0;
for (const w of which) {
  if (!all[w]) { log(`unknown benchmark ${w}`); status = 2; continue; }
  try { results[w] = await all[w](); }
  catch (e) { log(`   ${w}: could not run: ${e.message}`); status = 1; }
}
fs.mkdirSync(path.dirname(OUT), { recursive: true });
fs.writeFileSync(OUT, JSON.stringify(results, null, 2) + '\n');
log(`results: ${OUT}`);
for (const c of children) { try { c.kill('SIGKILL'); } catch (_) { /* gone */ } }
if (status === 0) fs.rmSync(TMP, { recursive: true, force: true });
else log(`logs kept in ${TMP}`);
process.exit(status);
