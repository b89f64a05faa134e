// run.mjs - kcld's benchmarks: throughput, latency, scale, failover, filter,
// fanout.
//
//   node run.mjs [throughput|latency|scale|failover|filter|fanout|all]...
//                                                         (default: all)
//
// Environment: KCLD_BIN (default build/kcld), KCLD_BENCH_BIN (the directory
// of launch, floor and floor-jansson; default build/bench), KCLD_PLUGIN
// (examples/plugin-count/plugin-count.so), BENCH_PYTHON (the boto3 peer's
// interpreter, default /usr/bin/python3), BENCH_RECORDS (records per
// throughput configuration, default 200000, raised to BENCH_MIN_PER_SHARD,
// default 50000, per shard), BENCH_REPS (runs of each
// consumer per throughput configuration, default 2), BENCH_SHARDS ("1 4
// 16"), BENCH_FILTER_SHARDS (the filter benchmark's shards, default 4),
// BENCH_LEASES ("1 1024 4096"), BENCH_WINDOW (scale steady-state window in
// seconds, default 30), BENCH_HOLD_LIMIT (seconds a scale run waits for
// all leases, default 180), BENCH_LATENCY_SECONDS (default 20),
// BENCH_FAILOVER_REPS (runs per failover line with failover_time 2s, default
// 3), BENCH_KCLD_SET (extra kcld configuration for every kcld, "key=value"
// pairs separated by spaces, e.g. "fetch.max_buffered_bytes=16MiB"),
// BENCH_LATENCY_SET (the same for the latency benchmark's kcld only),
// BENCH_LATENCY_FANOUT=0 (no fixture passes, polling and fan-out, in the
// latency benchmark),
// BENCH_FANOUT_SHARDS (the fan-out benchmark's shards, "4 16"; "none": only
// its idle RSS),
// BENCH_FANOUT_OVER (its throughput rows' transports, "h2c tls": over
// HTTPS, with a certificate made for the run, as against Kinesis),
// BENCH_FANOUT_IDLE (its idle shards for RSS, 256; "none" skips them), BENCH_FANOUT_PER_EVENT
// (records per fan-out event, 1000),
// BENCH_KINESIS_EFO=1 (latency and failover on the enhanced fan-out emulator,
// tests/emulators/lib/kinesis_efo.js, instead of kinesalite: with e.g.
// BENCH_LATENCY_SET="fetch.mode=fanout"), BENCH_OUT (results JSON, default
// build/bench/results.json), BENCH_PERF (a directory: profile kcld with perf
// record into it; BENCH_PERF_ARGS: perf record's sampling options, default
// "-g", e.g. "--call-graph dwarf,16384 -F 1000"), BENCH_KEEP=1 (keep the
// logs and configurations of a run that succeeded too), BENCH_PEERS (what runs beside kcld in the throughput
// benchmark, default "node boto3 floor"; "" measures kcld alone, e.g. while
// profiling: the ratios are then not printed).  Prints every figure, its ratios, and issue 11's targets
// with PASS/MISS; never fails on slowness (it exits non-zero only when a
// benchmark could not run at all).  Every process it starts ends with it
// (proc.mjs), even when it is killed.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import http from 'node:http';
import https from 'node:https';
import { KinesisClient, CreateStreamCommand, DescribeStreamSummaryCommand,
         PutRecordCommand } from '@aws-sdk/client-kinesis';
import { NodeHttpHandler } from '@smithy/node-http-handler';
import * as proc from './proc.mjs';
import { evaluate, lines as targetLines } from './targets.mjs';

const ROOT = path.resolve(new URL('../..', import.meta.url).pathname);
const HERE = path.join(ROOT, 'bench', 'node');
const env = process.env;
const KCLD = path.resolve(ROOT, env.KCLD_BIN || 'build/kcld');
const BIN = path.resolve(ROOT, env.KCLD_BENCH_BIN || 'build/bench');
const FLOOR = path.join(BIN, 'floor');
const JANSSON = path.join(BIN, 'floor-jansson');
const PLUGIN = path.resolve(ROOT, env.KCLD_PLUGIN ||
                            'examples/plugin-count/plugin-count.so');
const PYTHON = env.BENCH_PYTHON || '/usr/bin/python3';
const BOTO_PEER = path.join(ROOT, 'bench', 'python', 'peer.py');
const RECORDS = Number(env.BENCH_RECORDS || 200000);
const MIN_PER_SHARD = Number(env.BENCH_MIN_PER_SHARD || 50000);
const REPS = Number(env.BENCH_REPS || 2);
const SHARDS = (env.BENCH_SHARDS || '1 4 16').trim().split(/\s+/).map(Number);
const LEASES = (env.BENCH_LEASES || '1 1024 4096').trim().split(/\s+/)
  .map(Number);
const FILTER_SHARDS = Number(env.BENCH_FILTER_SHARDS || 4);
const WINDOW = Number(env.BENCH_WINDOW || 30);
const HOLD_LIMIT = Number(env.BENCH_HOLD_LIMIT || 180);
const LAT_SECS = Number(env.BENCH_LATENCY_SECONDS || 20);
const EFO = env.BENCH_KINESIS_EFO === '1';
const PEERS = new Set((env.BENCH_PEERS ?? 'node boto3 floor').trim()
                        .split(/\s+/).filter(Boolean));
const OUT = path.resolve(ROOT, env.BENCH_OUT || 'build/bench/results.json');
const TMP = fs.mkdtempSync(path.join(os.tmpdir(), 'kcld-bench-'));
let keepLogs = Boolean(env.BENCH_KEEP); // also once a kcld misbehaved

const now = () => performance.timeOrigin + performance.now();
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const log = (s) => process.stdout.write(s + '\n');
const fx = (d) => (x) => (x == null || !isFinite(x) ? 'n/a' : x.toFixed(d));
const f1 = fx(1), f2 = fx(2), f3 = fx(3);
const agent = new http.Agent({ keepAlive: true, maxSockets: 4 });

// "a.b=v c=w" -> [["a.b", "v"], ["c", "w"]].
function pairs(text) {
  return (text || '').trim().split(/\s+/).filter(Boolean).map((kv) => {
    const i = kv.indexOf('=');
    if (i <= 0) throw new Error(`bad key=value: ${kv}`);
    return [kv.slice(0, i), kv.slice(i + 1)];
  });
}
const KCLD_SET = pairs(env.BENCH_KCLD_SET);
const LATENCY_SET = pairs(env.BENCH_LATENCY_SET);

// ======== Processes ========

// Starts a helper whose first stdout line is JSON; resolves {proc, info}.
// It ends when its stdin closes (proc.stop) or when the driver ends.
function helper(cmd, args) {
  return new Promise((resolve, reject) => {
    const p = proc.start(cmd, args);
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

// Runs a program to its end; resolves the last line of its stdout as JSON.
function runJson(cmd, args) {
  return new Promise((resolve, reject) => {
    const p = proc.start(cmd, args);
    let out = '';
    p.stdout.on('data', (d) => { out += d; });
    p.on('exit', (code) => {
      if (code !== 0) return reject(new Error(`${path.basename(cmd)} ${args[0]} exited ${code}`));
      try { resolve(JSON.parse(out.trim().split('\n').pop())); }
      catch (e) { reject(e); }
    });
  });
}

let tlsAgent = null;
function request(url) {
  // The fixture over TLS (--tls) has the bench's own certificate.
  const tls = url.startsWith('https:');
  if (tls && !tlsAgent)
    tlsAgent = new https.Agent({ keepAlive: true, ca: fs.readFileSync(
      path.join(tlsDir(), 'cert.pem')) });
  return new Promise((resolve, reject) => {
    (tls ? https : http).get(url, { agent: tls ? tlsAgent : agent }, (res) => {
      let b = '';
      res.on('data', (d) => { b += d; });
      res.on('end', () => resolve(b));
    }).on('error', reject);
  });
}
const getJson = async (url) => JSON.parse(await request(url));

// ======== kcld ========

let appSeq = 0;

// The configuration as YAML: nested plain objects, scalars written as given.
function yaml(obj, indent = '') {
  return Object.entries(obj).flatMap(([k, v]) =>
    (v !== null && typeof v === 'object'
      ? [`${indent}${k}:`, ...yaml(v, indent + '  ')]
      : [`${indent}${k}: ${v}`]));
}

function setKey(obj, dotted, value) {
  const keys = dotted.split('.');
  let o = obj;
  for (const k of keys.slice(0, -1)) {
    if (typeof o[k] !== 'object' || o[k] === null) o[k] = {};
    o = o[k];
  }
  o[keys[keys.length - 1]] = value;
}

function kcldConfig(o) {
  const app = o.app || `bench-${process.pid}-${appSeq + 1}`;
  const name = `kcld-${++appSeq}`;
  const file = path.join(TMP, `${name}.yaml`);
  const c = {
    application: app, stream: o.stream, region: 'us-east-1',
    endpoints: { kinesis: o.kinesis, dynamodb: o.dynamodb },
    credentials: { access_key_id: 'test', secret_access_key: 'test' },
    shutdown_timeout: '10s',
    lease: { failover_time: o.failover || '10s' },
    fetch: { idle_time: o.idle || '1s', max_records: 10000 },
    batch: { size: o.batch || 100, window: o.window || '0s' },
    checkpoint: { interval: o.checkpoint || '0s' },
    metrics: { listen: o.metrics === false ? '""' : '127.0.0.1:0' },
    handler: o.out ? { type: 'stdout', path: o.out }
                   : { type: 'plugin', path: PLUGIN },
    log: { level: 'info' },
  };
  for (const [k, v] of [...KCLD_SET, ...(o.set || [])]) setKey(c, k, v);
  fs.writeFileSync(file, yaml(c).join('\n') + '\n');
  return { app, file, log: path.join(TMP, `${name}.log`) };
}

// Starts kcld; resolves {proc, cfg, metrics URL or null}.
async function startKcld(o) {
  const cfg = kcldConfig(o);
  const fd = fs.openSync(cfg.log, 'a');
  // BENCH_PERF=DIR records a perf profile of every kcld into DIR (the CPU
  // and RSS figures are then perf's, not kcld's).
  const perf = env.BENCH_PERF;
  const p = perf
    ? proc.start('perf', ['record',
                          ...(env.BENCH_PERF_ARGS || '-g').split(/\s+/),
                          '-q', '-o',
                          path.join(perf, `${path.basename(cfg.file)}.perf`),
                          '--', path.join(BIN, 'launch'), KCLD, '--config',
                          cfg.file], { stdout: fd, stderr: fd })
    : proc.start(KCLD, ['--config', cfg.file], { stdout: fd, stderr: fd });
  fs.closeSync(fd);
  let metrics = null;
  if (o.metrics !== false) {
    for (let i = 0; i < 400 && !metrics; i++) {
      await sleep(25);
      const m = /"metrics server listening"[^\n]*?"address":"([^"]+)"/.exec(
        fs.readFileSync(cfg.log, 'utf8'));
      if (m) metrics = `http://${m[1]}/metrics`;
      if (!proc.running(p)) break;
    }
    if (!metrics) {
      proc.signal(p, 'SIGKILL');
      throw new Error(`kcld did not start; see ${cfg.log}`);
    }
  }
  return { proc: p, cfg, metrics };
}

// Sums of the named metric families in one scrape.
async function scrape(k, names) {
  const text = await request(k.metrics);
  const out = Object.fromEntries(names.map((n) => [n, 0]));
  for (const line of text.split('\n')) {
    for (const name of names) {
      if (line.startsWith(name) && (line[name.length] === ' ' ||
                                    line[name.length] === '{'))
        out[name] += Number(line.slice(line.lastIndexOf(' ') + 1));
    }
  }
  return out;
}

async function metric(k, name) {
  return (await scrape(k, [name]))[name];
}

async function stopKcld(k, sig = 'SIGTERM') {
  if (!proc.running(k.proc)) return;
  const done = proc.exited(k.proc);
  k.proc.kill(sig);
  const t = setTimeout(() => proc.signal(k.proc, 'SIGKILL'), 30000);
  await done;
  clearTimeout(t);
}

// ======== 1. Throughput ========

const hasBoto3 = (() => {
  try {
    execFileSync(PYTHON, ['-c', 'import boto3'], { stdio: 'ignore' });
    return true;
  } catch (_) { return false; }
})();

// kcld from the first GetRecords until it has dealt with `total` records
// (handled, or dropped by `filter`: a YAML value, e.g. a flow list).
async function kcldThroughput(url, ddb, total, filter, set = []) {
  const k = await startKcld({ stream: 'bench', kinesis: url, dynamodb: ddb,
                              batch: 10000, checkpoint: '1s',
                              set: [...(filter ? [['filter', filter]] : []),
                                    ...set] });
  const stats0 = await getJson(`${url}/__stats`);
  let u0 = null, t0 = null, t1 = null, u1 = null, handled = 0, filtered = 0;
  const deadline = now() + 300000;
  while (now() < deadline && proc.running(k.proc)) {
    if (u0 === null) {
      const st = await getJson(`${url}/__stats`);
      if (st.recordsServed > stats0.recordsServed ||
          st.firstGet > stats0.firstGet) {
        u0 = proc.usage(k.proc.pid);
        t0 = now();
      }
    }
    if (u0 === null) {
      // Until the first fetch, ask the fixture every 2 ms and leave kcld
      // alone: a late start would leave kcld's first batches out of its
      // CPU figure, the more so the faster it runs.
      await sleep(2);
      continue;
    }
    const m = await scrape(k, ['kcld_records_handled_total',
                                'kcld_records_filtered_total']);
    handled = m.kcld_records_handled_total;
    filtered = m.kcld_records_filtered_total;
    if (handled + filtered >= total && u0 !== null) {
      t1 = now();
      u1 = proc.usage(k.proc.pid);
      break;
    }
    // Each scrape costs kcld a metrics render and /proc reads (the peers
    // are not watched at all): every 100 ms until the last 5%, then every
    // 10 ms so the end is timed closely.
    await sleep(handled + filtered < 0.95 * total ? 100 : 10);
  }
  await stopKcld(k);
  const klog = fs.readFileSync(k.cfg.log, 'utf8');
  if (klog.includes('"shutdown did not finish in time')) {
    log(`   note: kcld did not shut down within shutdown_timeout; see ` +
        `${k.cfg.log} (kept)`);
    keepLogs = true;
  }
  // plugin-count says what it counted at shutdown.
  const m = /\{"plugin":"count","records":(\d+),"bytes":(\d+)/.exec(klog);
  const bytes = m ? Number(m[2]) : NaN;
  if (m && Number(m[1]) !== handled)
    log(`   note: plugin-count counted ${m[1]} records, the metric ${handled}`);
  if (t1 === null)
    throw new Error(`kcld handled ${handled} and filtered ${filtered} of ` +
                    `${total}; see ${k.cfg.log}`);
  return { records: handled + filtered, handled, filtered, bytes,
           seconds: (t1 - t0) / 1000,
           cpu: u1.cpu - u0.cpu, faults: u1.faults - u0.faults,
           rss_kib: u1.hwm, threads: u1.threads };
}

// One figure per consumer from its runs: the best rate, the lowest CPU and
// faults per record, the highest peak RSS.
function summarize(runs) {
  runs = (runs || []).filter(Boolean);
  if (!runs.length) return null;
  const min = (f) => Math.min(...runs.map(f));
  const max = (f) => Math.max(...runs.map(f));
  return {
    rps: max((r) => r.records / r.seconds),
    mbps: max((r) => r.bytes / r.seconds / 1e6),
    cpu_per_m: min((r) => r.cpu / (r.records / 1e6)),
    faults_per_rec: min((r) => r.faults / r.records),
    hwm_mib: max((r) => r.rss_kib) / 1024,
    seconds: runs.map((r) => r.seconds),
  };
}

function consumerLine(label, s, note) {
  if (!s) return `   ${label.padEnd(24)}: ${note || 'not run'}`;
  return `   ${label.padEnd(24)}: ${f1(s.rps / 1000).padStart(6)} k rec/s ` +
    `${f1(s.mbps).padStart(6)} MB/s ${f2(s.cpu_per_m).padStart(6)} CPU s/M ` +
    `${f3(s.faults_per_rec).padStart(7)} faults/rec ` +
    `${f1(s.hwm_mib).padStart(6)} MiB peak RSS` +
    (s.seconds.length > 1 ? ` (runs ${s.seconds.map(f2).join(', ')} s)` : '') +
    (note ? ` ${note}` : '');
}

async function throughputOne(ddb, shards) {
  // At least five full answers per shard, so that what is measured is the
  // steady state (buffers reused) and not the first answer of each shard.
  const perShard = Math.max(Math.floor(RECORDS / shards), MIN_PER_SHARD);
  const total = perShard * shards;
  const dump = path.join(TMP, `bodies-${shards}.bin`);
  const fix = await helper('node', [path.join(HERE, 'fixture.mjs'),
                                    '--shards', String(shards), '--records',
                                    String(perShard), '--dump', dump]);
  const url = fix.info.url;
  const res = { shards, records: total, kcld: [], node: [], boto3: [],
                floor: [] };
  try {
    res.fixture = await runJson('node', [path.join(HERE, 'drain.mjs'), url,
                                         String(shards), String(perShard)]);
    if (PEERS.has('floor')) {
      res.jansson = await runJson(JANSSON, [dump]);
      res.floor_mem = await runJson(FLOOR, ['mem', dump]);
      res.floor_recv = await runJson(FLOOR, ['http', url, String(shards),
                                             'recv']);
    }
    fs.unlinkSync(dump);
    for (let rep = 0; rep < REPS; rep++) {
      if (PEERS.has('floor'))
        res.floor.push(await runJson(FLOOR, ['http', url, String(shards)]));
      res.kcld.push(await kcldThroughput(url, ddb, total));
      if (PEERS.has('node'))
        res.node.push(await runJson('node', [path.join(HERE, 'peer.mjs'),
                                             'throughput', url, 'bench']));
      if (hasBoto3 && PEERS.has('boto3'))
        res.boto3.push(await runJson(PYTHON, [BOTO_PEER, 'throughput', url,
                                              'bench']));
    }
  } finally {
    proc.stop(fix.proc);
  }
  for (const [name, runs] of Object.entries({ kcld: res.kcld, node: res.node,
                                              boto3: res.boto3,
                                              floor: res.floor })) {
    for (const r of runs) {
      if (r.records !== total)
        log(`   note: ${name} handled ${r.records} records of ${total}`);
    }
  }
  return res;
}

async function throughput() {
  log('== 1. Throughput: fixture endpoint, 1 KiB records, 10000 per ' +
      `GetRecords, ${RECORDS} records per configuration; CPU s/M = CPU ` +
      'seconds per million records; faults = minor + major page faults ==');
  if (!hasBoto3)
    log(`   note: no boto3 for ${PYTHON} (make bench installs python3-boto3); ` +
        'the boto3 peer is left out');
  const ddb = await helper('node', [path.join(HERE, 'emu.mjs')]);
  const results = [];
  try {
    for (const n of SHARDS) {
      const r = await throughputOne(ddb.info.dynamodb, n);
      results.push(r);
      const s = r.summary = {
        fixture_rps: r.fixture.records / r.fixture.seconds,
        kcld: summarize(r.kcld), node: summarize(r.node),
        boto3: summarize(r.boto3), floor: summarize(r.floor),
        floor_mem: summarize([r.floor_mem]),
        floor_recv: summarize([r.floor_recv &&
                               { ...r.floor_recv, records: r.records,
                                 bytes: r.floor_recv.body_bytes }]),
        jansson: summarize([r.jansson]),
      };
      const cpu = (x) => (x ? x.cpu_per_m : null);
      const over = (a, b) => (a != null && b ? a / b : null);
      s.cpu_kcld_over_floor = over(cpu(s.kcld), cpu(s.floor));
      s.cpu_kcld_over_node = over(cpu(s.kcld), cpu(s.node));
      s.cpu_kcld_over_boto3 = over(cpu(s.kcld), cpu(s.boto3));
      s.rps_kcld_over_node = over(s.kcld.rps, s.node && s.node.rps);
      s.rps_kcld_over_boto3 = over(s.kcld.rps, s.boto3 && s.boto3.rps);
      log(`-- ${n} shard(s), ${r.records} records (best of ${REPS} runs ` +
          'for kcld, the peers and the C floor)');
      log(`   fixture alone           : ${f1(s.fixture_rps / 1000).padStart(6)} ` +
          'k rec/s (drain.mjs: bodies fetched and discarded)');
      log(consumerLine('kcld', s.kcld));
      log(consumerLine('Node SDK v3 peer', s.node));
      log(consumerLine('boto3 peer', s.boto3, hasBoto3 ? '' : 'not installed'));
      log(consumerLine('C floor', s.floor,
                       '(receive over loopback keep-alive + scan + decode)'));
      log(consumerLine('C scan + decode only', s.floor_mem, '(in memory)'));
      log(consumerLine('C receive only', s.floor_recv,
                       '(MB/s of body bytes)'));
      log(consumerLine('jansson tree + base64', s.jansson,
                       '(in memory; the old "floor", not a floor)'));
      log(`   ratios                  : CPU per record kcld/C floor ` +
          `${f2(s.cpu_kcld_over_floor)}x, kcld/boto3 ` +
          `${f3(s.cpu_kcld_over_boto3)}x, kcld/Node ${f3(s.cpu_kcld_over_node)}x; ` +
          `rec/s kcld/Node ${f2(s.rps_kcld_over_node)}x, kcld/boto3 ` +
          `${f2(s.rps_kcld_over_boto3)}x`);
    }
  } finally {
    proc.stop(ddb.proc);
  }
  return results;
}

// ======== 5. Filter ========

// Each configuration's `filter` (YAML flow text; null = none) and which of
// the fixture's --json records (by index in the shard) it keeps.
const FILTERS = [
  ['no filter', null, () => true],
  ['data, keeps all (parse)', `['{"data": {"type": [{"exists": true}]}}']`,
   () => true],
  ['data, keeps 1/16', `['{"data": {"type": ["buy"]}}']`, (i) => i % 16 === 0],
  ['partitionKey, keeps 1/256', `['{"partitionKey": ["pk-0"]}']`,
   (i) => i % 256 === 0],
];

async function filterBench() {
  const shards = FILTER_SHARDS, perShard = Math.floor(RECORDS / shards);
  const total = perShard * shards;
  log(`== 5. Filter: fixture endpoint, 1 KiB JSON records, ${shards} ` +
      `shard(s), ${total} records, plugin-count handler, best of ${REPS}; ` +
      'rec/s counts records dealt with (handled + filtered), MB/s the ' +
      'payload given to the handler ==');
  const ddb = await helper('node', [path.join(HERE, 'emu.mjs')]);
  const fix = await helper('node', [path.join(HERE, 'fixture.mjs'),
                                    '--shards', String(shards), '--records',
                                    String(perShard), '--json']);
  const rows = [];
  try {
    for (const [label, filter, keeps] of FILTERS) {
      const runs = [];
      for (let rep = 0; rep < REPS; rep++)
        runs.push(await kcldThroughput(fix.info.url, ddb.info.dynamodb, total,
                                       filter));
      let want = 0;
      for (let i = 0; i < perShard; i++) want += keeps(i) ? shards : 0;
      for (const r of runs) {
        if (r.handled !== want || r.handled + r.filtered !== total)
          log(`   note: ${label}: handled ${r.handled} (want ${want}), ` +
              `filtered ${r.filtered}`);
      }
      rows.push({ label, filter, handled: runs[0].handled,
                  filtered: runs[0].filtered, runs,
                  summary: summarize(runs) });
    }
  } finally {
    proc.stop(fix.proc);
    proc.stop(ddb.proc);
  }
  const base = rows[0].summary;
  for (const r of rows) {
    const s = r.summary;
    r.rps_over_unfiltered = s.rps / base.rps;
    r.cpu_over_unfiltered = s.cpu_per_m / base.cpu_per_m;
    r.filtered_per_s = r.filtered ? s.rps * (r.filtered / total) : 0;
    log(consumerLine(r.label, s) +
        (r === rows[0] ? '' : `; x${f2(r.rps_over_unfiltered)} rec/s, ` +
         `x${f2(r.cpu_over_unfiltered)} CPU/record vs no filter; ` +
         `${f1(r.filtered_per_s / 1000)} k filtered/s`));
  }
  return { shards, records: total, rows };
}

// ======== 6. Fan-out ========

const FANOUT_SPEC = (env.BENCH_FANOUT_SHARDS || '4 16').trim();
const FANOUT_SHARDS = FANOUT_SPEC === 'none' ? []
  : FANOUT_SPEC.split(/\s+/).map(Number);
// Idle shards for the RSS rows; "none" (or 0) skips them.
const FANOUT_IDLE = (() => {
  const spec = (env.BENCH_FANOUT_IDLE || '256').trim();
  const n = spec === 'none' ? 0 : Number(spec);
  if (!Number.isInteger(n) || n < 0)
    throw new Error(`BENCH_FANOUT_IDLE: "${spec}" is not a number of ` +
                    'shards or "none"');
  return n;
})();
// Records per fan-out event (polling keeps 10000 per answer, its best):
// with 10000 (~14 MB events, over fetch.max_buffered_bytes) some shards
// hung after a pause before efohang's http.c fix (see docs/benchmarks.md).
const FANOUT_PER_EVENT = Number(env.BENCH_FANOUT_PER_EVENT || 1000);
// Transports of its throughput rows: h2c (local emulators; libcurl 7.88
// gives each subscription a connection of its own there) and TLS (Kinesis:
// subscriptions share connections, as curl multiplexes them).
const FANOUT_OVER = (env.BENCH_FANOUT_OVER || 'h2c tls').trim().split(/\s+/);
const FANOUT = [['fetch.mode', 'fanout']];

// A self-signed certificate for 127.0.0.1 in TMP/tls (cert.pem, key.pem),
// made once: the fixture's HTTPS (--tls), kcld's http.ca_file.
let tlsMade = null;
function tlsDir() {
  if (tlsMade) return tlsMade;
  const dir = path.join(TMP, 'tls');
  fs.mkdirSync(dir, { recursive: true });
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt',
                           'ec_paramgen_curve:prime256v1', '-nodes',
                           '-keyout', path.join(dir, 'key.pem'),
                           '-out', path.join(dir, 'cert.pem'), '-days', '1',
                           '-subj', '/CN=127.0.0.1', '-addext',
                           'subjectAltName=IP:127.0.0.1'],
               { stdio: 'ignore' });
  tlsMade = dir;
  return dir;
}

const caSet = () => [['http.ca_file', path.join(tlsDir(), 'cert.pem')]];

// kcld's RSS holding n idle shards of the fixture (--empty; --efo and
// fetch.mode: fanout when `efo`; over HTTPS when `tls`), 10 s after all are
// held and read.
async function idleRss(ddb, n, efo, tls = false) {
  const fix = await helper('node', [path.join(HERE, 'fixture.mjs'),
                                    '--shards', String(n), '--empty',
                                    ...(efo ? ['--efo'] : []),
                                    ...(tls ? ['--tls', tlsDir()] : [])]);
  let k;
  try {
    const t0 = now();
    const set = [...(efo ? FANOUT : []), ...(tls ? caSet() : [])];
    k = await startKcld({ stream: 'bench', kinesis: fix.info.url,
                          dynamodb: ddb, set });
    const h = await awaitHeld(fix.info.url, n, k, t0);
    if (h.held_at === null) throw new Error(`${n} leases never held`);
    await sleep(10000);
    const u = proc.usage(k.proc.pid);
    // Its connections to the fixture: over TLS each costs OpenSSL's state,
    // and polling's count follows how many GetRecords calls overlapped.
    return { rss_kib: u.rss, hwm_kib: u.hwm, threads: u.threads,
             connections: proc.established(proc.portOf(fix.info.url)),
             seconds_to_hold: (h.held_at - t0) / 1000 };
  } finally {
    if (k) await stopKcld(k);
    proc.stop(fix.proc);
  }
}

// Issue 13's throughput and memory targets: kcld polling and kcld in
// fan-out mode on the same fixture records (1 KiB, 10000 per answer or
// event), best of BENCH_REPS each; then RSS with FANOUT_IDLE idle shards.
async function fanoutBench() {
  log(`== 6. Fan-out: fixture endpoint (--efo: SubscribeToShard over h2c, ` +
      `and over TLS with --tls), ` +
      `1 KiB records, 10000 per GetRecords answer, ${FANOUT_PER_EVENT} per ` +
      `event, ${RECORDS} ` +
      `records per configuration, best of ${REPS}; records per CPU second = ` +
      `1e6 / CPU s/M; load ${os.loadavg()[0].toFixed(2)} ==`);
  const ddb = await helper('node', [path.join(HERE, 'emu.mjs')]);
  const res = { throughput: [], idle: null, idle_tls: null };
  try {
    for (const over of FANOUT_OVER) for (const shards of FANOUT_SHARDS) {
      const tls = over === 'tls';
      const perShard = Math.floor(RECORDS / shards), total = perShard * shards;
      const row = { shards, over, records: total };
      for (const [name, efo] of [['polling', false], ['fanout', true]]) {
        const fix = await helper('node', [path.join(HERE, 'fixture.mjs'),
                                          '--shards', String(shards),
                                          '--records', String(perShard),
                                          ...(efo ? ['--efo', '--per-call',
                                                     String(FANOUT_PER_EVENT)]
                                                  : []),
                                          ...(tls ? ['--tls', tlsDir()]
                                                  : [])]);
        const runs = [];
        try {
          for (let rep = 0; rep < REPS; rep++)
            runs.push(await kcldThroughput(fix.info.url, ddb.info.dynamodb,
                                           total, null,
                                           [...(efo ? FANOUT : []),
                                            ...(tls ? caSet() : [])]));
        } finally {
          proc.stop(fix.proc);
        }
        row[name] = summarize(runs);
      }
      row.load = os.loadavg()[0];
      row.rps_ratio = row.fanout.rps / row.polling.rps;
      row.per_cpu_ratio = row.polling.cpu_per_m / row.fanout.cpu_per_m;
      res.throughput.push(row);
      log(`-- ${shards} shard(s) over ${tls ? 'TLS' : 'h2c'}, ${total} records, ` +
          `load ${f2(row.load)}`);
      log(consumerLine('kcld polling', row.polling));
      log(consumerLine('kcld fanout', row.fanout));
      log(`   ratios                  : fan-out/polling records per CPU ` +
          `second ${f2(row.per_cpu_ratio)}x, rec/s ${f2(row.rps_ratio)}x`);
    }
    for (const [key, tls] of FANOUT_IDLE ? [['idle', false], ['idle_tls', true]]
                                         : []) {
      const poll = await idleRss(ddb.info.dynamodb, FANOUT_IDLE, false, tls);
      const fo = await idleRss(ddb.info.dynamodb, FANOUT_IDLE, true, tls);
      const r = res[key] = { shards: FANOUT_IDLE, polling: poll, fanout: fo,
                             load: os.loadavg()[0],
                             rss_ratio: fo.rss_kib / poll.rss_kib };
      log(`-- ${FANOUT_IDLE} idle shards held ${tls ? 'over TLS' : 'over h2c'} ` +
          `(10 s after all held), load ` +
          `${f2(r.load)}: RSS polling ${f1(poll.rss_kib / 1024)} MiB ` +
          `(${poll.threads} threads, ${poll.connections} connections), ` +
          `fan-out ${f1(fo.rss_kib / 1024)} MiB (${fo.threads} threads, ` +
          `${fo.connections} connections): ${f2(r.rss_ratio)}x`);
    }
  } finally {
    proc.stop(ddb.proc);
  }
  return res;
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

const emuKinesis = (efo = EFO) => helper('node', [
  path.join(HERE, 'emu.mjs'), efo ? '--kinesis-efo' : '--kinesis']);

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
const latStats = (a) => ({ handled: a.length, p50: pct(a, 50),
                           p99: pct(a, 99), max: pct(a, 100) });

// ======== 2. Latency ========

// One latency pass of kcld with `set`, the peers polling beside it.  On
// kinesalite or the fan-out emulator (`efo`) the driver puts RATE records
// a second; on the fixture (`fixture`: fixture.mjs --live, with --efo for
// fetch.mode: fanout) the fixture makes them itself, so the figure is
// kcld's own path from a record existing to it handled.
async function latencyPass({ efo = false, fixture = false, set = [] }) {
  const RATE = 50, SECS = LAT_SECS;
  const all = [...KCLD_SET, ...set];
  const where = fixture ? 'the fixture (records made by it)'
    : efo ? 'the fan-out emulator' : 'kinesalite';
  log(`== 2. Latency: put -> handled on ${where}, ` +
      `${RATE} records/s for ${SECS} s, 1 shard; kcld batch.window 0, ` +
      'fetch.idle_time 200ms' +
      (all.length ? `, ${all.map(([k, v]) => `${k}: ${v}`).join(', ')}` : '') +
      `; the peers polling at 200 ms; load ${os.loadavg()[0].toFixed(2)} ==`);
  const emu = fixture ? await helper('node', [path.join(HERE, 'emu.mjs')])
    : await emuKinesis(efo);
  const fix = fixture ? await helper('node', [
    path.join(HERE, 'fixture.mjs'), '--shards', '1', '--live', String(RATE),
    ...(efo ? ['--efo'] : [])]) : null;
  const url = fix ? fix.info.url : emu.info.kinesis;
  const stream = fix ? 'bench' : 'lat';
  const client = fix ? null : kinesisClient(url);
  const out = path.join(TMP, `latency-${appSeq + 1}.jsonl`);
  let k;
  try {
    if (client) await createStream(client, stream, 1);
    k = await startKcld({ stream, kinesis: url, dynamodb: emu.info.dynamodb,
                          idle: '200ms', window: '0s', out, set });
    for (let i = 0; i < 400; i++) {
      if (await metric(k, 'kcld_get_records_calls_total') > 0 ||
          await metric(k, 'kcld_leases_held') > 0) break;
      await sleep(25);
    }
    const peerArgs = [url, stream, String(SECS + 6), '200'];
    const nodePeer = runJson('node', [path.join(HERE, 'peer.mjs'), 'latency',
                                      ...peerArgs]);
    const botoPeer = hasBoto3
      ? runJson(PYTHON, [BOTO_PEER, 'latency', ...peerArgs]) : null;
    await sleep(3000);
    const lat = [];
    const follow = follower(out, (ev, t) => {
      try {
        const d = JSON.parse(Buffer.from(ev.kinesis.data, 'base64').toString());
        lat.push(t - d.t);
      } catch (_) { /* not ours */ }
    });
    const tick = setInterval(follow, 2);
    let n = 0;
    if (fix) {
      await request(`${url}/__live/start`);
      await sleep(SECS * 1000);
      n = JSON.parse(await request(`${url}/__live/stop`)).made[0];
    } else {
      const end = now() + SECS * 1000;
      const puts = [];
      while (now() < end) {
        const due = end - SECS * 1000 + (n * 1000) / RATE;
        if (due > now()) await sleep(due - now());
        const payload = JSON.stringify({ t: now(), n });
        puts.push(client.send(new PutRecordCommand({
          StreamName: stream, PartitionKey: `pk-${n}`,
          Data: Buffer.from(payload) })));
        n++;
      }
      await Promise.all(puts);
    }
    await sleep(2000);
    clearInterval(tick);
    follow();
    const np = await nodePeer;
    const bp = botoPeer ? await botoPeer : null;
    const res = { put: n, rate: RATE, seconds: SECS, efo, fixture,
                  kcld_set: all, load: os.loadavg()[0],
                  kcld: latStats(lat), node: latStats(np.latencies),
                  boto3: bp ? latStats(bp.latencies) : null };
    const show = (label, x, how) => log(
      `   ${label.padEnd(6)}: ${x.handled}/${n} handled, p50 ${f1(x.p50)} ms, ` +
      `p99 ${f1(x.p99)} ms, max ${f1(x.max)} ms${how ? ' ' + how : ''}`);
    show('kcld', res.kcld, '(seen in its output file, polled every 2 ms)');
    show('Node', res.node);
    if (res.boto3) show('boto3', res.boto3);
    log(`   ratio : kcld/Node p50 ${f2(res.kcld.p50 / res.node.p50)}, p99 ` +
        `${f2(res.kcld.p99 / res.node.p99)}` +
        (res.boto3 ? `; kcld/boto3 p50 ${f2(res.kcld.p50 / res.boto3.p50)}, ` +
                     `p99 ${f2(res.kcld.p99 / res.boto3.p99)}` : ''));
    return res;
  } finally {
    if (k) await stopKcld(k);
    if (client) client.destroy();
    if (fix) proc.stop(fix.proc);
    proc.stop(emu.proc);
  }
}

// Polling on kinesalite (or on the fan-out emulator with
// BENCH_KINESIS_EFO=1): the result's top level (issue 11's ratios).  Then,
// unless BENCH_LATENCY_FANOUT=0, kcld on the fixture polling and with
// fetch.mode: fanout (issue 13's target: p50 <= 50 ms, p99 <= 100 ms):
// `fixture` and `fanout`.
async function latency() {
  const res = await latencyPass({ efo: EFO, set: LATENCY_SET });
  if (env.BENCH_LATENCY_FANOUT !== '0') {
    res.fixture = await latencyPass({ fixture: true, set: LATENCY_SET });
    res.fanout = await latencyPass({ fixture: true, efo: true,
                                     set: [...LATENCY_SET,
                                           ['fetch.mode', 'fanout']] });
    log(`   on the fixture, fan-out vs polling: kcld p50 ` +
        `${f1(res.fanout.kcld.p50)} vs ${f1(res.fixture.kcld.p50)} ms, p99 ` +
        `${f1(res.fanout.kcld.p99)} vs ${f1(res.fixture.kcld.p99)} ms (Node ` +
        `peer polling: p50 ${f1(res.fanout.node.p50)}, p99 ` +
        `${f1(res.fanout.node.p99)} ms)`);
  }
  return res;
}

// ======== 3. Scale ========

// Waits until kcld holds all n leases (kcld_leases_held, polled every
// 250 ms once the fixture has seen an iterator asked for every shard), or
// until HOLD_LIMIT s after t0.  Resolves {held_at (epoch ms or null),
// max_held, stats: the fixture's last stats}.
async function awaitHeld(url, n, k, t0) {
  const limit = t0 + HOLD_LIMIT * 1000;
  let st, held = 0, maxHeld = 0;
  do {
    await sleep(100);
    st = await getJson(`${url}/__stats`);
  } while (st.shardsStarted < n && now() < limit && proc.running(k.proc));
  for (;;) {
    held = await metric(k, 'kcld_leases_held');
    maxHeld = Math.max(maxHeld, held);
    if (held >= n) return { held_at: now(), max_held: maxHeld, stats: st };
    if (now() >= limit || !proc.running(k.proc))
      return { held_at: null, max_held: maxHeld, stats: st };
    await sleep(250);
  }
}

// The lease figures of kcld's metrics at one moment.
async function leaseMetrics(k) {
  return { held: await metric(k, 'kcld_leases_held'),
           taken: await metric(k, 'kcld_leases_taken_total'),
           lost: await metric(k, 'kcld_leases_lost_total') };
}

async function scaleOne(n) {
  const emu = await helper('node', [path.join(HERE, 'emu.mjs')]);
  const fix = await helper('node', [path.join(HERE, 'fixture.mjs'),
                                    '--shards', String(n), '--empty']);
  const ports = [proc.portOf(fix.info.url), proc.portOf(emu.info.dynamodb)];
  let k;
  try {
    const t0 = now();
    k = await startKcld({ stream: 'bench', kinesis: fix.info.url,
                          dynamodb: emu.info.dynamodb });
    const h = await awaitHeld(fix.info.url, n, k, t0);
    const st = h.stats;
    await sleep(5000);   // Past the burst of taking and the first reads.
    const l0 = await leaseMetrics(k);
    const u0 = proc.usage(k.proc.pid);
    const fx0 = await getJson(`${fix.info.url}/__stats`);
    const d0 = await getJson(emu.info.stats);
    const tw0 = proc.timeWait(ports);
    const w0 = now();
    await sleep(WINDOW * 1000);
    const u1 = proc.usage(k.proc.pid);
    const fx1 = await getJson(`${fix.info.url}/__stats`);
    const d1 = await getJson(emu.info.stats);
    const tw1 = proc.timeWait(ports);
    const secs = (now() - w0) / 1000;
    const l1 = await leaseMetrics(k);
    const fresh = [...tw1].filter((x) => !tw0.has(x));
    const onPort = (p) => fresh.filter((x) => x.split(' ').some(
      (a) => parseInt(a.slice(a.lastIndexOf(':') + 1), 16) === p)).length;
    const ops = {};
    let total = 0;
    for (const [op, c] of Object.entries(d1.dynamodb)) {
      const dlt = c - (d0.dynamodb[op] || 0);
      if (dlt) { ops[op] = dlt; total += dlt; }
    }
    const gets = (fx1.requests.GetRecords || 0) - (fx0.requests.GetRecords || 0);
    return {
      leases: n, max_held: h.max_held,
      seconds_to_hold: h.held_at === null ? null : (h.held_at - t0) / 1000,
      seconds_to_read_all: st.allStartedAt ? (st.allStartedAt - t0) / 1000 : null,
      shards_started: st.shardsStarted,
      window_s: secs, held_start: l0.held, held_end: l1.held,
      taken_in_window: l1.taken - l0.taken, lost_in_window: l1.lost - l0.lost, rss_kib: u1.rss, hwm_kib: u1.hwm, threads: u1.threads,
      cpu_percent: ((u1.cpu - u0.cpu) / secs) * 100,
      faults_per_s: (u1.faults - u0.faults) / secs,
      get_records_per_s: gets / secs,
      ddb_per_min: total / (secs / 60), ddb_per_min_per_lease: total / (secs / 60) / n,
      ddb_ops: ops,
      connections: { fixture: fx1.connections - fx0.connections,
                     dynamodb: d1.connections.dynamodb - d0.connections.dynamodb },
      time_wait: { start: tw0.size, end: tw1.size, new: fresh.length,
                   new_fixture: onPort(ports[0]), new_dynamodb: onPort(ports[1]) },
    };
  } finally {
    if (k) await stopKcld(k);
    proc.stop(fix.proc);
    proc.stop(emu.proc);
  }
}

async function scale() {
  log('== 3. Scale: one kcld holding N leases of idle shards (fixture, empty ' +
      'shards; dynalite), lease.failover_time 10s, fetch.idle_time 1s; time ' +
      'from kcld\'s start until kcld_leases_held = N (polled every 250 ms) ' +
      'and until every shard was read; then 5 s, then a ' +
      `${WINDOW} s steady-state window ==`);
  const results = [];
  for (const n of LEASES) {
    const r = await scaleOne(n);
    results.push(r);
    log(`   ${String(n).padStart(5)} leases: ` + (r.seconds_to_hold === null
      ? `never all held within ${HOLD_LIMIT} s (at most ${r.max_held})`
      : `all held after ${f2(r.seconds_to_hold)} s`) + ', ' +
        (r.seconds_to_read_all === null
          ? `${r.shards_started} shards read within ${HOLD_LIMIT} s`
          : `all shards read after ${f2(r.seconds_to_read_all)} s`) +
        `; in the window: held ${r.held_start} -> ${r.held_end}, ` +
        `${r.taken_in_window} taken, ${r.lost_in_window} lost`);
    log(`          GetRecords ${f1(r.get_records_per_s)}/s (${f3(r.get_records_per_s / n)} x N); ` +
        `CPU ${f2(r.cpu_percent)} % of a core; RSS ${f1(r.rss_kib / 1024)} MiB ` +
        `(peak ${f1(r.hwm_kib / 1024)}), ${r.threads} threads, ` +
        `${f1(r.faults_per_s)} faults/s`);
    log(`          new connections ${r.connections.fixture} to Kinesis, ` +
        `${r.connections.dynamodb} to DynamoDB; TIME_WAIT ${r.time_wait.start} -> ` +
        `${r.time_wait.end}, ${r.time_wait.new} new (Kinesis ` +
        `${r.time_wait.new_fixture}, DynamoDB ${r.time_wait.new_dynamodb}); ` +
        `DynamoDB ${f1(r.ddb_per_min)} req/min = ${f2(r.ddb_per_min_per_lease)} ` +
        `per lease (${Object.entries(r.ddb_ops).map(([o, c]) => `${o} ${c}`).join(', ')})`);
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
  const emu = await emuKinesis();
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
    proc.stop(emu.proc);
  }
}

async function failover() {
  const reps = Number(env.BENCH_FAILOVER_REPS || 3);
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

proc.setLauncher(path.join(BIN, 'launch'));
proc.killAllOnExit(log);
const all = { throughput, latency, scale, failover, filter: filterBench,
              fanout: fanoutBench };
let which = process.argv.slice(2).flatMap((a) => a.split(/\s+/)).filter(Boolean);
if (!which.length || which.includes('all')) which = Object.keys(all);
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
results.load_after = os.loadavg().map((x) => +x.toFixed(2));
results.targets = evaluate(results);
log(`== Targets (issue 11), load average at the end ${results.load_after.join(' ')} ==`);
for (const l of targetLines(results.targets)) log(l);
const count = (v) => results.targets.filter((t) => t.verdict === v).length;
log(`   ${count('PASS')} PASS, ${count('MISS')} MISS, ${count('n/a')} not measured`);
fs.mkdirSync(path.dirname(OUT), { recursive: true });
fs.writeFileSync(OUT, JSON.stringify(results, null, 2) + '\n');
log(`results: ${OUT}`);
agent.destroy();
proc.killAll();
if (status === 0 && !keepLogs) fs.rmSync(TMP, { recursive: true, force: true });
else log(`logs kept in ${TMP}`);
process.exit(status);
