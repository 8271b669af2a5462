// The CRIU image schema at run time: messages and enums compiled from images/proto by
// scripts/gen-schema.js. Field lists are in field-number order, which is also the order
// of keys in CRIT's JSON and of fields on the wire.
import schemaJson from './generated/schema.json';

export type ScalarType =
  | 'uint32' | 'int32' | 'sint32' | 'uint64' | 'int64' | 'sint64' | 'fixed64'
  | 'fixed32' | 'sfixed32' | 'sfixed64' | 'bool' | 'string' | 'bytes' | 'double' | 'float';

export interface FieldOpts {
  hex?: boolean;
  ipadd?: boolean;
  flags?: string;
  dev?: boolean;
  odev?: boolean;
  dict?: string;
  conv?: string;
}

export interface FieldDesc {
  no: number;
  name: string;
  kind: 'scalar' | 'enum' | 'message';
  type: string;
  label: 'required' | 'optional' | 'repeated';
  opts?: FieldOpts;
}

export interface MessageDesc {
  name: string;
  fields: FieldDesc[];
  byName: Map<string, FieldDesc>;
  byNo: Map<number, FieldDesc>;
}

export interface EnumDesc {
  name: string;
  byName: Map<string, number>;
  byValue: Map<number, string>;
}

interface RawSchema {
  files: number;
  messages: Record<string, { fields: FieldDesc[] }>;
  enums: Record<string, Record<string, number>>;
}

const raw = schemaJson as unknown as RawSchema;
const messages = new Map<string, MessageDesc>();
const enums = new Map<string, EnumDesc>();

export function messageType(name: string): MessageDesc {
  let m = messages.get(name);
  if (m) return m;
  const r = raw.messages[name];
  if (!r) throw new Error(`unknown message type ${name}`);
  m = {
    name,
    fields: r.fields,
    byName: new Map(r.fields.map((f) => [f.name, f])),
    byNo: new Map(r.fields.map((f) => [f.no, f])),
  };
  messages.set(name, m);
  return m;
}

export function enumType(name: string): EnumDesc {
  let e = enums.get(name);
  if (e) return e;
  const r = raw.enums[name];
  if (!r) throw new Error(`unknown enum type ${name}`);
  const byValue = new Map<number, string>();
  // Python's protobuf names a value by the first name declared for it.
  for (const [k, v] of Object.entries(r)) if (!byValue.has(v)) byValue.set(v, k);
  e = { name, byName: new Map(Object.entries(r)), byValue };
  enums.set(name, e);
  return e;
}

export function allMessageNames(): string[] {
  return Object.keys(raw.messages);
}

export function is64(type: string): boolean {
  return type === 'uint64' || type === 'int64' || type === 'sint64' || type === 'fixed64' || type === 'sfixed64';
}

