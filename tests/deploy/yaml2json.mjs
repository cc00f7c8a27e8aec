// SPDX-License-Identifier: MIT
// yaml2json.mjs — multi-document YAML on stdin (helm template's output) to
// a JSON array of the non-empty documents on stdout, with the npm package
// yaml, so that the Python tests need no YAML library.
import fs from 'node:fs';
import { parseAllDocuments } from 'yaml';

const docs = parseAllDocuments(fs.readFileSync(0, 'utf8'));
const out = [];
for (const d of docs) {
  if (d.errors.length) {
    console.error(d.errors.map(String).join('\n'));
    process.exit(1);
  }
  const v = d.toJS();
  if (v) out.push(v);
}
process.stdout.write(JSON.stringify(out));
