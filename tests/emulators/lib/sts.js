// sts.js — a fake AWS STS, IAM Identity Center portal and SSO OIDC for
// kcld's credential tests, on one loopback port.
//
// STS (POST /, form-encoded Query protocol, XML answers as AWS sends them):
//   AssumeRole                 the caller's SigV4 signature must verify
//                              (fault.js's check, @smithy/signature-v4) with
//                              a known key: one given in `keys`, or a set
//                              this endpoint issued (its session token must
//                              come along); else 403 SignatureDoesNotMatch or
//                              InvalidClientTokenId.  A role in `deny` gets
//                              403 AccessDenied.
//   AssumeRoleWithWebIdentity  unsigned; WebIdentityToken must equal
//                              `web_token`, else 400 InvalidIdentityToken.
//   GetCallerIdentity          signed like AssumeRole; answers the caller.
//   Issued sets: AccessKeyId ASIASTS<n>, a secret and token carrying <n>,
//   Expiration `expires_in` seconds ahead.
// SSO portal: GET /federation/credentials?account_id=A&role_name=R with
//   x-amz-sso_bearer_token equal to `sso_token` (else 401) and A/R in
//   `sso_roles` (else 403) -> {"roleCredentials": {...}}.
// SSO OIDC: POST /token {"grantType":"refresh_token", clientId,
//   clientSecret, refreshToken} must match `oidc` -> a new access token
//   (`oidc.new_token`, which becomes `sso_token`), else 400 invalid_grant.
// Control plane: POST /__control (JSON merged into the settings),
//   GET /__stats ({calls: [{action, role_arn, session_name, external_id,
//   duration, caller, region}], counters}), POST /__reset.
// Settings: keys {AKID: secret}, accept_unknown (a key it does not know
//   signs unchecked: sets issued elsewhere, e.g. by the fake IMDS),
//   deny [role ARN], web_token, expires_in,
//   delay_ms {action: ms}, sso_token, sso_roles ["A/R"], oidc
//   {client_id, client_secret, refresh_token, new_token}.
import http from 'node:http';
import { verifySignature } from './fault.js';

const HOST = '127.0.0.1';
const NS = 'https://sts.amazonaws.com/doc/2011-06-15/';

function defaults() {
  return {
    keys: {}, accept_unknown: false, deny: [], web_token: 'good-web-token',
    expires_in: 3600,
    delay_ms: {}, sso_token: null, sso_roles: [], oidc: null,
  };
}

function zeroStats() {
  return { calls: [], rejected: 0, sso_calls: 0, oidc_calls: 0, requests: 0 };
}

function iso(ms) {
  return new Date(ms).toISOString().replace(/\.\d+Z$/, 'Z');
}

function xmlError(code, message, type = 'Sender') {
  return `<ErrorResponse xmlns="${NS}"><Error><Type>${type}</Type>` +
    `<Code>${code}</Code><Message>${message}</Message></Error>` +
    '<RequestId>fake-request</RequestId></ErrorResponse>';
}

export async function start() {
  let cfg = defaults();
  let stats = zeroStats();
  let issued = new Map(); // akid -> {secret, token}
  let n = 0;

  function issue() {
    n++;
    const c = {
      AccessKeyId: `ASIASTS${String(n).padStart(4, '0')}`,
      SecretAccessKey: `stsSecret${n}x${Date.now()}`,
      SessionToken: `stsSessionToken${n}x${Date.now()}`,
      Expiration: iso(Date.now() + cfg.expires_in * 1000),
    };
    issued.set(c.AccessKeyId, { secret: c.SecretAccessKey, token: c.SessionToken });
    return c;
  }

  function send(res, status, body, type = 'text/xml') {
    try {
      res.writeHead(status, { 'Content-Type': type });
      res.end(body);
    } catch (_) { /* the client went away */ }
  }

  function readBody(req) {
    return new Promise((resolve) => {
      const parts = [];
      req.on('data', (c) => parts.push(c));
      req.on('end', () => resolve(Buffer.concat(parts)));
      req.on('error', () => resolve(Buffer.alloc(0)));
    });
  }

  // The caller of a signed request, or an error answer.
  async function caller(req, body) {
    const m = /Credential=([^/]+)\/\d{8}\/([^/]+)\//.exec(req.headers.authorization || '');
    if (!m) return { status: 403, code: 'MissingAuthenticationToken', message: 'Request is missing Authentication Token' };
    const akid = m[1];
    const known = issued.get(akid) ?? (cfg.keys[akid] ? { secret: cfg.keys[akid], token: undefined } : null);
    if (!known && cfg.accept_unknown) return { akid, region: m[2] };
    if (!known) return { status: 403, code: 'InvalidClientTokenId', message: 'The security token included in the request is invalid.' };
    if (known.token !== undefined && req.headers['x-amz-security-token'] !== known.token) {
      return { status: 403, code: 'InvalidClientTokenId', message: 'The security token included in the request is invalid.' };
    }
    const bad = await verifySignature(req, body, known.secret);
    if (bad) return { status: 403, code: 'SignatureDoesNotMatch', message: `The request signature we calculated does not match (${bad.reason})` };
    return { akid, region: m[2] };
  }

  function credsXml(action, p, c) {
    const user = `<AssumedRoleUser><Arn>${p.get('RoleArn').replace(':iam:', ':sts:').replace(':role/', ':assumed-role/')}/${p.get('RoleSessionName')}</Arn>` +
      '<AssumedRoleId>AROAFAKE:session</AssumedRoleId></AssumedRoleUser>';
    return `<${action}Response xmlns="${NS}"><${action}Result>` +
      (action === 'AssumeRoleWithWebIdentity' ? '<SubjectFromWebIdentityToken>system:serviceaccount:kcld</SubjectFromWebIdentityToken>' : '') +
      `${user}<Credentials><AccessKeyId>${c.AccessKeyId}</AccessKeyId>` +
      `<SecretAccessKey>${c.SecretAccessKey}</SecretAccessKey>` +
      `<SessionToken>${c.SessionToken}</SessionToken>` +
      `<Expiration>${c.Expiration}</Expiration></Credentials>` +
      `</${action}Result><ResponseMetadata><RequestId>fake</RequestId></ResponseMetadata></${action}Response>`;
  }

  async function sts(req, res, body) {
    const p = new URLSearchParams(body.toString('utf8'));
    const action = p.get('Action');
    const delay = cfg.delay_ms[action];
    if (delay) await new Promise((r) => setTimeout(r, delay));
    const call = {
      action, role_arn: p.get('RoleArn'), session_name: p.get('RoleSessionName'),
      external_id: p.get('ExternalId'), duration: p.get('DurationSeconds'),
      version: p.get('Version'), caller: null, region: null,
      content_type: req.headers['content-type'] ?? null, signed: !!req.headers.authorization,
    };
    stats.calls.push(call);
    if (action === 'AssumeRoleWithWebIdentity') {
      if (p.get('WebIdentityToken') !== cfg.web_token) {
        stats.rejected++;
        return send(res, 400, xmlError('InvalidIdentityToken', 'Couldn\'t retrieve verification key from your identity provider'));
      }
      return send(res, 200, credsXml(action, p, issue()));
    }
    if (action !== 'AssumeRole' && action !== 'GetCallerIdentity') {
      return send(res, 400, xmlError('InvalidAction', `Could not find operation ${action}`));
    }
    const who = await caller(req, body);
    if (who.status) {
      stats.rejected++;
      return send(res, who.status, xmlError(who.code, who.message));
    }
    call.caller = who.akid;
    call.region = who.region;
    if (action === 'GetCallerIdentity') {
      return send(res, 200, `<GetCallerIdentityResponse xmlns="${NS}"><GetCallerIdentityResult>` +
        `<Arn>arn:aws:sts::123456789012:assumed-role/fake/${who.akid}</Arn><UserId>AROAFAKE:${who.akid}</UserId>` +
        '<Account>123456789012</Account></GetCallerIdentityResult>' +
        '<ResponseMetadata><RequestId>fake</RequestId></ResponseMetadata></GetCallerIdentityResponse>');
    }
    if (cfg.deny.includes(p.get('RoleArn'))) {
      stats.rejected++;
      return send(res, 403, xmlError('AccessDenied', `User: ${who.akid} is not authorized to perform: sts:AssumeRole on resource: ${p.get('RoleArn')}`));
    }
    return send(res, 200, credsXml(action, p, issue()));
  }

  function ssoPortal(req, res, url) {
    stats.sso_calls++;
    if (!cfg.sso_token || req.headers['x-amz-sso_bearer_token'] !== cfg.sso_token) {
      return send(res, 401, JSON.stringify({ message: 'Session token not found or invalid' }), 'application/json');
    }
    const key = `${url.searchParams.get('account_id')}/${url.searchParams.get('role_name')}`;
    if (!cfg.sso_roles.includes(key)) {
      return send(res, 403, JSON.stringify({ message: 'No access' }), 'application/json');
    }
    const c = issue();
    return send(res, 200, JSON.stringify({
      roleCredentials: {
        accessKeyId: c.AccessKeyId, secretAccessKey: c.SecretAccessKey,
        sessionToken: c.SessionToken, expiration: Date.parse(c.Expiration),
      },
    }), 'application/json');
  }

  function oidcToken(res, body) {
    stats.oidc_calls++;
    let q = {};
    try { q = JSON.parse(body.toString('utf8')); } catch (_) { /* refused below */ }
    const o = cfg.oidc;
    if (!o || q.grantType !== 'refresh_token' || q.clientId !== o.client_id ||
        q.clientSecret !== o.client_secret || q.refreshToken !== o.refresh_token) {
      return send(res, 400, JSON.stringify({ error: 'invalid_grant' }), 'application/json');
    }
    cfg.sso_token = o.new_token;
    return send(res, 200, JSON.stringify({
      accessToken: o.new_token, expiresIn: 3600, refreshToken: `${o.refresh_token}-next`,
      tokenType: 'Bearer',
    }), 'application/json');
  }

  const server = http.createServer(async (req, res) => {
    const url = new URL(req.url, 'http://x');
    const body = await readBody(req);
    if (url.pathname === '/__control' && req.method === 'POST') {
      try {
        Object.assign(cfg, JSON.parse(body.toString('utf8') || '{}'));
        return send(res, 200, JSON.stringify(cfg), 'application/json');
      } catch (e) {
        return send(res, 400, String(e));
      }
    }
    if (url.pathname === '/__reset' && req.method === 'POST') {
      cfg = defaults();
      stats = zeroStats();
      issued = new Map();
      n = 0;
      return send(res, 200, '{}', 'application/json');
    }
    if (url.pathname === '/__stats') return send(res, 200, JSON.stringify(stats), 'application/json');
    stats.requests++;
    if (url.pathname === '/federation/credentials' && req.method === 'GET') return ssoPortal(req, res, url);
    if (url.pathname === '/token' && req.method === 'POST') return oidcToken(res, body);
    if (url.pathname === '/' && req.method === 'POST') return sts(req, res, body);
    return send(res, 404, 'not found', 'text/plain');
  });
  server.keepAliveTimeout = 5000;
  const url = await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, HOST, () => resolve(`http://${HOST}:${server.address().port}`));
  });
  return { url, close: () => { server.closeAllConnections?.(); server.close(); } };
}
