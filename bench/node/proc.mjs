// proc.mjs - the benchmark driver's processes and what /proc says of them.
//
// Every process the benchmarks start goes through start() here: it runs
// under the launcher (bench/launch.c: SIGKILL when its parent, this driver,
// ends, however it ends), in a process group of its own (so whatever it
// starts can be ended with it), with stdin a pipe from the driver (the node
// and Python helpers exit when it closes).  killAll() ends every group that
// is still running; the driver calls it on exit and on SIGTERM, SIGINT and
// SIGHUP.
import { spawn } from 'node:child_process';
import fs from 'node:fs';

const CLK_TCK = 100;
const children = new Set();
let launcher = null;

// Sets the launcher binary (build/bench/launch); must be called first.
export function setLauncher(file) {
  if (!fs.existsSync(file)) throw new Error(`no launcher at ${file} (make bench builds it)`);
  launcher = file;
}

// Starts cmd args under the launcher in a group of its own; opts.stdout and
// opts.stderr as for spawn's stdio (default 'pipe' and 'inherit'), opts.env.
// Returns the ChildProcess; its pid is the group's id.
export function start(cmd, args, opts = {}) {
  if (!launcher) throw new Error('proc: setLauncher first');
  const p = spawn(launcher, ['-p', String(process.pid), cmd, ...args], {
    stdio: ['pipe', opts.stdout ?? 'pipe', opts.stderr ?? 'inherit'],
    env: opts.env ?? process.env,
    detached: true,
  });
  children.add(p);
  p.on('exit', () => children.delete(p));
  p.stdin.on('error', () => {});   // A helper that already exited.
  return p;
}

// 1 when p has not exited yet.
export const running = (p) => p && p.exitCode === null && p.signalCode === null;

// Sends sig to p's whole process group.
export function signal(p, sig) {
  if (!running(p)) return;
  try { process.kill(-p.pid, sig); } catch (_) {
    try { p.kill(sig); } catch (_e) { /* gone */ }
  }
}

// Closes p's stdin and sends it SIGTERM: how a helper is told to end.
export function stop(p) {
  if (!running(p)) return;
  try { p.stdin.end(); } catch (_) { /* gone */ }
  signal(p, 'SIGTERM');
}

// Resolves when p has exited (at once when it already has).
export function exited(p) {
  return new Promise((resolve) => {
    if (!running(p)) return resolve();
    p.once('exit', () => resolve());
  });
}

// SIGKILL to every group still running (synchronous: safe in 'exit').
export function killAll() {
  for (const p of children) {
    try { process.kill(-p.pid, 'SIGKILL'); } catch (_) { /* gone */ }
  }
  children.clear();
}

// Installs killAll on exit and on the termination signals.
export function killAllOnExit(log) {
  process.on('exit', killAll);
  const codes = { SIGHUP: 1, SIGINT: 2, SIGTERM: 15 };
  for (const [sig, n] of Object.entries(codes)) {
    process.on(sig, () => {
      log(`bench: ${sig}: ending every process it started`);
      killAll();
      process.exit(128 + n);
    });
  }
}

// {cpu (s), faults (minor + major), rss, hwm (KiB), threads} of pid, or null.
export function usage(pid) {
  try {
    const s = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
    const st = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
    const kib = (k) => Number((new RegExp(`^${k}:\\s+(\\d+)`, 'm').exec(st) ||
                              [0, NaN])[1]);
    return { cpu: (Number(f[11]) + Number(f[12])) / CLK_TCK,
             faults: Number(f[7]) + Number(f[9]),
             rss: kib('VmRSS'), hwm: kib('VmHWM'), threads: kib('Threads') };
  } catch (_) { return null; }
}

// The TCP sockets (IPv4 and IPv6) of /proc/net/tcp{,6}: their state (hex,
// as the kernel writes it: "01" ESTABLISHED, "06" TIME_WAIT), local and
// remote address text and ports.
function* tcpSockets() {
  const port = (a) => parseInt(a.slice(a.lastIndexOf(':') + 1), 16);
  for (const file of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let text;
    try { text = fs.readFileSync(file, 'utf8'); } catch (_) { continue; }
    for (const line of text.split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      if (f.length < 4) continue;
      yield { state: f[3], local: f[1], remote: f[2], lport: port(f[1]),
              rport: port(f[2]) };
    }
  }
}

// The set of TIME_WAIT TCP sockets (IPv4 and IPv6) whose local or remote
// port is one of ports, as "local remote" strings.
export function timeWait(ports) {
  const want = new Set(ports.map((p) => Number(p)));
  const out = new Set();
  for (const s of tcpSockets())
    if (s.state === '06' && (want.has(s.lport) || want.has(s.rport)))
      out.add(`${s.local} ${s.remote}`);
  return out;
}

// How many ESTABLISHED TCP sockets (IPv4 and IPv6) have local port
// `port`: a server's connections.
export function established(port) {
  let n = 0;
  for (const s of tcpSockets())
    if (s.state === '01' && s.lport === port) n++;
  return n;
}

// The port of an http://host:port URL.
export const portOf = (url) => Number(new URL(url).port);
