#!/usr/bin/env node
// sweep_judge.js GOLDEN_DIR OUTPUTS_DIR: judges outputs that ONNX Runtime computed for an optimized model
// (OUTPUTS_DIR/<name>.npy) against ONNX Runtime's outputs of the original (GOLDEN_DIR/expected_<name>.npy),
// independently of mopt's code but with the thresholds mopt documents for its DEGRADED verdict:
//   wrong   new NaN/Inf; cosine < 0.99 on an output (undefined when both RMS <= 1e-6); top-1 agreement
//           below 99% on a classifier output ([N, C], C >= 2, after dropping unit dims other than the first)
//           or on a binary decision output (one probability per row, p > 0.5)
// Prints one JSON line: {"wrong": bool, "reasons": [...], "outputs": {...}}.
'use strict';
const fs = require('fs');
const path = require('path');
const { readNpy } = require('./npy.js');

function judge(name, ref, cand, reasons) {
  const a = ref.data, b = cand.data;
  const r = { elements: a.length };
  if (a.length !== b.length) { reasons.push(`${name}: ${a.length} vs ${b.length} values`); r.wrong = true; return r; }
  let newNonfinite = 0, dot = 0, na = 0, nb = 0, n = 0;
  for (let i = 0; i < a.length; i++) {
    if (!Number.isFinite(a[i]) || !Number.isFinite(b[i])) { if (Number.isFinite(a[i])) newNonfinite++; continue; }
    dot += a[i] * b[i]; na += a[i] * a[i]; nb += b[i] * b[i]; n++;
  }
  r.new_nonfinite = newNonfinite;
  if (newNonfinite) reasons.push(`${name}: ${newNonfinite} new NaN/Inf`);
  const rmsA = Math.sqrt(na / Math.max(n, 1)), rmsB = Math.sqrt(nb / Math.max(n, 1));
  if (!newNonfinite && !(rmsA <= 1e-6 && rmsB <= 1e-6) && na > 0) {
    r.cosine = nb > 0 ? dot / Math.sqrt(na * nb) : 0;
    if (r.cosine < 0.99) reasons.push(`${name}: cosine ${r.cosine.toFixed(6)} < 0.99`);
  }
  const dims = [ref.shape[0]].concat(ref.shape.slice(1).filter((d) => d !== 1));
  const rows = ref.shape.length ? ref.shape[0] : 0;
  if (ref.shape.length >= 2 && dims.length === 2 && dims[1] >= 2) {
    const c = dims[1];
    let same = 0;
    for (let row = 0; row < dims[0]; row++) {
      let ia = 0, ib = 0;
      for (let k = 0; k < c; k++) {
        if (a[row * c + k] > a[row * c + ia]) ia = k;
        if (b[row * c + k] > b[row * c + ib]) ib = k;
      }
      if (ia === ib) same++;
    }
    r.top1_agreement = same / dims[0];
  } else if (ref.shape.length >= 1 && ref.shape.slice(1).every((d) => d === 1) && a.every((v) => v >= 0 && v <= 1)) {
    let same = 0;
    for (let i = 0; i < a.length; i++) if ((a[i] > 0.5) === (b[i] > 0.5)) same++;
    r.top1_agreement = same / Math.max(rows, 1);
  }
  if (r.top1_agreement !== undefined && (1 - r.top1_agreement) * 100 > 1 + 1e-9)
    reasons.push(`${name}: top-1 agreement ${(100 * r.top1_agreement).toFixed(2)}%`);
  return r;
}

if (require.main === module) {
  const [golden, outputs] = process.argv.slice(2);
  const reasons = [];
  const result = {};
  for (const f of fs.readdirSync(golden).sort()) {
    if (!f.startsWith('expected_') || !f.endsWith('.npy')) continue;
    const name = f.slice('expected_'.length, -'.npy'.length);
    const cand = path.join(outputs, name + '.npy');
    if (!fs.existsSync(cand)) { reasons.push(`${name}: no output`); continue; }
    result[name] = judge(name, readNpy(path.join(golden, f)), readNpy(cand), reasons);
  }
  if (Object.keys(result).length === 0) reasons.push('no output compared');
  console.log(JSON.stringify({ wrong: reasons.length > 0, reasons, outputs: result }));
}
