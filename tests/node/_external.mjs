// Moves the raw_data of every initializer of an ONNX model into one
// external-data file (what transformers.js loads with
// use_external_data_format), by rewriting the protobuf: ModelProto.graph (7)
// → GraphProto.initializer (5) → TensorProto.raw_data (9) becomes
// external_data (13) entries and data_location (14) = EXTERNAL.
import { readFileSync, writeFileSync } from "node:fs";

function readVarint(bytes, at) {
  let value = 0;
  for (let shift = 0;; shift += 7) {
    const b = bytes[at++];
    value += (b & 0x7f) * 2 ** shift;
    if (b < 0x80) return [value, at];
  }
}

function varint(n) {
  const out = [];
  for (; n > 0x7f; n = Math.floor(n / 128)) out.push((n % 128) | 0x80);
  out.push(n);
  return out;
}

/** Top-level fields of a message: number, wire type, whole bytes, and the body of length-delimited ones. */
function fieldsOf(bytes) {
  const fields = [];
  for (let at = 0; at < bytes.length;) {
    const start = at;
    let key;
    [key, at] = readVarint(bytes, at);
    const wire = key & 7;
    let body;
    if (wire === 0) at = readVarint(bytes, at)[1];
    else if (wire === 1) at += 8;
    else if (wire === 5) at += 4;
    else {
      let length;
      [length, at] = readVarint(bytes, at);
      body = bytes.subarray(at, at + length);
      at += length;
    }
    fields.push({ number: key >>> 3, raw: bytes.subarray(start, at), body });
  }
  return fields;
}

const delimited = (number, body) => [...varint((number << 3) | 2), ...varint(body.length), ...body];
const text = (s) => [...new TextEncoder().encode(s)];
const entry = (k, v) => delimited(13, [...delimited(1, text(k)), ...delimited(2, text(v))]);

/** Rewrites `<dir>/onnx/model.onnx` to read its weights from `<dir>/onnx/model.onnx_data`. */
export function externalizeWeights(dir) {
  const data = [];
  const model = [];
  for (const top of fieldsOf(readFileSync(`${dir}/onnx/model.onnx`))) {
    if (top.number !== 7) {
      model.push(...top.raw);
      continue;
    }
    const graph = [];
    for (const g of fieldsOf(top.body)) {
      if (g.number !== 5) {
        graph.push(...g.raw);
        continue;
      }
      const tensor = [];
      for (const f of fieldsOf(g.body)) {
        if (f.number !== 9) {
          tensor.push(...f.raw);
          continue;
        }
        const offset = data.length;
        for (const b of f.body) data.push(b);
        tensor.push(
          ...entry("location", "model.onnx_data"),
          ...entry("offset", String(offset)),
          ...entry("length", String(f.body.length)),
          ...varint(14 << 3),
          1,
        );
      }
      graph.push(...delimited(5, tensor));
    }
    model.push(...delimited(7, graph));
  }
  writeFileSync(`${dir}/onnx/model.onnx`, Uint8Array.from(model));
  writeFileSync(`${dir}/onnx/model.onnx_data`, Uint8Array.from(data));
}
