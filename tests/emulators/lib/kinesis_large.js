// kinesis_large.js — kinesalite taking records of up to 10 MiB, as Kinesis
// does now.  Loaded by emulators.js as the emulator "kinesis_large".
//
// kinesalite 3.3.3 refuses Data over 1 MiB (its validation tables for
// PutRecord and PutRecords) and request bodies over 7 MiB (a constant in its
// index.js).  Here the tables say 10 MiB, and index.js is loaded a second
// time, under its own name, with the body limit raised to 64 MiB; loading
// fails loudly if that constant is not found (a kinesalite upgrade).  The
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

function loadKinesalite() {
  const file = require.resolve('kinesalite');
  const limit = 'MAX_REQUEST_BYTES = 7 * 1024 * 1024';
  const src = fs.readFileSync(file, 'utf8');
  if (!src.includes(limit)) throw new Error(`kinesis_large: "${limit}" not in ${file}`);
  const m = new Module(file, null);
  m.filename = file;
  m.paths = Module._nodeModulePaths(path.dirname(file));
  m._compile(src.replace(limit, 'MAX_REQUEST_BYTES = 64 * 1024 * 1024'), file);
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
