/**
 * Builds ONNX model bytes in code: a minimal protobuf writer for the few messages a one-node
 * (or few-node) graph needs, so the benchmark needs no onnx package and no model files.
 * Field numbers are those of onnx/onnx.proto (ModelProto, GraphProto, NodeProto, ...).
 */

const WIRE_VARINT = 0;
const WIRE_BYTES = 2;
const WIRE_FIXED32 = 5;

/** ONNX TensorProto.DataType codes of the element types the benchmark uses. */
export const ONNX_TYPE = { float32: 1, float64: 11, int64: 7 };

const ATTRIBUTE_TYPE = { float: 1, int: 2, ints: 7 };

/** Accumulates protobuf fields of one message. */
class Message {
  constructor() {
    /** @type {number[]} */
    this.bytes = [];
  }

  varint(value) {
    let v = BigInt(value);
    if (v < 0n) v += 1n << 64n; // negative int64 as ten-byte two's complement
    do {
      let byte = Number(v & 0x7fn);
      v >>= 7n;
      if (v !== 0n) byte |= 0x80;
      this.bytes.push(byte);
    } while (v !== 0n);
    return this;
  }

  key(field, wire) {
    return this.varint((field << 3) | wire);
  }

  int(field, value) {
    return this.key(field, WIRE_VARINT).varint(value);
  }

  float(field, value) {
    const b = new Uint8Array(new Float32Array([value]).buffer);
    this.key(field, WIRE_FIXED32).bytes.push(...b);
    return this;
  }

  raw(field, data) {
    this.key(field, WIRE_BYTES).varint(data.length);
    for (let i = 0; i < data.length; i++) this.bytes.push(data[i]);
    return this;
  }

  string(field, text) {
    return this.raw(field, new TextEncoder().encode(text));
  }

  message(field, msg) {
    return this.raw(field, msg.bytes);
  }

  finish() {
    return new Uint8Array(this.bytes);
  }
}

/**
 * One graph node. `attributes` maps a name to a number (float unless listed in `ints`),
 * an integer given as { int: n }, or an integer list given as an array.
 */
export function node(opType, inputs, outputs, attributes = {}, domain = '') {
  return { opType, inputs, outputs, attributes, domain };
}

function nodeProto({ opType, inputs, outputs, attributes, domain = '' }, index) {
  const m = new Message();
  for (const name of inputs) m.string(1, name);
  for (const name of outputs) m.string(2, name);
  m.string(3, `${opType}_${index}`);
  m.string(4, opType);
  if (domain) m.string(7, domain);
  for (const [name, value] of Object.entries(attributes)) {
    const a = new Message().string(1, name);
    if (Array.isArray(value)) {
      for (const v of value) a.int(8, v);
      a.int(20, ATTRIBUTE_TYPE.ints);
    } else if (typeof value === 'object') {
      a.int(3, value.int).int(20, ATTRIBUTE_TYPE.int);
    } else {
      a.float(2, value).int(20, ATTRIBUTE_TYPE.float);
    }
    m.message(5, a);
  }
  return m;
}

function valueInfo(name, dtype, dims) {
  const shape = new Message();
  for (const d of dims) shape.message(1, new Message().int(1, d));
  const tensorType = new Message().int(1, ONNX_TYPE[dtype]).message(2, shape);
  return new Message().string(1, name).message(2, new Message().message(1, tensorType));
}

function initializer(name, values, dims) {
  const dtype = values instanceof Float64Array ? 'float64' : 'float32';
  const m = new Message();
  for (const d of dims) m.int(1, d);
  m.int(2, ONNX_TYPE[dtype]).string(8, name);
  // raw_data is little-endian, as typed arrays are on every platform the benchmark runs on.
  return m.raw(9, new Uint8Array(values.buffer, values.byteOffset, values.byteLength));
}

/** The lowest IR version an opset needs (onnx/helper.py's VERSION_TABLE); at least 8. */
function irVersionFor(opset) {
  if (opset >= 23) return 11;
  if (opset >= 21) return 10;
  if (opset >= 19) return 9;
  return 8; // ONNX 1.10+, accepted by every supported onnxruntime
}

/**
 * The bytes of a model: `inputs`/`outputs` are { name, dtype, dims }, `initializers` are
 * { name, values: Float32Array | Float64Array, dims } (constants baked into the model).
 * `opset` is the default (ai.onnx) domain's version; `domains` adds other opset imports, e.g.
 * { 'com.microsoft': 1 } (a node names its domain in `node`'s 5th argument).
 */
export function onnxModel({ nodes, inputs, outputs, initializers = [], opset = 15, domains = {} }) {
  const graph = new Message();
  nodes.forEach((n, i) => graph.message(1, nodeProto(n, i)));
  graph.string(2, 'simdnorm_bench');
  for (const t of initializers) graph.message(5, initializer(t.name, t.values, t.dims));
  for (const v of inputs) graph.message(11, valueInfo(v.name, v.dtype, v.dims));
  for (const v of outputs) graph.message(12, valueInfo(v.name, v.dtype, v.dims));
  const model = new Message()
    .int(1, irVersionFor(opset))
    .string(2, 'simdnorm-bench')
    .message(7, graph)
    .message(8, new Message().string(1, '').int(2, opset));
  for (const [domain, version] of Object.entries(domains)) model.message(8, new Message().string(1, domain).int(2, version));
  return model.finish();
}
