#!/usr/bin/env node
// npy_diff.js DIR_A DIR_B [PREFIX_A]: for every A/<PREFIX_A><name>.npy with a B/<name>.npy, prints one line
// "name cosine max_abs max_rel_to_rms nonfinite_a nonfinite_b": how far two runs of a model (mopt's executor
// and ONNX Runtime, or a model and its optimized copy) are apart, elementwise.
'use strict';
const fs = require('fs');
const path = require('path');
const { readNpy } = require('./npy.js');

const [dirA, dirB, prefix = ''] = process.argv.slice(2);
for (const f of fs.readdirSync(dirA).sort()) {
  if (!f.startsWith(prefix) || !f.endsWith('.npy')) continue;
  const name = f.slice(prefix.length, -'.npy'.length);
  const other = path.join(dirB, name + '.npy');
  if (!fs.existsSync(other)) { console.log(`${name} missing-in-b`); continue; }
  const a = readNpy(path.join(dirA, f)).data, b = readNpy(other).data;
  if (a.length !== b.length) { console.log(`${name} size ${a.length} vs ${b.length}`); continue; }
  let dot = 0, na = 0, nb = 0, maxAbs = 0, badA = 0, badB = 0;
  for (let i = 0; i < a.length; i++) {
    if (!Number.isFinite(a[i])) badA++;
    if (!Number.isFinite(b[i])) badB++;
    if (!Number.isFinite(a[i]) || !Number.isFinite(b[i])) continue;
    dot += a[i] * b[i]; na += a[i] * a[i]; nb += b[i] * b[i];
    maxAbs = Math.max(maxAbs, Math.abs(a[i] - b[i]));
  }
  const cos = na > 0 && nb > 0 ? dot / Math.sqrt(na * nb) : (na === nb ? 1 : 0);
  const rms = Math.sqrt(na / Math.max(a.length, 1));
  console.log(`${name} ${cos.toFixed(7)} ${maxAbs.toExponential(3)} ${(rms > 0 ? maxAbs / rms : 0).toExponential(3)} ${badA} ${badB}`);
}
