// Explorers CRIT does not have: sockets with addresses and queues, the process tree with
// argv/env read from memory, and amdgpu buffer objects with their GPU mappings.
import { ImageSet } from '../imageset';
import type { Msg } from '../codec';
import { enumType } from '../schema';
import { ipString, VALUE_DICTS, TASK_STATES } from '../json/dicts';
import { psRows } from './explore';

export interface SocketRow {
  fd: number;
  type: string;
  id: number;
  summary: string;
  detail: Record<string, unknown>;
}

/** A socket name for people: printable ASCII as is, anything else as \xNN. */
export function printable(b: Uint8Array): string {
  let s = '';
  for (const c of b) s += c >= 0x20 && c < 0x7f && c !== 0x5c ? String.fromCharCode(c) : c === 0x5c ? '\\\\' : '\\x' + c.toString(16).padStart(2, '0');
  return s;
}

/** States CRIT's dictionary leaves out (its JSON must keep printing the numbers) but a person reads. */
const MORE_STATES: Record<number, string> = { 11: 'closing', 12: 'new_syn_recv', 13: 'bound_inactive' };

function label(dictField: string, v: number): string {
  const t = VALUE_DICTS.sk[dictField];
  const hit = t && t.find(([n]) => n === v);
  if (!hit && dictField === 'state' && MORE_STATES[v]) return MORE_STATES[v];
  return hit ? hit[1].toLowerCase() : String(v);
}

/** Packets queued on each socket id (sk-queues.img): count and bytes. */
export function socketQueues(set: ImageSet): Map<number, { packets: number; bytes: number }> {
  const q = new Map<number, { packets: number; bytes: number }>();
  for (const e of set.tryImage('sk-queues.img')?.entries || []) {
    const id = Number(e.msg.id_for);
    const cur = q.get(id) || { packets: 0, bytes: 0 };
    cur.packets++;
    cur.bytes += Number(e.msg.length);
    q.set(id, cur);
  }
  return q;
}

function addr(words: (number | bigint)[] | undefined, port: number | undefined): string {
  if (!words || !words.length) return `*:${port ?? 0}`;
  // other than 1 or 4 words is no address (a damaged image): show the numbers rather than fail the listing
  if (words.length !== 1 && words.length !== 4) return `?[${words.join(',')}]:${port}`;
  const a = ipString(words);
  return words.length === 1 ? `${a}:${port}` : `[${a}]:${port}`;
}

export function describeSocket(set: ImageSet, type: string, id: number, queues: Map<number, { packets: number; bytes: number }>): { summary: string; detail: Record<string, unknown> } {
  const f = set.file(id);
  const q = queues.get(id);
  const queued = q ? `, ${q.bytes} bytes queued in ${q.packets} packet${q.packets === 1 ? '' : 's'}` : '';
  if (type === 'UNIXSK' && f?.usk) {
    const u = f.usk;
    const name: Uint8Array = u.name || new Uint8Array(0);
    const nm = name.length ? (name[0] === 0 ? `@${printable(name.subarray(1))}` : printable(name[name.length - 1] === 0 ? name.subarray(0, -1) : name)) : '';
    const summary = `unix ${label('type', Number(u.type))} ${label('state', Number(u.state))}${nm ? ' ' + nm : ''} ino ${u.ino} peer ${u.peer}${queued}`;
    return { summary, detail: { family: 'unix', type: label('type', Number(u.type)), state: label('state', Number(u.state)), name: nm || undefined, ino: u.ino, peer: u.peer, queued_packets: q?.packets ?? 0, queued_bytes: q?.bytes ?? 0 } };
  }
  if (type === 'INETSK' && f?.isk) {
    const s = f.isk;
    const fam = label('family', Number(s.family));
    const proto = label('proto', Number(s.proto));
    let tcpq = '';
    const ts = set.tryImage(`tcp-stream-${Number(s.ino).toString(16)}.img`)?.entries[0]?.msg;
    if (ts) tcpq = `, inq ${ts.inq_len} outq ${ts.outq_len} bytes`;
    const summary = `${proto} ${fam} ${label('state', Number(s.state))} ${addr(s.src_addr, s.src_port)} -> ${addr(s.dst_addr, s.dst_port)} ino ${s.ino}${tcpq}${queued}`;
    return { summary, detail: { family: fam, proto, type: label('type', Number(s.type)), state: label('state', Number(s.state)), src: addr(s.src_addr, s.src_port), dst: addr(s.dst_addr, s.dst_port), ino: s.ino, inq: ts?.inq_len, outq: ts?.outq_len } };
  }
  if (type === 'PACKETSK' && f?.psk) return { summary: `packet proto ${f.psk.protocol} ifindex ${f.psk.ifindex}`, detail: { family: 'packet', protocol: f.psk.protocol } };
  if (type === 'NETLINKSK' && f?.nlsk) return { summary: `netlink protocol ${f.nlsk.protocol} portid ${f.nlsk.portid}`, detail: { family: 'netlink', protocol: f.nlsk.protocol } };
  return { summary: `${type}.${id}`, detail: {} };
}

const SOCKET_TYPES = new Set(['UNIXSK', 'INETSK', 'PACKETSK', 'NETLINKSK']);

export function socketRows(set: ImageSet): { pid: number; sockets: SocketRow[] }[] {
  const queues = socketQueues(set);
  const fdTypes = enumType('fd_types');
  return set.tasks().filter((t) => set.has(`ids-${t.pid}.img`)).map((t) => {
    const sockets: SocketRow[] = [];
    for (const e of set.fdinfo(t.pid)) {
      const type = fdTypes.byValue.get(Number(e.type)) ?? String(e.type);
      if (!SOCKET_TYPES.has(type)) continue;
      const d = describeSocket(set, type, Number(e.id), queues);
      sockets.push({ fd: Number(e.fd), type, id: Number(e.id), ...d });
    }
    return { pid: t.pid, sockets };
  });
}

export interface TreeRow {
  pid: number;
  ppid: number;
  pgid: number;
  sid: number;
  comm: string;
  state: string;
  depth: number;
  threads: number[];
  session_leader: boolean;
  group_leader: boolean;
  argv?: string[];
  env?: string[];
  memoryNote?: string;
}

function nulStrings(b: Uint8Array): string[] {
  const s = Buffer.from(b).toString('utf8');
  const parts = s.split('\0');
  if (parts.length && parts[parts.length - 1] === '') parts.pop();
  return parts;
}

/** The process tree with CRIU's real task states and argv/env read from the dumped memory. */
export function treeRows(set: ImageSet): TreeRow[] {
  return psRows(set).map((r) => {
    const row: TreeRow = {
      pid: r.pid, ppid: r.ppid, pgid: r.pgid, sid: r.sid, comm: r.comm, depth: r.depth, threads: r.threads,
      state: r.state !== undefined ? TASK_STATES[r.state] ?? String(r.state) : 'unknown',
      session_leader: r.pid === r.sid, group_leader: r.pid === r.pgid,
    };
    if (!set.has(`mm-${r.pid}.img`)) {
      row.memoryNote = row.state === 'zombie' ? 'zombie: no memory' : 'no mm image';
      return row;
    }
    try {
      const mm = set.mm(r.pid);
      const mem = set.memory(r.pid);
      const read = (a: unknown, b: unknown) => nulStrings(mem.readBytes(BigInt(a as number), Number(BigInt(b as number) - BigInt(a as number))));
      row.argv = read(mm.mm_arg_start, mm.mm_arg_end);
      row.env = read(mm.mm_env_start, mm.mm_env_end);
    } catch (e) {
      row.memoryNote = `argv/env not readable: ${(e as Error).message}`;
    }
    return row;
  });
}

export interface GpuMapping { addr: bigint | number; size: bigint | number; offset: bigint | number; flags: bigint | number }
export interface GpuBo {
  index: number;
  handle: number;
  size: bigint | number;
  addr: bigint | number;
  domains: string;
  imported: boolean;
  mappings: GpuMapping[];
  /** where the contents are: a file (and offset), or why there are none */
  contents: string;
  contentFile?: string;
  contentOffset?: number;
}
export interface GpuFile { file: string; kind: 'render node' | 'kfd' | 'dmabuf'; gpuId?: number; renderMinor?: number; bos: GpuBo[] }

const DOMAINS: [string, number][] = [['CPU', 0x1], ['GTT', 0x2], ['VRAM', 0x4], ['GDS', 0x8], ['GWS', 0x10], ['OA', 0x20], ['DOORBELL', 0x40], ['MMIO_REMAP', 0x80]];

function domainNames(v: number): string {
  const n = DOMAINS.filter(([, b]) => v & b).map(([k]) => k);
  return n.length ? n.join('|') : '0';
}

export function gpuRows(set: ImageSet): GpuFile[] {
  const out: GpuFile[] = [];
  for (const name of set.names()) {
    let m: RegExpExecArray | null;
    if ((m = /^amdgpu-renderD-(\d+)\.img$/.exec(name))) {
      const id = m[1];
      const rn: Msg = set.first(name);
      const minor = Number(rn.drm_render_minor);
      const bos: GpuBo[] = (rn.bo_entries || []).map((b: Msg, index: number) => {
        const file = `amdgpu-drm-pages-${id}-${minor}-${index.toString(16).padStart(4, '0')}.img`;
        const has = set.has(file);
        return {
          index, handle: Number(b.handle), size: b.size, addr: b.addr, domains: domainNames(Number(b.preferred_domains)), imported: !!Number(b.is_import),
          mappings: (b.vm_entries || []).map((v: Msg) => ({ addr: v.addr, size: v.size, offset: v.offset, flags: v.flags })),
          contents: has ? file : Number(b.is_import) ? 'imported: contents are the exporter\'s' : `missing (${file} not in the set)`,
          contentFile: has ? file : undefined, contentOffset: has ? 8 : undefined,
        };
      });
      out.push({ file: name, kind: 'render node', gpuId: Number(rn.gpu_id), renderMinor: minor, bos });
    } else if ((m = /^amdgpu-kfd-(\d+)\.img$/.exec(name))) {
      const id = m[1];
      const kfd: Msg = set.first(name);
      const offsets = new Map<number, number>(); // per gpu: running offset in amdgpu-pages
      const bos: GpuBo[] = (kfd.bo_entries || []).map((b: Msg, index: number) => {
        const gpu = Number(b.gpu_id);
        const flags = Number(b.alloc_flags);
        const file = `amdgpu-pages-${id}-${gpu.toString(16).padStart(4, '0')}.img`;
        let contents = 'not saved (neither VRAM nor GTT)';
        let contentFile: string | undefined;
        let contentOffset: number | undefined;
        if (flags & 0x3) {
          const off = offsets.get(gpu) ?? 8;
          offsets.set(gpu, off + Number(b.size));
          if (set.has(file)) { contents = `${file} at byte ${off}`; contentFile = file; contentOffset = off; } else contents = `missing (${file} not in the set)`;
        }
        return { index, handle: Number(b.handle), size: b.size, addr: b.addr, domains: flags & 1 ? 'VRAM' : flags & 2 ? 'GTT' : `flags 0x${flags.toString(16)}`, imported: false, mappings: [], contents, contentFile, contentOffset };
      });
      out.push({ file: name, kind: 'kfd', bos });
    } else if (/^amdgpu-dmabuf_\d+\.img$/.test(name)) {
      const d: Msg = set.first(name);
      out.push({ file: name, kind: 'dmabuf', bos: [{ index: 0, handle: Number(d.gem_handle), size: 0, addr: 0, domains: '', imported: false, mappings: [], contents: 'shared through the fd store' }] });
    }
  }
  return out;
}
