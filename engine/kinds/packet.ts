// Packet sockets (AF_PACKET: SOCK_RAW, SOCK_DGRAM and the old SOCK_PACKET), both halves of CRIU
// 4.2's packet_sock_entry (files.img type PACKETSK): what dump reads (packet sock_diag: device,
// TPACKET version, reserve, timestamping, copy threshold, aux/origdev/vnet/loss flags, the
// membership list, the RX/TX ring geometry, the fanout group) and how restore makes the socket
// again in the engine and hands it to the task, like an inet socket. A ring the task maps is a
// VMA of the socket (CRIU's VMA_AREA_SOCKET, shmid naming the socket's file id, no pages saved):
// at restore the task maps its own fd of the new socket at the same place.
//
// Exactness: a ring is made new and empty, so one whose bytes (in the kernel's ring, or in the
// task's copy-on-write view of it) differ from a new ring's is refused, as are packets queued and
// not read yet, a pending error, a socket bound to a device that is gone or down, fanout groups
// steered by a BPF program (it cannot be read back), a virtio header size the image cannot name,
// and options the image has no field for (compared with a new socket). Memberships are kept with
// their counts (an entry per add, oldest first, so CRIU makes the same list). At restore the
// socket is made without a protocol and bound to it only once every option, filter and ring is in
// place, so that it receives nothing its settings would not have let through.
import { sockDiag, diagAttrs } from '../dump/netlink';
import * as fs from 'fs';
import type { Msg } from '../../images/codec';
import { native, isNativeError } from '../../native';
import { UnsupportedError, EngineError } from '../errors';
import { readLinkProc, procPath } from '../proc/read';
import type { Vma } from '../proc/maps';
import type { PlannedVma } from '../dump/mm';
import type { Log } from '../log';
import type { Proc } from '../restore/context';
import type { ImageSet } from '../restore/imageset';
import { ImageError, num, VMA } from '../restore/imageset';
import { NR, MAP_FIXED, MAP_ANONYMOUS, MAP_POPULATE } from '../restore/sys';
import { vmaAdvice, withAdviceFlags } from './madvise';
import {
  SOL_SOCKET, Opt, foreignOpts, checkCommon, skOpts, intOpt, makeSocket, setter, applySkOpts, attachRecordedFilter,
  verifySkOpts, applyFileFlags, badFileFlags, DROP_ALL, SO, EngineSockets, MadeSocket,
} from './sk-common';

export const AF_PACKET = 17;
export const FD_TYPE_PACKETSK = 10;
const SOL_PACKET = 263;
const SOCK_DGRAM = 2, SOCK_RAW = 3, SOCK_PACKET = 10;
const PACKET = {
  ADD_MEMBERSHIP: 1, RX_RING: 5, COPY_THRESH: 7, AUXDATA: 8, ORIGDEV: 9, VERSION: 10, RESERVE: 12, TX_RING: 13, LOSS: 14,
  VNET_HDR: 15, TIMESTAMP: 17, FANOUT: 18, TX_HAS_OFF: 19, QDISC_BYPASS: 20, IGNORE_OUTGOING: 23, VNET_HDR_SZ: 24,
} as const;
const TPACKET_V3 = 2;
const PDI = { RUNNING: 0x1, AUXDATA: 0x2, ORIGDEV: 0x4, VNETHDR: 0x8, LOSS: 0x10 } as const;
const FANOUT_CBPF = 6, FANOUT_EBPF = 7;
const VIRTIO_NET_HDR_LEN = 10;
const MAX_ADDR_LEN = 32;
const F_GETFL = 3, F_SETFL = 4, O_NONBLOCK = 0o4000;
const SIOCGIFNAME = 0x8910;
const POLLIN = 0x1;
const PAGE = 4096n;

const TYPE_NAMES: Record<number, string> = { [SOCK_RAW]: 'SOCK_RAW', [SOCK_DGRAM]: 'SOCK_DGRAM', [SOCK_PACKET]: 'SOCK_PACKET' };
const MR_NAMES = ['multicast', 'promisc', 'allmulti', 'unicast'];

/** The protocol as socket() takes it (network order) from the host-order number diag gives, and back. */
const swap16 = (v: number) => ((v & 0xff) << 8) | ((v >> 8) & 0xff);
const protoText = (p: number) => `0x${swap16(p).toString(16).padStart(4, '0')}`;

// SOL_PACKET settings packet_sock_entry has no field for
const FOREIGN_PACKET: Opt[] = [
  [SOL_PACKET, PACKET.TX_HAS_OFF, 'PACKET_TX_HAS_OFF'], [SOL_PACKET, PACKET.QDISC_BYPASS, 'PACKET_QDISC_BYPASS'],
  [SOL_PACKET, PACKET.IGNORE_OUTGOING, 'PACKET_IGNORE_OUTGOING'],
];

function foreignOf(type: number): { key: string; opts: Opt[]; fresh: () => number } {
  // SOCK_PACKET sockets have no SOL_PACKET options at all
  return { key: `packet/${type}`, opts: foreignOpts(false, type === SOCK_PACKET ? [] : FOREIGN_PACKET), fresh: () => makeSocket(AF_PACKET, type, 0) };
}

// ---------------------------------------------------------------------------------------------
// sock_diag

export interface Ring {
  block_size: number;
  block_nr: number;
  frame_size: number;
  frame_nr: number;
  retire_tmo: number;
  sizeof_priv: number;
  features: number;
}

interface Membership {
  index: number;
  count: number;
  type: number;
  addr: Buffer;
}

export interface PacketDiag {
  type: number;
  /** the protocol as socket() takes it (network order) */
  protocol: number;
  ino: number;
  index: number;
  version: number;
  reserve: number;
  copyThresh: number;
  tstamp: number;
  flags: number;
  mclist: Membership[];
  rx?: Ring;
  tx?: Ring;
  fanout?: number;
  /** bytes of the receive queue (SK_MEMINFO_RMEM_ALLOC) */
  rmem: number;
}

const SHOW = { INFO: 1, MCLIST: 2, RING_CFG: 4, FANOUT: 8, MEMINFO: 0x10 } as const;
const ATTR = { INFO: 0, MCLIST: 1, RX_RING: 2, TX_RING: 3, FANOUT: 4, MEMINFO: 6 } as const;

function parseRing(b: Buffer, o: number): Ring {
  const u = (i: number) => b.readUInt32LE(o + 4 * i);
  return { block_size: u(0), block_nr: u(1), frame_size: u(2), frame_nr: u(3), retire_tmo: u(4), sizeof_priv: u(5), features: u(6) };
}

/** Every packet socket of the engine's network namespace, by inode. */
export function packetDiag(): Map<number, PacketDiag> {
  const body = Buffer.alloc(20);
  body.writeUInt8(AF_PACKET, 0);
  body.writeUInt32LE(SHOW.INFO | SHOW.MCLIST | SHOW.RING_CFG | SHOW.FANOUT | SHOW.MEMINFO, 8);
  const out = new Map<number, PacketDiag>();
  for (const m of sockDiag(body)) {
    const d: PacketDiag = {
      type: m.readUInt8(17), protocol: swap16(m.readUInt16LE(18)), ino: m.readUInt32LE(20),
      index: 0, version: 0, reserve: 0, copyThresh: 0, tstamp: 0, flags: 0, mclist: [], rmem: 0,
    };
    for (const { type, at, end } of diagAttrs(m, 16)) {
      if (type === ATTR.INFO) {
        d.index = m.readInt32LE(at);
        [d.version, d.reserve, d.copyThresh, d.tstamp, d.flags] = [4, 8, 12, 16, 20].map((k) => m.readUInt32LE(at + k));
      } else if (type === ATTR.MCLIST) {
        for (let p = at; p + 44 <= end; p += 44) {
          const alen = m.readUInt16LE(p + 10);
          d.mclist.push({ index: m.readInt32LE(p), count: m.readUInt32LE(p + 4), type: m.readUInt16LE(p + 8), addr: Buffer.from(m.subarray(p + 12, p + 12 + Math.min(alen, MAX_ADDR_LEN))) });
        }
      } else if (type === ATTR.RX_RING) d.rx = parseRing(m, at);
      else if (type === ATTR.TX_RING) d.tx = parseRing(m, at);
      else if (type === ATTR.FANOUT) d.fanout = m.readUInt32LE(at);
      else if (type === ATTR.MEMINFO) d.rmem = m.readUInt32LE(at);
    }
    out.set(d.ino, d);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// rings

const ringBytes = (r: Msg | Ring | undefined) => (r ? BigInt(num(r.block_size)) * BigInt(num(r.block_nr)) : 0n);

/** Bytes of the socket's ring mapping: the RX ring, then the TX ring. */
export function ringsSize(e: { rx_ring?: Msg; tx_ring?: Msg }): bigint {
  return ringBytes(e.rx_ring) + ringBytes(e.tx_ring);
}

function req3(r: Msg | Ring): Buffer {
  const b = Buffer.alloc(28);
  ['block_size', 'block_nr', 'frame_size', 'frame_nr', 'retire_tmo', 'sizeof_priv', 'features'].forEach((k, i) => b.writeUInt32LE(num((r as Msg)[k]) >>> 0, 4 * i));
  return b;
}

const freshRings = new Map<string, Buffer>();

/** The bytes of a new ring of this geometry (made once per engine run on a socket that receives nothing). */
function freshRing(version: number, rx?: Ring, tx?: Ring): Buffer {
  const key = JSON.stringify([version, rx, tx]);
  let b = freshRings.get(key);
  if (b) return b;
  const n = native();
  const s = makeSocket(AF_PACKET, SOCK_RAW, 0);
  try {
    if (version) n.setsockopt(s, SOL_PACKET, PACKET.VERSION, version);
    if (rx) n.setsockopt(s, SOL_PACKET, PACKET.RX_RING, req3(rx));
    if (tx) n.setsockopt(s, SOL_PACKET, PACKET.TX_RING, req3(tx));
    const len = Number(ringBytes(rx) + ringBytes(tx));
    b = Buffer.alloc(len);
    n.mmapCopy(s, 0, len, b, false);
  } finally {
    n.close(s);
  }
  freshRings.set(key, b);
  return b;
}

/**
 * The first byte where a ring differs from a new one, if any. A TPACKET_V3 RX ring opens its
 * first block when it is made and writes the time into the block's header (ts_first_pkt,
 * bytes 32..39): that clock reading is the kernel's, not state.
 */
function ringDifference(have: Buffer, fresh: Buffer, version: number, rx?: Ring): number | undefined {
  const skip = version === TPACKET_V3 && rx ? [32, 40] : [0, 0];
  for (let i = 0; i < fresh.length; i++) if (have[i] !== fresh[i] && (i < skip[0] || i >= skip[1])) return i;
  return have.length === fresh.length ? undefined : fresh.length;
}

const whereInRing = (at: number, rx?: Ring) => (at < Number(ringBytes(rx)) ? `RX ring at byte ${at}` : `TX ring at byte ${at - Number(ringBytes(rx))}`);

// ---------------------------------------------------------------------------------------------
// dump

export interface PacketContext {
  pid: number;
  fd: number;
  netNsId: number;
  fown: Msg;
  dupFd(): number;
}

interface Dumped {
  id: number;
  version: number;
  rx?: Ring;
  tx?: Ring;
}

/** A socket VMA planned before the task's fds are dumped; its shmid is named once they are. */
interface PendingMap {
  planned: PlannedVma;
  ino: number;
}

export class PacketSockets {
  private diag?: Map<number, PacketDiag>;
  private byIno = new Map<number, Dumped>();
  private pending = new Map<number, PendingMap[]>();

  /** The file_entry of a packet socket. */
  dump(id: number, ino: number, flags: number, ctx: PacketContext): Msg {
    const sock = ctx.dupFd();
    try {
      return this.describe(sock, id, ino, flags, ctx);
    } finally {
      native().close(sock);
    }
  }

  private describe(sock: number, id: number, ino: number, flags: number, ctx: PacketContext): Msg {
    const n = native();
    const type = intOpt(sock, SOL_SOCKET, SO.TYPE);
    let kind = `packet socket (${TYPE_NAMES[type] ?? `type ${type}`})`;
    const refuse = (why: string) => new UnsupportedError(`task ${ctx.pid} fd ${ctx.fd}: ${kind}: ${why}`);
    if (!TYPE_NAMES[type]) throw refuse('not a type CRIU restores (not supported)');
    this.diag ??= packetDiag();
    const d = this.diag.get(ino);
    if (d) kind = `packet socket (${TYPE_NAMES[type]}, protocol ${protoText(d.protocol)})`;
    // (one of another network namespace is not in the engine's sock_diag: refused here)
    checkCommon(sock, ctx.pid, flags, refuse, foreignOf(type));
    if (!d) throw new EngineError(`task ${ctx.pid} fd ${ctx.fd}: ${kind} ${ino} is missing from sock_diag`);
    if (d.index < 0) throw refuse('the device it was bound to is gone (not restorable)');
    if (d.protocol && !(d.flags & PDI.RUNNING)) throw refuse(`bound to device ${d.index}, which is down: it receives nothing and has an error to report (not restorable)`);
    if (d.rmem) throw refuse(`${d.rmem} bytes of packets received and not read yet (they would be lost; not supported)`);
    if (!d.rx && n.pollOne(sock, POLLIN, 0) & POLLIN) throw refuse('packets received and not read yet (they would be lost; not supported)');
    let fanout: number | undefined;
    if (d.fanout !== undefined) {
      // sock_diag leaves the group's flags out: getsockopt has them (id | type << 16 | flags << 24)
      fanout = n.getsockopt(sock, SOL_PACKET, PACKET.FANOUT, 4).readUInt32LE(0);
      const ftype = (fanout >>> 16) & 0xff;
      // (a group made with PACKET_FANOUT_FLAG_UNIQUEID keeps the id the kernel picked, not the flag)
      if (ftype === FANOUT_CBPF || ftype === FANOUT_EBPF) throw refuse(`in fanout group ${fanout & 0xffff} steered by a BPF program (the program cannot be read back; not supported)`);
    }
    if (type !== SOCK_PACKET) {
      let hdr = 0;
      try {
        hdr = intOpt(sock, SOL_PACKET, PACKET.VNET_HDR_SZ);
      } catch (e) {
        if (!isNativeError(e) || e.code !== 'ENOPROTOOPT') throw e; // kernels before 6.2: 0 or 10 only
      }
      if (hdr !== 0 && hdr !== VIRTIO_NET_HDR_LEN) throw refuse(`PACKET_VNET_HDR_SZ is ${hdr} (the image holds only whether the ${VIRTIO_NET_HDR_LEN}-byte header is on; not supported)`);
    }
    const mclist: Msg[] = [];
    // the kernel lists the newest membership first; an address added twice is one entry with a count
    for (const m of [...d.mclist].reverse()) {
      if (m.type >= MR_NAMES.length) throw refuse(`a membership of unknown type ${m.type} (not supported)`);
      for (let i = 0; i < m.count; i++) mclist.push({ index: m.index, type: m.type, addr: m.addr });
    }
    if (d.rx || d.tx) {
      const fresh = freshRing(d.version, d.rx, d.tx);
      const have = Buffer.alloc(fresh.length);
      n.mmapCopy(sock, 0, have.length, have, false);
      const at = ringDifference(have, fresh, d.version, d.rx);
      if (at !== undefined) throw refuse(`its ${whereInRing(at, d.rx)} holds what a new ring does not (packets, or frames written by the task; not restorable)`);
    }
    this.byIno.set(ino, { id, version: d.version, rx: d.rx, tx: d.tx });
    const psk: Msg = {
      id, type, protocol: d.protocol, flags, ifindex: d.index, fown: ctx.fown, opts: skOpts(sock, false),
      version: d.version, reserve: d.reserve, aux_data: (d.flags & PDI.AUXDATA) !== 0, orig_dev: (d.flags & PDI.ORIGDEV) !== 0,
      vnet_hdr: (d.flags & PDI.VNETHDR) !== 0, loss: (d.flags & PDI.LOSS) !== 0, timestamp: d.tstamp, copy_thresh: d.copyThresh, mclist,
    };
    if (fanout !== undefined) psk.fanout = fanout;
    if (d.rx) psk.rx_ring = { ...d.rx };
    if (d.tx) psk.tx_ring = { ...d.tx };
    psk.ns_id = ctx.netNsId;
    return { type: FD_TYPE_PACKETSK, id, psk };
  }

  /**
   * The task's VMAs planned by `plan`, with its socket mappings (socket:[ino] in maps) planned here
   * as CRIU records them: VMA_AREA_SOCKET | VMA_AREA_REGULAR, no pages. Their shmid is filled in
   * by resolveMaps once the task's fds are dumped.
   */
  planWithRings(pid: number, vmas: Vma[], plan: (rest: Vma[]) => PlannedVma[]): PlannedVma[] {
    const sockets = vmas.filter((v) => /^socket:\[\d+\]$/.test(v.name));
    if (!sockets.length) return plan(vmas);
    const rest = plan(vmas.filter((v) => !sockets.includes(v)));
    const mine: PendingMap[] = [];
    for (const v of sockets) {
      const advice = vmaAdvice(v.vmFlags);
      const prot = (v.read ? 1 : 0) | (v.write ? 2 : 0) | (v.exec ? 4 : 0);
      const flags = withAdviceFlags(v.shared ? 0x1 : 0x2, advice);
      const entry: Msg = { start: v.start, end: v.end, pgoff: v.pgoff, shmid: 0, prot, flags, status: VMA.REGULAR | VMA.SOCKET, fd: -1 };
      if (advice.madv) entry.madv = advice.madv;
      // as CRIU: the open mode of the mapped file, from the map_files link's permission bits
      const mode = fs.lstatSync(procPath(pid, 'map_files', `${v.start.toString(16)}-${v.end.toString(16)}`)).mode & 0o600;
      entry.fdflags = mode === 0o600 ? 2 : mode === 0o200 ? 1 : 0;
      mine.push({ planned: { entry, start: v.start, end: v.end, policy: 'none', readable: v.read, lazy: false, pgoff: v.pgoff }, ino: Number(/\d+/.exec(v.name)![0]) });
    }
    this.pending.set(pid, mine);
    return [...rest, ...mine.map((m) => m.planned)].sort((a, b) => (a.start < b.start ? -1 : a.start > b.start ? 1 : 0));
  }

  /**
   * Names the socket of each ring mapping of the task by its file id; refuses one the restore
   * could not map again exactly: not a packet socket's ring, through no fd of the task's own
   * table, not the whole ring, or with bytes (the task's copy-on-write view) a new ring has not.
   */
  resolveMaps(pid: number, fdinfo: Msg[]): void {
    const mine = this.pending.get(pid);
    if (!mine) return;
    this.pending.delete(pid);
    const byId = new Map(fdinfo.map((e) => [num(e.id), e]));
    for (const { planned, ino } of mine) {
      const range = `${planned.start.toString(16)}-${planned.end.toString(16)}`;
      const who = `task ${pid} mapping ${range} (socket:[${ino}])`;
      const s = this.byIno.get(ino);
      const held = s !== undefined && byId.has(s.id);
      if (!held && !fs.readdirSync(procPath(pid, 'fd')).some((fd) => { try { return readLinkProc(pid, 'fd', fd) === `socket:[${ino}]`; } catch { return false; } }))
        throw new UnsupportedError(`${who}: the task holds no fd of the socket in its own fd table (a ring is mapped again through one; not supported)`);
      if (!s || !(s.rx || s.tx)) throw new UnsupportedError(`${who}: only the rings of packet sockets are restored (not supported)`);
      if (!held) throw new UnsupportedError(`${who}: the task holds no fd of the socket in its own fd table (a ring is mapped again through one; not supported)`);
      const size = ringBytes(s.rx) + ringBytes(s.tx);
      if (planned.end - planned.start !== size || planned.pgoff !== 0n)
        throw new UnsupportedError(`${who}: maps ${(planned.end - planned.start) / PAGE} pages at offset ${planned.pgoff} of a ring of ${size / PAGE} pages (a ring is mapped whole; not restorable)`);
      const fresh = freshRing(s.version, s.rx, s.tx);
      const view = Buffer.alloc(fresh.length);
      const mem = fs.openSync(procPath(pid, 'mem'), 'r');
      try {
        if (fs.readSync(mem, view, 0, view.length, planned.start) !== view.length) throw new EngineError(`${who}: short read of the mapping`);
      } finally {
        fs.closeSync(mem);
      }
      const at = ringDifference(view, fresh, s.version, s.rx);
      if (at !== undefined) throw new UnsupportedError(`${who}: the task sees what a new ring does not have in its ${whereInRing(at, s.rx)} (copy-on-write pages of a private mapping, or packets; not restorable)`);
      planned.entry.shmid = s.id;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// restore

/** Refuses, before any process exists, a packet_sock_entry this engine cannot restore. */
export function checkPacketEntry(id: number, psk: Msg): void {
  const field = (f: string) => `id ${id}.psk.${f}`;
  const type = num(psk.type);
  if (!TYPE_NAMES[type]) throw new ImageError('files.img', field('type'), `packet socket type ${type} is not restored`);
  if (num(psk.version) > TPACKET_V3) throw new ImageError('files.img', field('version'), `TPACKET version ${psk.version} is unknown`);
  if (num(psk.ifindex) < 0) throw new ImageError('files.img', field('ifindex'), `device ${psk.ifindex}`);
  if (num(psk.ifindex) && !fs.readdirSync('/sys/class/net').some((d) => { try { return Number(fs.readFileSync(`/sys/class/net/${d}/ifindex`, 'utf8')) === num(psk.ifindex); } catch { return false; } }))
    throw new ImageError('files.img', field('ifindex'), `no network device with index ${psk.ifindex} here`);
  for (const [i, m] of ((psk.mclist ?? []) as Msg[]).entries()) {
    const len = (m.addr as Uint8Array | undefined)?.length ?? 0;
    if (len > MAX_ADDR_LEN) throw new ImageError('files.img', field(`mclist[${i}].addr`), `${len} bytes is longer than a device address`);
    if (num(m.type) >= MR_NAMES.length) throw new ImageError('files.img', field(`mclist[${i}].type`), `membership type ${m.type} is unknown`);
  }
  if (type === SOCK_PACKET && (psk.rx_ring || psk.tx_ring || num(psk.version) || (psk.mclist ?? []).length || psk.fanout !== undefined && num(psk.fanout) !== 0xffffffff))
    throw new ImageError('files.img', field('type'), 'a SOCK_PACKET socket with packet options');
  if (psk.fanout !== undefined && num(psk.fanout) !== 0xffffffff) {
    const t = (num(psk.fanout) >>> 16) & 0xff;
    if (t === FANOUT_CBPF || t === FANOUT_EBPF) throw new ImageError('files.img', field('fanout'), 'a fanout group steered by a BPF program is not restored');
  }
  if ((psk.opts?.so_filter ?? []).length > 4096) throw new ImageError('files.img', field('opts.so_filter'), 'longer than a socket filter can be');
  if (badFileFlags(num(psk.flags))) throw new ImageError('files.img', field('flags'), `file flags 0o${num(psk.flags).toString(8)} cannot be set on a socket`);
}

/** Refuses a socket VMA of mm-<pid>.img that is not the whole ring of a packet socket the task holds. */
export function checkRingVma(set: ImageSet, pid: number, fdinfo: Msg[], image: string, i: number, v: Msg): void {
  const at = `0x${BigInt(v.start).toString(16)}`;
  const f = set.files.get(num(v.shmid));
  if (!f || num(f.type) !== FD_TYPE_PACKETSK || !f.psk) throw new ImageError(image, `vmas[${i}].shmid`, `socket mapping at ${at}: file id ${v.shmid} is not a packet socket in files.img`);
  const size = ringsSize(f.psk);
  if (!size || BigInt(v.end) - BigInt(v.start) !== size || BigInt(v.pgoff ?? 0) !== 0n)
    throw new ImageError(image, `vmas[${i}]`, `socket mapping at ${at} is not the whole ring of packet socket ${v.shmid} (${size} bytes)`);
  if (!fdinfo.some((e) => num(e.id) === num(v.shmid))) throw new ImageError(image, `vmas[${i}].shmid`, `socket mapping at ${at}: task ${pid} holds no fd of packet socket ${v.shmid}`);
}

/** Makes every packet socket of files.img in the engine, one per file id, passed into each task that has it. */
export class PacketRestorer extends EngineSockets {
  constructor(set: ImageSet, log: Log) {
    super(set, log, FD_TYPE_PACKETSK, 'psk', 'packet sockets');
  }

  protected make(s: MadeSocket): number {
    const n = native();
    const e = s.entry;
    const type = num(e.type), protocol = num(e.protocol);
    const spkt = type === SOCK_PACKET;
    const where = `files.img: id ${s.id}: packet socket (${TYPE_NAMES[type]}, protocol ${protoText(protocol)})`;
    const fail = (what: string, err: unknown) => new EngineError(`${where}: ${what}: ${isNativeError(err) ? err.code : (err as Error).message}`);
    // a SOCK_PACKET socket takes its protocol only when made (its bind keeps it): made with it,
    // everything it receives dropped until its settings are in place
    const fd = makeSocket(AF_PACKET, type, spkt ? protocol : 0, s.creds);
    try {
      const set = setter(fd, fail);
      if (spkt) {
        n.attachFilter(fd, DROP_ALL);
        drain(fd);
      }
      const o: Msg = e.opts ?? {};
      applySkOpts(fd, o, set, !spkt);
      if (!spkt) {
        const value = (v: unknown, name: number, label: string) => {
          if (v !== undefined && num(v) !== intOpt(fd, SOL_PACKET, name)) set(SOL_PACKET, name, num(v), label);
        };
        value(e.version, PACKET.VERSION, 'PACKET_VERSION');
        value(e.reserve, PACKET.RESERVE, 'PACKET_RESERVE');
        value(e.timestamp, PACKET.TIMESTAMP, 'PACKET_TIMESTAMP');
        value(e.copy_thresh, PACKET.COPY_THRESH, 'PACKET_COPY_THRESH');
        value(e.aux_data ? 1 : 0, PACKET.AUXDATA, 'PACKET_AUXDATA');
        value(e.orig_dev ? 1 : 0, PACKET.ORIGDEV, 'PACKET_ORIGDEV');
        value(e.vnet_hdr ? 1 : 0, PACKET.VNET_HDR, 'PACKET_VNET_HDR');
        value(e.loss ? 1 : 0, PACKET.LOSS, 'PACKET_LOSS');
        for (const m of (e.mclist ?? []) as Msg[]) {
          const addr = Buffer.from((m.addr ?? new Uint8Array()) as Uint8Array);
          const mreq = Buffer.alloc(8 + MAX_ADDR_LEN);
          mreq.writeInt32LE(num(m.index), 0);
          mreq.writeUInt16LE(num(m.type), 4);
          mreq.writeUInt16LE(addr.length, 6);
          addr.copy(mreq, 8);
          set(SOL_PACKET, PACKET.ADD_MEMBERSHIP, mreq, `PACKET_ADD_MEMBERSHIP ${MR_NAMES[num(m.type)]} on device ${m.index}`);
        }
        if (e.rx_ring) set(SOL_PACKET, PACKET.RX_RING, req3(e.rx_ring), 'PACKET_RX_RING');
        if (e.tx_ring) set(SOL_PACKET, PACKET.TX_RING, req3(e.tx_ring), 'PACKET_TX_RING');
      }
      // the device and the protocol last: from here on it receives
      const ifindex = num(e.ifindex);
      try {
        if (spkt && ifindex) n.sockBind(fd, spktAddr(fd, ifindex));
        else if (!spkt && (ifindex || protocol)) n.sockBind(fd, llAddr(protocol, ifindex));
      } catch (err) {
        throw fail(`cannot bind to device ${ifindex}`, err);
      }
      if (spkt) attachRecordedFilter(fd, o);
      if (e.fanout !== undefined && num(e.fanout) !== 0xffffffff) set(SOL_PACKET, PACKET.FANOUT, num(e.fanout) | 0, 'PACKET_FANOUT');
      applyFileFlags(fd, num(e.flags));
      this.verify(fd, s, where);
      return fd;
    } catch (err) {
      n.close(fd);
      throw err;
    }
  }

  /** The new socket, read back the way dump reads one, must be what the image says. */
  private verify(fd: number, s: MadeSocket, where: string): void {
    const e = s.entry;
    const type = num(e.type);
    const d = packetDiag().get(fs.fstatSync(fd).ino);
    if (!d) throw new EngineError(`${where}: not in sock_diag after restore`);
    const check = (what: string, have: unknown, want: unknown) => {
      if (String(have) !== String(want)) throw new EngineError(`${where}: ${what} is ${have} after restore, the image says ${want}`);
    };
    check('type', d.type, type);
    check('protocol', protoText(d.protocol), protoText(num(e.protocol)));
    check('ifindex', d.index, num(e.ifindex));
    check('version', d.version, num(e.version));
    check('reserve', d.reserve, num(e.reserve));
    check('timestamp', d.tstamp, num(e.timestamp));
    check('copy_thresh', d.copyThresh, num(e.copy_thresh));
    check('aux_data', (d.flags & PDI.AUXDATA) !== 0, !!e.aux_data);
    check('orig_dev', (d.flags & PDI.ORIGDEV) !== 0, !!e.orig_dev);
    check('vnet_hdr', (d.flags & PDI.VNETHDR) !== 0, !!e.vnet_hdr);
    check('loss', (d.flags & PDI.LOSS) !== 0, !!e.loss);
    check('receiving', (d.flags & PDI.RUNNING) !== 0, num(e.protocol) !== 0);
    const ml = [...d.mclist].reverse().flatMap((m) => Array.from({ length: m.count }, () => `${m.index}/${m.type}/${m.addr.toString('hex')}`));
    check('mclist', ml.join(' '), ((e.mclist ?? []) as Msg[]).map((m) => `${num(m.index)}/${num(m.type)}/${Buffer.from((m.addr ?? new Uint8Array()) as Uint8Array).toString('hex')}`).join(' '));
    check('rx_ring', JSON.stringify(d.rx ?? null), JSON.stringify(e.rx_ring ? parseRing(req3(e.rx_ring), 0) : null));
    check('tx_ring', JSON.stringify(d.tx ?? null), JSON.stringify(e.tx_ring ? parseRing(req3(e.tx_ring), 0) : null));
    const wantFanout = e.fanout === undefined || num(e.fanout) === 0xffffffff ? 0 : num(e.fanout);
    if (type !== SOCK_PACKET) check('fanout', native().getsockopt(fd, SOL_PACKET, PACKET.FANOUT, 4).readUInt32LE(0), wantFanout);
    verifySkOpts(fd, e.opts ?? {}, false, where, s.creds, num(e.flags), foreignOf(type));
  }

  /**
   * The task's ring mappings, once its fds are in place: each socket VMA (a placeholder until now)
   * mapped again through the task's own fd of the new socket, at the same address.
   */
  mapRings(p: Proc): void {
    const vmas = ((p.img.mm?.vmas ?? []) as Msg[]).filter((v) => num(v.status) & VMA.SOCKET);
    if (!vmas.length) return;
    const r = p.remote;
    r.reset();
    r.run(p.host, vmas.map((v) => {
      const e = (p.img.fdinfo ?? []).find((x) => num(x.id) === num(v.shmid))!;
      const start = BigInt(v.start), len = BigInt(v.end) - start;
      const flags = (num(v.flags) & ~(MAP_ANONYMOUS | MAP_POPULATE)) | MAP_FIXED;
      return { nr: NR.mmap, args: [start, len, num(v.prot), flags, num(e.fd), 0], what: `mmap(0x${start.toString(16)}) of the ring of packet socket ${v.shmid} through fd ${e.fd}` };
    }));
    const maps = fs.readFileSync(`/proc/${p.host}/maps`, 'utf8');
    for (const v of vmas) {
      const ino = fs.fstatSync(this.byId.get(num(v.shmid))!.fd).ino;
      const line = `${BigInt(v.start).toString(16)}-${BigInt(v.end).toString(16)} `;
      if (!maps.split('\n').some((l) => l.startsWith(line) && l.endsWith(`socket:[${ino}]`)))
        throw new EngineError(`task ${p.img.pid}: the ring of packet socket ${v.shmid} is not mapped at 0x${BigInt(v.start).toString(16)} after restore`);
    }
  }

  /** Closes the engine's copies (the tasks hold their own by now). */
}

/** Reads away whatever a new socket received so far (read(2): packet sockets refuse MSG_CMSG_CLOEXEC). */
function drain(fd: number): void {
  const n = native();
  const fl = n.fcntl(fd, F_GETFL);
  n.fcntl(fd, F_SETFL, fl | O_NONBLOCK);
  const buf = Buffer.alloc(65536);
  try {
    for (;;) fs.readSync(fd, buf, 0, buf.length, null);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EAGAIN') throw e;
  } finally {
    n.fcntl(fd, F_SETFL, fl);
  }
}

/** struct sockaddr_ll for bind: the protocol as the socket takes it, the device. */
function llAddr(protocol: number, ifindex: number): Buffer {
  const a = Buffer.alloc(20);
  a.writeUInt16LE(AF_PACKET, 0);
  a.writeUInt16LE(protocol, 2); // already network order, as stored
  a.writeInt32LE(ifindex, 4);
  return a;
}

/** struct sockaddr for a SOCK_PACKET bind: the device's name. */
function spktAddr(fd: number, ifindex: number): Buffer {
  const ifr = Buffer.alloc(40);
  ifr.writeInt32LE(ifindex, 16);
  native().ioctl(fd, SIOCGIFNAME, ifr);
  const a = Buffer.alloc(16);
  a.writeUInt16LE(AF_PACKET, 0);
  ifr.copy(a, 2, 0, 13); // sa_data holds 14 bytes, the last one NUL
  return a;
}
