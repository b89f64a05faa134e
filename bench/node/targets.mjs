// targets.mjs - issue 11's targets, judged on one run's results.
//
// evaluate(results) returns one row per target: {id, what, value (the
// measured ratio or figure), limit, op ('<=' or '>='), unit, verdict ('PASS',
// 'MISS' or 'n/a' when the run did not measure it), detail}.  Rows with
// op 'info' are reported figures without a target (4096 leases).

const row = (id, what, value, op, limit, unit, detail) => {
  let verdict = 'n/a';
  if (value != null && !Number.isNaN(value) && op !== 'info')
    verdict = (op === '<=' ? value <= limit : value >= limit) ? 'PASS' : 'MISS';
  return { id, what, value: value ?? null, op, limit, unit, verdict,
           detail: detail || '' };
};

const at = (tp, shards) => (tp || []).find((r) => r.shards === shards);
const ratio = (a, b) => (a == null || b == null || !b ? null : a / b);
const scaleAt = (sc, n) => (sc || []).find((r) => r.leases === n);

export function evaluate(res) {
  const tp = res.throughput, rows = [];
  const s1 = at(tp, 1)?.summary, s16 = at(tp, 16)?.summary;
  rows.push(row('cpu_vs_floor_16', 'kcld CPU/record at 16 shards / C floor ' +
                '(receive + scan + decode)',
                ratio(s16?.kcld.cpu_per_m, s16?.floor.cpu_per_m), '<=', 1.5,
                'x'));
  rows.push(row('cpu_flat_16_1', 'kcld CPU/record at 16 shards / at 1 shard',
                ratio(s16?.kcld.cpu_per_m, s1?.kcld.cpu_per_m), '<=', 1.3, 'x'));
  for (const n of [1, 4, 16]) {
    const s = at(tp, n)?.summary;
    rows.push(row(`cpu_vs_boto3_${n}`, `kcld CPU/record / boto3 peer's, ${n} ` +
                  'shard(s)', ratio(s?.kcld.cpu_per_m, s?.boto3?.cpu_per_m),
                  '<=', 0.12, 'x'));
    rows.push(row(`cpu_vs_node_${n}`, `kcld CPU/record / Node peer's, ${n} ` +
                  'shard(s)', ratio(s?.kcld.cpu_per_m, s?.node.cpu_per_m),
                  '<=', 0.10, 'x'));
  }
  rows.push(row('rss_16', 'kcld peak RSS at 16 shards', s16?.kcld.hwm_mib, '<=',
                100, 'MiB'));
  rows.push(row('rss_vs_node_16', 'kcld peak RSS at 16 shards / Node peer\'s',
                ratio(s16?.kcld.hwm_mib, s16?.node.hwm_mib), '<=', 0.25, 'x'));
  rows.push(row('faults_16', 'kcld page faults per record at 16 shards ' +
                '(What to build, 1)', s16?.kcld.faults_per_rec, '<=', 0.05, ''));

  const l = scaleAt(res.scale, 1024);
  rows.push(row('scale_1024_rate', '1024 idle leases: GetRecords/s / 1024',
                l ? l.get_records_per_s / 1024 : null, '>=', 0.97, 'x',
                l ? `${l.get_records_per_s.toFixed(1)}/s at the fixture` : ''));
  rows.push(row('scale_1024_cpu', '1024 idle leases: kcld CPU, % of one core',
                l?.cpu_percent, '<=', 10, '%'));
  rows.push(row('scale_1024_hold', '1024 idle leases: seconds from start to ' +
                'all held', l ? l.seconds_to_hold ?? Infinity : null, '<=', 5, 's',
                l ? `at most ${l.max_held} held at once before the window` : ''));
  rows.push(row('scale_1024_time_wait', '1024 idle leases: new TIME_WAIT ' +
                `sockets in the ${l ? l.window_s.toFixed(0) : '?'} s window`,
                l?.time_wait.new, '<=', 0, '',
                l ? `fixture ${l.time_wait.new_fixture}, DynamoDB ` +
                    `${l.time_wait.new_dynamodb}; ${l.time_wait.start} -> ` +
                    `${l.time_wait.end} in all` : ''));
  const x = scaleAt(res.scale, 4096);
  if (x) {
    rows.push(row('scale_4096_rate', '4096 idle leases: GetRecords/s / 4096',
                  x.get_records_per_s / 4096, 'info', null, 'x'));
    rows.push(row('scale_4096_cpu', '4096 idle leases: kcld CPU, % of one core',
                  x.cpu_percent, 'info', null, '%'));
    rows.push(row('scale_4096_hold', '4096 idle leases: seconds to all held',
                  x.seconds_to_hold ?? Infinity, 'info', null, 's',
                  `at most ${x.max_held} held at once before the window`));
    rows.push(row('scale_4096_time_wait', '4096 idle leases: new TIME_WAIT ' +
                  'sockets in the window', x.time_wait.new, 'info', null, ''));
  }

  const lat = res.latency;
  rows.push(row('latency_p50', 'latency p50 kcld / Node peer',
                ratio(lat?.kcld.p50, lat?.node.p50), '<=', 1.05, 'x'));
  rows.push(row('latency_p99', 'latency p99 kcld / Node peer',
                ratio(lat?.kcld.p99, lat?.node.p99), '<=', 1.05, 'x'));
  const fo = lat?.fanout;
  rows.push(row('latency_fanout_p50', 'latency p50 kcld fetch.mode: fanout ' +
                '(issue 13)', fo?.kcld.p50, '<=', 50, 'ms',
                fo ? `load ${fo.load.toFixed(2)}` : ''));
  rows.push(row('latency_fanout_p99', 'latency p99 kcld fetch.mode: fanout ' +
                '(issue 13)', fo?.kcld.p99, '<=', 100, 'ms',
                fo ? `load ${fo.load.toFixed(2)}` : ''));
  const fb = res.fanout;
  for (const [over, tail] of [['h2c', ''], ['tls', '_tls']]) {
    for (const n of [4, 16]) {
      const r = (fb?.throughput || []).find((x) => x.shards === n &&
                                            x.over === over);
      rows.push(row(`fanout_per_cpu_${n}${tail}`, `fan-out records per CPU ` +
                    `second / polling's, ${n} shards, over ${over === 'tls' ?
                    'TLS' : 'h2c'} (issue 13)`, r?.per_cpu_ratio, '>=', 0.9,
                    'x', r ? `load ${r.load.toFixed(2)}` : ''));
    }
  }
  for (const [key, how] of [['idle', 'h2c'], ['idle_tls', 'TLS']])
    rows.push(row(`fanout_${key}_rss`, `RSS with ${fb?.[key]?.shards ?? 256} ` +
                  `subscribed idle shards / polling's, over ${how} (issue 13)`,
                  fb?.[key]?.rss_ratio, '<=', 1.2, 'x',
                  fb?.[key] ? `load ${fb[key].load.toFixed(2)}` : ''));
  return rows;
}

const fmt = (v, unit) => {
  if (v === Infinity) return 'never within the limit';
  if (v == null || !isFinite(v)) return 'n/a';
  const d = Number.isInteger(v) || Math.abs(v) >= 100 ? 0
    : Math.abs(v) >= 10 ? 1 : Math.abs(v) >= 1 ? 2 : 3;
  return `${v.toFixed(d)}${unit === 'x' ? 'x' : unit ? ' ' + unit : ''}`;
};

// The rows as printed lines: one per measured row, then one naming the
// targets this run did not measure.
export function lines(rows) {
  const out = rows.filter((r) => r.verdict !== 'n/a' || r.op === 'info')
    .map((r) => {
      const target = r.op === 'info' ? 'reported, no target'
        : `target ${r.op === '<=' ? '≤' : '≥'} ${fmt(r.limit, r.unit)}`;
      const v = r.op === 'info' ? 'INFO' : r.verdict;
      return `   ${v.padEnd(4)}  ${r.what}: ${fmt(r.value, r.unit)} (${target})` +
        (r.detail ? `; ${r.detail}` : '');
    });
  const missing = rows.filter((r) => r.verdict === 'n/a' && r.op !== 'info');
  if (missing.length)
    out.push(`   n/a   not measured in this run: ${missing.map((r) => r.id).join(', ')}`);
  return out;
}
