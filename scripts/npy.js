// Minimal .npy reading and writing for the Node.js scripts that check mopt against ONNX Runtime
// (little-endian float16/32/64, int8/32/64, uint8 and bool; C order).
'use strict';
const fs = require('fs');

function halfToNumber(h) {
  const s = h & 0x8000 ? -1 : 1, e = (h >> 10) & 0x1f, f = h & 0x3ff;
  if (e === 0) return s * Math.pow(2, -14) * (f / 1024);
  if (e === 31) return f ? NaN : s * Infinity;
  return s * Math.pow(2, e - 15) * (1 + f / 1024);
}

// {shape, data}: data as an Array of numbers.
function readNpy(file) {
  const buf = fs.readFileSync(file);
  const major = buf[6];  // format version: 1 has a 2-byte header length, 2 and 3 a 4-byte one
  const hl = major === 1 ? buf.readUInt16LE(8) : buf.readUInt32LE(8);
  const start = major === 1 ? 10 + hl : 12 + hl;
  const header = buf.toString('latin1', major === 1 ? 10 : 12, start);
  const descr = /'descr':\s*'([^']+)'/.exec(header)[1];
  const shapeText = /'shape':\s*\(([^)]*)\)/.exec(header)[1];
  const shape = shapeText.split(',').map((s) => s.trim()).filter((s) => s.length).map(Number);
  const body = buf.subarray(start);
  const ab = body.buffer.slice(body.byteOffset, body.byteOffset + body.byteLength);
  let data;
  switch (descr) {
    case '<f4': data = Array.from(new Float32Array(ab)); break;
    case '<f8': data = Array.from(new Float64Array(ab)); break;
    case '<i8': data = Array.from(new BigInt64Array(ab), Number); break;
    case '<i4': data = Array.from(new Int32Array(ab)); break;
    case '|u1': case '|b1': data = Array.from(new Uint8Array(ab)); break;
    case '|i1': data = Array.from(new Int8Array(ab)); break;
    case '<f2': data = Array.from(new Uint16Array(ab), halfToNumber); break;
    default: throw new Error(`${file}: unsupported dtype ${descr}`);
  }
  return { shape, data };
}

// Writes a TypedArray (Float32Array, Uint16Array holding float16 bits with descr '<f2', ...) as .npy.
function writeNpy(file, descr, shape, typed) {
  const dims = shape.length === 1 ? `${shape[0]},` : shape.join(', ');
  let header = `{'descr': '${descr}', 'fortran_order': False, 'shape': (${dims}), }`;
  header += ' '.repeat((64 - ((10 + header.length + 1) % 64)) % 64) + '\n';
  const pre = Buffer.alloc(10);
  pre.write('\x93NUMPY', 0, 'latin1');
  pre[6] = 1; pre[7] = 0;
  pre.writeUInt16LE(header.length, 8);
  fs.writeFileSync(file, Buffer.concat([pre, Buffer.from(header, 'latin1'), Buffer.from(typed.buffer, typed.byteOffset, typed.byteLength)]));
}

module.exports = { readNpy, writeNpy, halfToNumber };
