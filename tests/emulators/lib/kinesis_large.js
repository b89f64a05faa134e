// kinesis_large.js — kinesalite taking records of up to 10 MiB, as Kinesis
// does now.  Loaded by emulators.js as the emulator "kinesis_large".
//
// kinesalite 3.3.3 refuses Data over 1 MiB (its validation tables for
// PutRecord and PutRecords) and request bodies over 7 MiB (a constant in its
// index.js), and gathers a request body by copying it whole for each chunk
// that arrives (seconds for a 14 MiB body).  Here the tables say 10 MiB,
// and index.js is loaded a second time, under its own name, with the body
// limit raised to 64 MiB and the chunks joined once at the end; loading
// fails loudly if the code it changes is not found (a kinesalite upgrade).
// The
// tables are shared by every kinesalite of the emulator process: a test that
// starts "kinesis" too gets the 10 MiB record limit there as well (its body
// limit stays 7 MiB).  GetRecords has no byte cap in kinesalite.
import fs from 'node:fs';
import Module, { createRequire } from 'node:module';
import path from 'node:path';

const require = createRequire(import.meta.url);
const MAX_RECORD = 10 * 1024 * 1024;
for (const op of ['putRecord', 'putRecords']) {
  const v = require(`kinesalite/validations/${op}.js`);
  const data = op === 'putRecord' ? v.types.Data : v.types.Records.children.children.Data;
  data.lengthLessThanOrEqual = MAX_RECORD;
}

// [what kinesalite's index.js says, what it says here]
const PATCHES = [
  ['MAX_REQUEST_BYTES = 7 * 1024 * 1024', 'MAX_REQUEST_BYTES = 64 * 1024 * 1024'],
  ['function httpHandler(store, req, res) {\n  var body\n',
   'function httpHandler(store, req, res) {\n  var body, chunks = []\n'],
  ['    body = body ? Buffer.concat([body, data], newLength) : data\n',
   '    chunks.push(data)\n    body = { length: newLength }\n'],
  ["  req.on('end', function() {\n",
   "  req.on('end', function() {\n    body = chunks.length ? Buffer.concat(chunks) : undefined\n"],
];

function loadKinesalite() {
  const file = require.resolve('kinesalite');
  let src = fs.readFileSync(file, 'utf8');
  for (const [from, to] of PATCHES) {
    if (src.split(from).length !== 2) throw new Error(`kinesis_large: ${JSON.stringify(from)} not once in ${file}`);
    src = src.replace(from, to);
  }
  const m = new Module(file, null);
  m.filename = file;
  m.paths = Module._nodeModulePaths(path.dirname(file));
  m._compile(src, file);
  return m.exports;
}

export async function start() {
  const kinesalite = loadKinesalite();
  const s = kinesalite({ createStreamMs: 0, deleteStreamMs: 0, updateStreamMs: 0, shardLimit: 1000 });
  const url = await new Promise((resolve, reject) => {
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => resolve(`http://127.0.0.1:${s.address().port}`));
  });
  return { url, close: () => s.close() };
}
