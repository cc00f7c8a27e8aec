// SPDX-License-Identifier: MIT
// validate.mjs — validates rendered Kubernetes objects offline against the
// Kubernetes (and Prometheus Operator) OpenAPI schemas of the npm packages
// kubernetes-models and @kubernetes-models/prometheus-operator.
// Usage: node validate.mjs OBJECTS.json   (a JSON array of objects)
// Prints one line per object; exits 1 if any object is invalid or of a kind
// no package knows (an unknown kind is an error, not a skip).
import fs from 'node:fs';

async function modelFor(obj) {
  const [group, version] = obj.apiVersion.includes('/')
    ? obj.apiVersion.split('/') : ['', obj.apiVersion];
  const spec = group === 'monitoring.coreos.com'
    ? `@kubernetes-models/prometheus-operator/${group}/${version}/${obj.kind}`
    : `kubernetes-models/${group ? group + '/' : ''}${version}/${obj.kind}`;
  try {
    const m = await import(spec);
    return m[obj.kind] || null;
  } catch (e) {
    if (e.code === 'ERR_MODULE_NOT_FOUND' || e.code === 'ERR_PACKAGE_PATH_NOT_EXPORTED') return null;
    throw e;
  }
}

const objs = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
let bad = 0;
for (const obj of objs) {
  const name = `${obj.kind} ${obj.metadata && obj.metadata.name}`;
  const Model = await modelFor(obj);
  if (!Model) {
    console.log(`UNKNOWN ${name} (${obj.apiVersion})`);
    bad++;
    continue;
  }
  try {
    new Model(obj).validate();
    console.log(`ok ${name}`);
  } catch (e) {
    console.log(`INVALID ${name}: ${e.message}`);
    bad++;
  }
}
console.log(`${objs.length} objects, ${bad} invalid`);
process.exit(bad ? 1 : 0);
