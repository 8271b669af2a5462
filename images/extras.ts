// Extra payloads: raw bytes that follow some entries, with lengths derived from the entry's
// fields (pipes-data, fifo-data, sk-queues, tcp-stream, ipcns-sem/msg/shm, bpfmap-data).
import type { Msg } from './codec';
import { decodeMessage, encodeMessage } from './codec';
import type { ByteSource } from './source';
import type { Writer } from './wire';
import type { JsonValue } from './json/parse';
import { encodeBytes, decodeBytes } from './json/b64';
import { pyString } from './json/pytext';
import { messageToJson, Mode } from './json/tojson';
import { jsonToMessage, JsonConvertError } from './json/fromjson';

export type Extra =
  | { kind: 'blob'; data: Uint8Array }
  | { kind: 'tcp'; inq: Uint8Array; outq: Uint8Array }
  | { kind: 'sem'; values: number[] }
  | { kind: 'msgq'; items: { msg: Msg; data: Uint8Array }[] };

export class ExtraError extends Error {
  constructor(message: string, public offset?: number) {
    super(message);
  }
}

export interface ExtraHandler {
  /** Read the extra that follows `msg` in `src`. */
  read(src: ByteSource, msg: Msg): Extra | undefined;
  write(w: Writer, msg: Msg, extra: Extra | undefined): void;
  fromJson(v: JsonValue | undefined, msg: Msg, path: string): Extra | undefined;
  /** Bytes of payload, as `show --nopl` reports them. */
  size(msg: Msg, extra: Extra | undefined): number;
}

function need(src: ByteSource, n: number, what: string): Uint8Array {
  if (src.ensure(n) < n) throw new ExtraError(`${what}: expected ${n} bytes, only ${src.available} left in the file`, src.offset);
  return src.take(n);
}

function skipPad(src: ByteSource, n: number, what: string): void {
  if (n === 0) return;
  if (src.ensure(n) < n) throw new ExtraError(`${what}: padding of ${n} bytes missing`, src.offset);
  src.pos += n;
}

/** `at` is the JSON path of the value itself */
function blobFromJson(v: JsonValue | undefined, at: string): Uint8Array {
  if (v === undefined) return new Uint8Array(0);
  if (typeof v !== 'string') throw new JsonConvertError(at, 'expected a base64 string');
  try {
    return decodeBytes(v);
  } catch (e) {
    throw new JsonConvertError(at, (e as Error).message);
  }
}

function checkLen(path: string, field: string, want: number, got: number): void {
  if (want !== got) throw new JsonConvertError(path + '.extra', `holds ${got} bytes but ${field} says ${want}`);
}

/** A blob whose length is one field of the entry (pipes-data, fifo-data, sk-queues). */
function lengthField(field: string): ExtraHandler {
  return {
    read(src, msg) {
      return { kind: 'blob', data: need(src, Number(msg[field] ?? 0), `extra data (${field})`) };
    },
    write(w, _msg, extra) {
      w.raw(extra && extra.kind === 'blob' ? extra.data : new Uint8Array(0));
    },
    fromJson(v, msg, path) {
      const data = blobFromJson(v, path + '.extra');
      checkLen(path, field, Number(msg[field] ?? 0), data.length);
      return { kind: 'blob', data };
    },
    size(msg) {
      return Number(msg[field] ?? 0);
    },
  };
}

const tcpStream: ExtraHandler = {
  read(src, msg) {
    const inq = need(src, Number(msg.inq_len ?? 0), 'receive queue (inq_len)');
    const outq = need(src, Number(msg.outq_len ?? 0), 'send queue (outq_len)');
    return { kind: 'tcp', inq, outq };
  },
  write(w, _msg, extra) {
    if (extra && extra.kind === 'tcp') { w.raw(extra.inq); w.raw(extra.outq); }
  },
  fromJson(v, msg, path) {
    if (v === undefined) v = Object.create(null) as Record<string, JsonValue>;
    if (v === null || typeof v !== 'object' || Array.isArray(v)) throw new JsonConvertError(path + '.extra', 'expected an object {"inq": ..., "outq": ...}');
    const o = v as Record<string, JsonValue>;
    const inq = blobFromJson(o.inq, path + '.extra.inq');
    const outq = blobFromJson(o.outq, path + '.extra.outq');
    checkLen(path, 'inq_len', Number(msg.inq_len ?? 0), inq.length);
    checkLen(path, 'outq_len', Number(msg.outq_len ?? 0), outq.length);
    return { kind: 'tcp', inq, outq };
  },
  size(msg) {
    return Number(msg.inq_len ?? 0) + Number(msg.outq_len ?? 0);
  },
};

const pad8 = (n: number) => (8 - (n % 8)) % 8;

const ipcSem: ExtraHandler = {
  read(src, msg) {
    const n = Number(msg.nsems ?? 0);
    const raw = need(src, 2 * n, 'semaphore values (nsems)');
    skipPad(src, pad8(2 * n), 'semaphore values');
    const values: number[] = [];
    for (let i = 0; i < n; i++) values.push(raw[2 * i] | (raw[2 * i + 1] << 8));
    return { kind: 'sem', values };
  },
  write(w, _msg, extra) {
    const values = extra && extra.kind === 'sem' ? extra.values : [];
    const n = values.length * 2;
    const b = new Uint8Array(n + pad8(n));
    values.forEach((v, i) => { b[2 * i] = v & 0xff; b[2 * i + 1] = (v >> 8) & 0xff; });
    w.raw(b);
  },
  fromJson(v, msg, path) {
    const n = Number(msg.nsems ?? 0);
    if (v === undefined) v = [];
    if (!Array.isArray(v)) throw new JsonConvertError(path + '.extra', 'expected an array of semaphore values');
    if (v.length !== n) throw new JsonConvertError(path + '.extra', `holds ${v.length} values but nsems says ${n}`);
    const values = v.map((x, i) => {
      const num = typeof x === 'bigint' ? Number(x) : x;
      if (typeof num !== 'number' || !Number.isInteger(num) || num < 0 || num > 0xffff) throw new JsonConvertError(`${path}.extra[${i}]`, 'expected an integer 0..65535');
      return num;
    });
    return { kind: 'sem', values };
  },
  size(msg) {
    return 2 * Number(msg.nsems ?? 0);
  },
};

const ipcMsg: ExtraHandler = {
  read(src, msg) {
    const items: { msg: Msg; data: Uint8Array }[] = [];
    const q = Number(msg.qnum ?? 0);
    for (let i = 0; i < q; i++) {
      const hdr = need(src, 4, `message ${i} size word`);
      const size = (hdr[0] | (hdr[1] << 8) | (hdr[2] << 16) | (hdr[3] << 24)) >>> 0;
      const at = src.offset;
      const payload = need(src, size, `message ${i} header`);
      let m: Msg;
      try {
        m = decodeMessage('ipc_msg', payload);
      } catch (e) {
        throw new ExtraError(`message ${i} header (ipc_msg): ${(e as Error).message}`, at);
      }
      const msize = Number(m.msize ?? 0);
      const data = need(src, msize, `message ${i} data (msize)`);
      skipPad(src, pad8(msize), `message ${i} data`);
      items.push({ msg: m, data });
    }
    return { kind: 'msgq', items };
  },
  write(w, _msg, extra) {
    if (!extra || extra.kind !== 'msgq') return;
    for (const it of extra.items) {
      const p = encodeMessage('ipc_msg', it.msg);
      w.f32(p.length);
      w.raw(p);
      // fromJson made sure the data is exactly msize bytes; CRIU pads it to 8
      w.raw(it.data);
      w.raw(new Uint8Array(pad8(it.data.length)));
    }
  },
  fromJson(v, msg, path) {
    if (v === undefined) v = [];
    if (!Array.isArray(v) || v.length % 2) throw new JsonConvertError(path + '.extra', 'expected [message, data, message, data, ...]');
    const items: { msg: Msg; data: Uint8Array }[] = [];
    const q = Number(msg.qnum ?? 0);
    if (v.length / 2 !== q) throw new JsonConvertError(path + '.extra', `holds ${v.length / 2} messages but qnum says ${q}`);
    for (let i = 0; i < v.length; i += 2) {
      const m = jsonToMessage('ipc_msg', v[i], `${path}.extra[${i}]`);
      const data = blobFromJson(v[i + 1], `${path}.extra[${i + 1}]`);
      // the size is checked against the data before anything is written (no zero-filling)
      if (data.length !== Number(m.msize ?? 0)) throw new JsonConvertError(`${path}.extra[${i + 1}]`, `holds ${data.length} bytes but msize (${path}.extra[${i}].msize) says ${m.msize ?? 0}`);
      items.push({ msg: m, data });
    }
    return { kind: 'msgq', items };
  },
  size(_msg, extra) {
    if (!extra || extra.kind !== 'msgq') return 0;
    return extra.items.reduce((s, it) => s + encodeMessage('ipc_msg', it.msg).length + Number(it.msg.msize ?? 0), 0);
  },
};

// Since 2017 CRIU keeps SysV shm contents in pagemap-shmem-<id> and sets in_pagemaps, writing
// nothing here. Only older images carry `size` bytes padded to 4. (CRIT always reads them.)
const ipcShm: ExtraHandler = {
  read(src, msg) {
    if (msg.in_pagemaps) return { kind: 'blob', data: new Uint8Array(0) };
    const n = Number(msg.size ?? 0);
    const data = need(src, n, 'segment contents (size)');
    skipPad(src, (4 - (n % 4)) % 4, 'segment contents');
    return { kind: 'blob', data };
  },
  write(w, msg, extra) {
    if (msg.in_pagemaps) return;
    const data = extra && extra.kind === 'blob' ? extra.data : new Uint8Array(0);
    w.raw(data);
    w.raw(new Uint8Array((4 - (data.length % 4)) % 4));
  },
  fromJson(v, msg, path) {
    const data = blobFromJson(v, path + '.extra');
    if (msg.in_pagemaps) {
      if (data.length) throw new JsonConvertError(path + '.extra', 'in_pagemaps is set, so the contents live in pagemap-shmem; extra must be empty');
    } else checkLen(path, 'size', Number(msg.size ?? 0), data.length);
    return { kind: 'blob', data };
  },
  size(msg) {
    return msg.in_pagemaps ? 0 : Number(msg.size ?? 0);
  },
};

const bpfmapData: ExtraHandler = {
  read(src, msg) {
    const n = Number(msg.keys_bytes ?? 0) + Number(msg.values_bytes ?? 0);
    return { kind: 'blob', data: need(src, n, 'map keys and values (keys_bytes + values_bytes)') };
  },
  write(w, _msg, extra) {
    if (extra && extra.kind === 'blob') w.raw(extra.data);
  },
  fromJson(v, msg, path) {
    const data = blobFromJson(v, path + '.extra');
    checkLen(path, 'keys_bytes + values_bytes', Number(msg.keys_bytes ?? 0) + Number(msg.values_bytes ?? 0), data.length);
    return { kind: 'blob', data };
  },
  size(msg) {
    return Number(msg.keys_bytes ?? 0) + Number(msg.values_bytes ?? 0);
  },
};

export const EXTRA_HANDLERS: Record<string, ExtraHandler> = {
  PIPES_DATA: lengthField('bytes'),
  FIFO_DATA: lengthField('bytes'),
  SK_QUEUES: lengthField('length'),
  TCP_STREAM: tcpStream,
  IPCNS_SEM: ipcSem,
  IPCNS_MSG: ipcMsg,
  IPCNS_SHM: ipcShm,
  BPFMAP_DATA: bpfmapData,
};

/** JSON text of an extra, placed as the entry's last key "extra". */
export function extraToJson(extra: Extra, mode: Mode, ind: string): string {
  const pretty = mode === 'pretty';
  const in1 = ind + '    ';
  switch (extra.kind) {
    case 'blob':
      return pyString(encodeBytes(extra.data));
    case 'tcp': {
      const a = pyString(encodeBytes(extra.inq));
      const b = pyString(encodeBytes(extra.outq));
      return pretty ? `{\n${in1}"inq": ${a},\n${in1}"outq": ${b}\n${ind}}` : `{"inq": ${a}, "outq": ${b}}`;
    }
    case 'sem':
      if (!extra.values.length) return '[]';
      return pretty ? `[\n${extra.values.map((v) => in1 + v).join(',\n')}\n${ind}]` : `[${extra.values.join(', ')}]`;
    case 'msgq': {
      if (!extra.items.length) return '[]';
      // ipc_msg has no pretty conversions, so its headers read the same in both modes.
      const parts: string[] = [];
      for (const it of extra.items) {
        parts.push(messageToJson('ipc_msg', it.msg, pretty ? 'pretty' : 'plain', in1));
        parts.push(pyString(encodeBytes(it.data)));
      }
      return pretty ? `[\n${parts.map((p) => in1 + p).join(',\n')}\n${ind}]` : `[${parts.join(', ')}]`;
    }
  }
}

/** The "... 1.5KB" text of show --nopl. */
export function nicePayloadSize(n: number): string {
  const units = ['', 'K', 'M', 'G', 'T', 'P', 'E', 'Z'];
  let v = n;
  let i = 0;
  while (v >= 1024 && i < units.length) { v /= 1024; i++; }
  const u = i < units.length ? units[i] : 'Y';
  return Number.isInteger(v) ? `${v}${u}B` : `${v.toFixed(1)}${u}B`;
}
