// Small AWS helper for `make run` (scripts/run-local.sh) against the local
// emulators, signing with @smithy/signature-v4 like any SDK would.
//
//   node local-aws.js init   STREAM SHARDS TABLE QUEUE   -> prints the queue URL
//   node local-aws.js counts TABLE QUEUE_URL            -> prints "items=N dlq_messages=N dlq_records=N"
//
// Endpoints come from KCLD_KINESIS_ENDPOINT, KCLD_DYNAMODB_ENDPOINT and
// KCLD_SQS_ENDPOINT.
import { SignatureV4 } from '@smithy/signature-v4';
import { Sha256 } from '@aws-crypto/sha256-js';

const creds = { accessKeyId: 'test', secretAccessKey: 'test' };
const targets = {
  kinesis: ['KCLD_KINESIS_ENDPOINT', 'Kinesis_20131202.', '1.1'],
  dynamodb: ['KCLD_DYNAMODB_ENDPOINT', 'DynamoDB_20120810.', '1.0'],
  sqs: ['KCLD_SQS_ENDPOINT', 'AmazonSQS.', '1.0'],
};

async function call(service, op, body) {
  const [envName, prefix, ver] = targets[service];
  const url = new URL(process.env[envName]);
  const signer = new SignatureV4({ credentials: creds, region: 'us-east-1', service, sha256: Sha256 });
  const req = {
    method: 'POST', protocol: url.protocol, hostname: url.hostname, port: Number(url.port), path: '/',
    headers: { host: url.host, 'content-type': `application/x-amz-json-${ver}`, 'x-amz-target': prefix + op },
    body: JSON.stringify(body),
  };
  const signed = await signer.sign(req);
  const res = await fetch(url.origin + '/', { method: 'POST', headers: signed.headers, body: req.body });
  const text = await res.text();
  const json = text ? JSON.parse(text) : {};
  if (!res.ok) throw new Error(`${op}: HTTP ${res.status} ${json.__type || ''} ${json.message || json.Message || ''}`);
  return json;
}

async function init(stream, shards, table, queue) {
  try {
    await call('kinesis', 'CreateStream', { StreamName: stream, ShardCount: Number(shards) });
  } catch (e) {
    if (!/ResourceInUse/.test(e.message)) throw e;
  }
  for (let i = 0; i < 100; i++) {
    const d = await call('kinesis', 'DescribeStreamSummary', { StreamName: stream });
    if (d.StreamDescriptionSummary.StreamStatus === 'ACTIVE') break;
    await new Promise((r) => setTimeout(r, 100));
  }
  try {
    await call('dynamodb', 'CreateTable', {
      TableName: table, BillingMode: 'PAY_PER_REQUEST',
      AttributeDefinitions: [{ AttributeName: 'pk', AttributeType: 'S' }, { AttributeName: 'sk', AttributeType: 'S' }],
      KeySchema: [{ AttributeName: 'pk', KeyType: 'HASH' }, { AttributeName: 'sk', KeyType: 'RANGE' }],
    });
  } catch (e) {
    if (!/ResourceInUse/.test(e.message)) throw e;
  }
  const q = await call('sqs', 'CreateQueue', { QueueName: queue });
  process.stdout.write(q.QueueUrl + '\n');
}

async function counts(table, queueUrl) {
  let items = 0, key;
  do {
    const r = await call('dynamodb', 'Scan', { TableName: table, Select: 'COUNT', ExclusiveStartKey: key });
    items += r.Count;
    key = r.LastEvaluatedKey;
  } while (key);
  // Count dead-lettered records without consuming them: receive with a
  // short visibility timeout and read each body's `records` (or batchSize).
  let messages = 0, records = 0;
  const seen = new Set();
  for (;;) {
    const r = await call('sqs', 'ReceiveMessage', { QueueUrl: queueUrl, MaxNumberOfMessages: 10, VisibilityTimeout: 30, WaitTimeSeconds: 0 });
    const batch = r.Messages || [];
    if (batch.length === 0) break;
    for (const m of batch) {
      if (seen.has(m.MessageId)) continue;
      seen.add(m.MessageId);
      messages++;
      try {
        const b = JSON.parse(m.Body);
        records += Array.isArray(b.records) ? b.records.length : (b.KinesisBatchInfo?.batchSize || 1);
      } catch (_) { records++; }
    }
  }
  process.stdout.write(`items=${items} dlq_messages=${messages} dlq_records=${records}\n`);
}

const [cmd, ...args] = process.argv.slice(2);
try {
  if (cmd === 'init') await init(...args);
  else if (cmd === 'counts') await counts(...args);
  else throw new Error('usage: local-aws.js init|counts ...');
} catch (e) {
  process.stderr.write(`local-aws: ${e.message}\n`);
  process.exit(1);
}
