// A fake EC2 instance metadata service (IMDSv2) and ECS/EKS container
// credentials endpoint for kcld's credential tests.
//
// IMDS:
//   PUT /latest/api/token            needs X-aws-ec2-metadata-token-ttl-seconds
//                                    (1..21600); answers a fresh token
//   GET /latest/meta-data/iam/security-credentials/        -> role name
//   GET /latest/meta-data/iam/security-credentials/<role>  -> credentials JSON
//   GET /latest/meta-data/placement/region                 -> region
//   Every GET needs a valid X-aws-ec2-metadata-token, else 401.
// Container: any other GET (e.g. /v2/credentials/abc) -> credentials JSON;
//   when `container_auth` is set the Authorization header must equal it,
//   else 401.
// Control plane (not subject to delays or failures):
//   POST /__control  JSON merged into the settings below
//   GET  /__stats    counters, a few observed headers, the last IMDS token
//   POST /__reset    settings and counters back to their defaults
//
// Settings:
//   role, region          what IMDS reports
//   expires_in            seconds from now for Expiration (default 3600);
//                         null = omit Expiration
//   delay_ms, delay_count the next delay_count requests wait delay_ms first
//                         (delay_count -1 = every request)
//   fail_count, fail_status  the next fail_count requests answer fail_status
//                         (default 500) instead
//   container_auth        required Authorization value, or null
//   code                  the IMDS "Code" field (default "Success")
// Each credentials answer is a new set: AccessKeyId ASIAFAKE<n>, and a secret
// and token that carry <n> and a random nonce, so tests can tell sets apart.
import http from 'node:http';
import crypto from 'node:crypto';

const HOST = '127.0.0.1';

function defaults() {
  return {
    role: 'kcld-test-role',
    region: 'eu-west-3',
    expires_in: 3600,
    delay_ms: 0,
    delay_count: 0,
    fail_count: 0,
    fail_status: 500,
    container_auth: null,
    code: 'Success',
  };
}

function zeroStats() {
  return {
    requests: 0, token_puts: 0, role_lists: 0, imds_creds: 0, region: 0,
    container_creds: 0, unauthorized: 0, failed: 0, delayed: 0,
    bad_requests: 0, issued: 0,
    last_ttl: null, last_container_auth: null, last_method: null,
    last_path: null, last_token: null,
  };
}

export async function start() {
  let cfg = defaults();
  let stats = zeroStats();
  const tokens = new Set();
  const nonce = crypto.randomBytes(6).toString('hex');

  function issue(withCode) {
    stats.issued++;
    const n = stats.issued;
    const out = {};
    if (withCode) {
      out.Code = cfg.code;
      out.LastUpdated = new Date().toISOString().replace(/\.\d+Z$/, 'Z');
      out.Type = 'AWS-HMAC';
    }
    out.AccessKeyId = `ASIAFAKE${String(n).padStart(4, '0')}`;
    out.SecretAccessKey = `fakeSecret${nonce}n${n}`;
    out.Token = `fakeSessionToken${nonce}n${n}`;
    if (cfg.expires_in !== null && cfg.expires_in !== undefined) {
      const t = new Date(Date.now() + cfg.expires_in * 1000);
      out.Expiration = t.toISOString().replace(/\.\d+Z$/, 'Z');
    }
    if (!withCode) out.RoleArn = `arn:aws:iam::123456789012:role/${cfg.role}`;
    return out;
  }

  function send(res, status, body, type = 'text/plain') {
    try {
      res.writeHead(status, { 'Content-Type': type });
      res.end(body);
    } catch (_) { /* the client gave up (timeout): nothing to do */ }
  }

  function readBody(req) {
    return new Promise((resolve) => {
      const parts = [];
      req.on('data', (c) => parts.push(c));
      req.on('end', () => resolve(Buffer.concat(parts).toString('utf8')));
      req.on('error', () => resolve(''));
    });
  }

  function serve(req, res) {
    const url = new URL(req.url, 'http://x');
    const path = url.pathname;
    const tok = req.headers['x-aws-ec2-metadata-token'];
    if (path === '/latest/api/token') {
      stats.token_puts++;
      if (req.method !== 'PUT') return send(res, 405, 'method not allowed');
      const ttl = req.headers['x-aws-ec2-metadata-token-ttl-seconds'];
      stats.last_ttl = ttl === undefined ? null : ttl;
      const n = Number(ttl);
      if (!Number.isInteger(n) || n < 1 || n > 21600) {
        stats.bad_requests++;
        return send(res, 400, 'bad ttl');
      }
      const t = crypto.randomBytes(24).toString('base64');
      tokens.add(t);
      stats.last_token = t; // so a test can look for it in kcld's log
      return send(res, 200, t);
    }
    if (path.startsWith('/latest/')) {
      if (req.method !== 'GET') return send(res, 405, 'method not allowed');
      if (!tok || !tokens.has(tok)) {
        stats.unauthorized++;
        return send(res, 401, 'unauthorized');
      }
      const credsPrefix = '/latest/meta-data/iam/security-credentials/';
      if (path === credsPrefix) {
        stats.role_lists++;
        return send(res, 200, cfg.role);
      }
      if (path.startsWith(credsPrefix)) {
        stats.imds_creds++;
        const role = decodeURIComponent(path.slice(credsPrefix.length));
        if (role !== cfg.role) return send(res, 404, 'not found');
        return send(res, 200, JSON.stringify(issue(true), null, 2));
      }
      if (path === '/latest/meta-data/placement/region') {
        stats.region++;
        return send(res, 200, cfg.region);
      }
      return send(res, 404, 'not found');
    }
    // The container credentials endpoint.
    if (req.method !== 'GET') return send(res, 405, 'method not allowed');
    stats.container_creds++;
    stats.last_container_auth = req.headers.authorization ?? null;
    if (cfg.container_auth !== null &&
        req.headers.authorization !== cfg.container_auth) {
      stats.unauthorized++;
      return send(res, 401, JSON.stringify({ code: 'Unauthorized' }),
                  'application/json');
    }
    return send(res, 200, JSON.stringify(issue(false)), 'application/json');
  }

  const server = http.createServer(async (req, res) => {
    const path = new URL(req.url, 'http://x').pathname;
    if (path === '/__control' && req.method === 'POST') {
      try {
        Object.assign(cfg, JSON.parse((await readBody(req)) || '{}'));
        return send(res, 200, JSON.stringify(cfg), 'application/json');
      } catch (e) {
        return send(res, 400, String(e));
      }
    }
    if (path === '/__reset' && req.method === 'POST') {
      await readBody(req);
      cfg = defaults();
      stats = zeroStats();
      tokens.clear();
      return send(res, 200, '{}', 'application/json');
    }
    if (path === '/__stats') {
      return send(res, 200, JSON.stringify(stats), 'application/json');
    }
    await readBody(req);
    stats.requests++;
    stats.last_method = req.method;
    stats.last_path = path;
    if (cfg.delay_count !== 0 && cfg.delay_ms > 0) {
      if (cfg.delay_count > 0) cfg.delay_count--;
      stats.delayed++;
      await new Promise((r) => setTimeout(r, cfg.delay_ms));
    }
    if (cfg.fail_count !== 0) {
      if (cfg.fail_count > 0) cfg.fail_count--;
      stats.failed++;
      // Still count what was asked for, so tests see the attempts.
      if (path === '/latest/api/token') stats.token_puts++;
      return send(res, cfg.fail_status, 'injected failure');
    }
    serve(req, res);
  });
  server.keepAliveTimeout = 5000;

  const url = await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, HOST, () => resolve(`http://${HOST}:${server.address().port}`));
  });
  return {
    url,
    close: () => {
      server.closeAllConnections?.();
      server.close();
    },
  };
}
