// The few ONNX protobuf messages an exported model needs, encoded by hand (no protobuf library). Field numbers are
// those of onnx.proto (IR version 8); only what charlm writes is here:
//
//   ModelProto       1 ir_version, 2 producer_name, 3 producer_version, 7 graph, 8 opset_import
//   OperatorSetId    1 domain, 2 version
//   GraphProto       1 node, 2 name, 5 initializer, 11 input, 12 output
//   NodeProto        1 input, 2 output, 3 name, 4 op_type, 5 attribute
//   AttributeProto   1 name, 2 f, 3 i, 7 floats, 8 ints, 20 type (FLOAT 1, INT 2, FLOATS 6, INTS 7)
//   TensorProto      1 dims, 2 data_type (FLOAT 1, INT64 7), 8 name, 9 raw_data (little-endian)
//   ValueInfoProto   1 name, 2 type;  TypeProto 1 tensor_type;  TypeProto.Tensor 1 elem_type, 2 shape;
//   TensorShapeProto 1 dim;  Dimension 1 dim_value, 2 dim_param
//
// Protobuf wire format: each field is a varint key (field << 3 | wire type) then the value: wire type 0 a varint,
// 2 a varint length then bytes (strings, sub-messages, packed numbers), 5 four little-endian bytes (float).

/** A protobuf message being written: append fields in any order, then `bytes()`. */
export class Message {
  private readonly chunks: Uint8Array[] = [];

  private key(field: number, wire: number): void {
    this.raw(varint(BigInt(field * 8 + wire)));
  }

  private raw(b: Uint8Array): void {
    this.chunks.push(b);
  }

  int(field: number, value: number | bigint): this {
    this.key(field, 0);
    this.raw(varint(BigInt.asUintN(64, BigInt(value)))); // negative int64: ten bytes, two's complement
    return this;
  }

  float(field: number, value: number): this {
    this.key(field, 5);
    const b = new Uint8Array(4);
    new DataView(b.buffer).setFloat32(0, value, true);
    this.raw(b);
    return this;
  }

  blob(field: number, value: Uint8Array): this {
    this.key(field, 2);
    this.raw(varint(BigInt(value.length)));
    this.raw(value);
    return this;
  }

  string(field: number, value: string): this {
    return this.blob(field, new TextEncoder().encode(value));
  }

  message(field: number, m: Message): this {
    return this.blob(field, m.bytes());
  }

  /** Repeated integers, packed (one length-delimited field of varints). */
  ints(field: number, values: readonly number[]): this {
    const parts = values.map((v) => varint(BigInt.asUintN(64, BigInt(v))));
    return this.blob(field, concat(parts));
  }

  /** Repeated floats, packed. */
  floats(field: number, values: readonly number[]): this {
    const b = new Uint8Array(4 * values.length);
    const view = new DataView(b.buffer);
    values.forEach((v, i) => view.setFloat32(4 * i, v, true));
    return this.blob(field, b);
  }

  bytes(): Uint8Array {
    return concat(this.chunks);
  }
}

function varint(v: bigint): Uint8Array {
  const out: number[] = [];
  do {
    let byte = Number(v & 0x7fn);
    v >>= 7n;
    if (v) byte |= 0x80;
    out.push(byte);
  } while (v);
  return Uint8Array.from(out);
}

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

export const FLOAT = 1;
export const INT64 = 7;

/** A constant tensor (an initializer): FLOAT from a Float32Array, INT64 from whole numbers. */
export function tensor(name: string, dims: readonly number[], data: Float32Array | readonly number[]): Message {
  const t = new Message().ints(1, dims);
  if (data instanceof Float32Array) {
    t.int(2, FLOAT).string(8, name);
    const raw = new Uint8Array(data.length * 4);
    const view = new DataView(raw.buffer);
    data.forEach((v, i) => view.setFloat32(4 * i, v, true));
    return t.blob(9, raw);
  }
  t.int(2, INT64).string(8, name);
  const raw = new Uint8Array(data.length * 8);
  const view = new DataView(raw.buffer);
  data.forEach((v, i) => view.setBigInt64(8 * i, BigInt(v), true));
  return t.blob(9, raw);
}

export type Attr = number | number[] | { float: number } | { floats: number[] };

/** A graph node: op_type, inputs, outputs ("" for an absent optional input), attributes by name. */
export function node(op: string, inputs: string[], outputs: string[], attrs: Record<string, Attr> = {}): Message {
  const n = new Message();
  for (const i of inputs) n.string(1, i);
  for (const o of outputs) n.string(2, o);
  n.string(3, `${op}_${outputs[0]}`).string(4, op);
  for (const [name, v] of Object.entries(attrs)) {
    const a = new Message().string(1, name);
    if (typeof v === "number") a.int(3, v).int(20, 2);
    else if (Array.isArray(v)) a.ints(8, v).int(20, 7);
    else if ("float" in v) a.float(2, v.float).int(20, 1);
    else a.floats(7, v.floats).int(20, 6);
    n.message(5, a);
  }
  return n;
}

/** A graph input or output: its element type and dims, a string for a dimension named at run time. */
export function valueInfo(name: string, elemType: number, dims: (number | string)[]): Message {
  const shape = new Message();
  for (const d of dims) shape.message(1, typeof d === "number" ? new Message().int(1, d) : new Message().string(2, d));
  const tensorType = new Message().int(1, elemType).message(2, shape);
  return new Message().string(1, name).message(2, new Message().message(1, tensorType));
}

/** The whole model file. */
export function model(
  graphName: string,
  nodes: Message[],
  initializers: Message[],
  inputs: Message[],
  outputs: Message[],
  opset: number,
): Uint8Array {
  const graph = new Message();
  for (const n of nodes) graph.message(1, n);
  graph.string(2, graphName);
  for (const t of initializers) graph.message(5, t);
  for (const i of inputs) graph.message(11, i);
  for (const o of outputs) graph.message(12, o);
  return new Message()
    .int(1, 8)
    .string(2, "charlm")
    .string(3, "0.1.0")
    .message(7, graph)
    .message(8, new Message().string(1, "").int(2, opset))
    .bytes();
}
