// kinesis_local.js — npm kinesis-local (kinesis-mock, the Kinesis engine
// inside LocalStack) on ephemeral loopback ports, for the fan-out tests:
// it serves SubscribeToShard over HTTP/2 (h2c on its plain port) from its
// own code, not ours.  Loaded by emulators.js as the emulator
// "kinesis_local"; the URL is its plain (http) port.
//
// kinesis-mock takes its ports from the environment and reads server.json
// (its TLS certificate) from the working directory: it runs as a child
// process in its package's folder, killed with this one.
import { spawn } from 'node:child_process';
import net from 'node:net';
import path from 'node:path';
import { createRequire } from 'node:module';

const HOST = '127.0.0.1';

// A port free now (bound, then let go).
function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, HOST, () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

// Resolves once `port` accepts a connection; rejects after `ms`.
async function awaitPort(port, ms, child) {
  const end = Date.now() + ms;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`kinesis-local exited (${child.exitCode})`);
    const ok = await new Promise((resolve) => {
      const c = net.connect(port, HOST, () => { c.destroy(); resolve(true); });
      c.once('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > end) throw new Error(`kinesis-local not listening after ${ms} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

export async function start() {
  const require = createRequire(import.meta.url);
  const dir = path.dirname(require.resolve('kinesis-local/package.json'));
  const plain = await freePort();
  const tls = await freePort();
  const child = spawn(process.execPath, ['main.js'], {
    cwd: dir,
    env: { ...process.env, KINESIS_MOCK_PLAIN_PORT: String(plain),
      KINESIS_MOCK_TLS_PORT: String(tls), LOG_LEVEL: 'ERROR' },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  await awaitPort(plain, 60000, child);
  return { url: `http://${HOST}:${plain}`, close: () => child.kill('SIGKILL') };
}
