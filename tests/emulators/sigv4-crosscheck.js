// sigv4-crosscheck.js — signs requests with @smithy/signature-v4 (the AWS
// SDK for JavaScript v3 signer) for tests/unit/test_sigv4_crosscheck.c.
//
// Protocol: after loading it prints {"ready":true,"version":"..."}.  Then it
// reads one JSON request per stdin line and answers one JSON line each, in
// order, until stdin closes.
//   request: {id, method, path, query: [[key, value], ...] (decoded),
//             headers: [[name, value], ...] (raw, may repeat), body_hex,
//             akid, secret, token (or null), region, service,
//             time (epoch seconds), sign_body (bool)}
//   answer:  {id, authorization, amz_date, token, content_sha256, creq}
//            or {id, error}
//
// Set up as the SDK signs AWS JSON-protocol services (Kinesis, DynamoDB,
// SQS): uriEscapePath (the default) normalizes the path and encodes each
// segment once more, and applyChecksum (x-amz-content-sha256) only when the
// request asks for it.  Where smithy's input model differs by design it is
// given the same HTTP request: a header that appears several times is one
// map entry, its values trimmed and folded one by one and joined with ','
// (what an HTTP message means); a repeated query key is an array.
import { createRequire } from "node:module";
import { createInterface } from "node:readline";
import { SignatureV4, getCanonicalHeaders } from "@smithy/signature-v4";
import { Sha256 } from "@aws-crypto/sha256-js";
import { HttpRequest } from "@smithy/core/protocols";

const require = createRequire(import.meta.url);
const version = require("@smithy/signature-v4/package.json").version;

const fold = (v) =>
  v.replace(/[\r\n]/g, " ").replace(/[ \t]+/g, " ").replace(/^ | $/g, "");

function toHttpRequest(r) {
  const count = new Map();
  for (const [name] of r.headers) {
    const l = name.toLowerCase();
    count.set(l, (count.get(l) ?? 0) + 1);
  }
  const headers = {};
  for (const [name, value] of r.headers) {
    const l = name.toLowerCase();
    if (count.get(l) === 1) {
      headers[name] = value; // smithy trims and folds it itself
    } else {
      headers[l] = l in headers ? `${headers[l]},${fold(value)}` : fold(value);
    }
  }
  const query = {};
  for (const [key, value] of r.query) {
    if (!Object.hasOwn(query, key)) {
      query[key] = value;
    } else if (Array.isArray(query[key])) {
      query[key].push(value);
    } else {
      query[key] = [query[key], value];
    }
  }
  const body = Buffer.from(r.body_hex, "hex");
  return new HttpRequest({
    method: r.method,
    protocol: "https:",
    hostname: "example.amazonaws.com",
    path: r.path,
    query,
    headers,
    body: body.length ? new Uint8Array(body) : undefined,
  });
}

async function sign(r) {
  const signer = new SignatureV4({
    credentials: {
      accessKeyId: r.akid,
      secretAccessKey: r.secret,
      sessionToken: r.token ?? undefined,
    },
    region: r.region,
    service: r.service,
    sha256: Sha256,
    uriEscapePath: true,
    applyChecksum: r.sign_body,
  });
  const req = toHttpRequest(r);
  const signed = await signer.sign(req, {
    signingDate: new Date(r.time * 1000),
  });
  // For diagnostics only: smithy's canonical request for what it signed,
  // rebuilt from its own exported steps.
  let payloadHash = signed.headers["x-amz-content-sha256"];
  if (!payloadHash) {
    const h = new Sha256();
    if (req.body) h.update(req.body);
    payloadHash = Buffer.from(await h.digest()).toString("hex");
  }
  const creq = signer.createCanonicalRequest(
    signed, getCanonicalHeaders(signed), payloadHash);
  return {
    id: r.id,
    authorization: signed.headers.authorization,
    amz_date: signed.headers["x-amz-date"],
    token: signed.headers["x-amz-security-token"] ?? null,
    content_sha256: signed.headers["x-amz-content-sha256"] ?? null,
    creq,
  };
}

process.stdout.write(JSON.stringify({ ready: true, version }) + "\n");
const rl = createInterface({ input: process.stdin, crlfDelay: Infinity });
for await (const line of rl) {
  if (!line) continue;
  let r;
  let answer;
  try {
    r = JSON.parse(line);
    answer = await sign(r);
  } catch (e) {
    answer = { id: r?.id ?? null, error: String(e?.stack ?? e) };
  }
  process.stdout.write(JSON.stringify(answer) + "\n");
}
