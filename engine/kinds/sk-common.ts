// What packet and netlink sockets share (kinds/packet, kinds/netlink-sock): sk_opts_entry as CRIU
// 4.2 fills it for them, the SOL_SOCKET options that entry has no field for (compared with a new
// socket of the same kind: a difference cannot be restored, so it is refused), the checks every
// socket the engine makes again needs (network namespace, pending error, owner, file flags), and
// the restore half: a socket made under its first holder's credentials, sk_opts set where they
// differ from the new socket's and read back afterwards.
import * as fs from 'fs';
import type { Msg } from '../../images/codec';
import { native, isNativeError } from '../../native';
import { socketOpts } from '../dump/unix';
import { EngineError } from '../errors';
import { readProc } from '../proc/read';
import type { ImageSet } from '../restore/imageset';
import type { Log } from '../log';
import { num, big } from '../restore/imageset';

export const SOL_SOCKET = 1;
export const SOCK_CLOEXEC = 0o2000000;
const SO = {
  REUSEADDR: 2, TYPE: 3, DONTROUTE: 5, BROADCAST: 6, SNDBUF: 7, RCVBUF: 8, KEEPALIVE: 9, OOBINLINE: 10, NO_CHECK: 11,
  PRIORITY: 12, LINGER: 13, REUSEPORT: 15, PASSCRED: 16, RCVLOWAT: 18, RCVTIMEO: 20, SNDTIMEO: 21, BINDTODEVICE: 25,
  DETACH_FILTER: 27, PEERNAME: 28, SNDBUFFORCE: 32, RCVBUFFORCE: 33, PASSSEC: 34, MARK: 36, PROTOCOL: 38, BUF_LOCK: 72,
} as const;
export { SO };
const SIOCGSKNS = 0x894c;
const POLLERR = 0x8;
const F_GETFL = 3, F_SETFL = 4;
/** file status flags fcntl(F_SETFL) gives a socket back; O_RDWR is what socket() opens with */
const O_NONBLOCK = 0o4000, O_APPEND = 0o2000, O_ASYNC = 0o20000, O_NOATIME = 0o1000000, O_RDWR = 0o2;
export const SETFL = O_NONBLOCK | O_APPEND | O_ASYNC | O_NOATIME;

/** level, name, label, and a buffer length for options that are not an int */
export type Opt = [level: number, name: number, label: string, len?: number];

// SOL_SOCKET options sk_opts_entry has no field for. SO_PASSCRED and SO_PASSSEC are held for
// netlink sockets only (kinds that hold them leave them out of this list).
const FOREIGN: Opt[] = [
  [SOL_SOCKET, 1, 'SO_DEBUG'], [SOL_SOCKET, SO.PASSCRED, 'SO_PASSCRED'], [SOL_SOCKET, SO.PASSSEC, 'SO_PASSSEC'],
  [SOL_SOCKET, 19, 'SO_SNDLOWAT'], [SOL_SOCKET, 29, 'SO_TIMESTAMP'], [SOL_SOCKET, 35, 'SO_TIMESTAMPNS'], [SOL_SOCKET, 37, 'SO_TIMESTAMPING', 8],
  [SOL_SOCKET, 63, 'SO_TIMESTAMP_NEW'], [SOL_SOCKET, 64, 'SO_TIMESTAMPNS_NEW'], [SOL_SOCKET, 65, 'SO_TIMESTAMPING_NEW', 8],
  [SOL_SOCKET, 40, 'SO_RXQ_OVFL'], [SOL_SOCKET, 41, 'SO_WIFI_STATUS'], [SOL_SOCKET, 42, 'SO_PEEK_OFF'], [SOL_SOCKET, 43, 'SO_NOFCS'],
  [SOL_SOCKET, 44, 'SO_LOCK_FILTER'], [SOL_SOCKET, 45, 'SO_SELECT_ERR_QUEUE'], [SOL_SOCKET, 46, 'SO_BUSY_POLL'], [SOL_SOCKET, 47, 'SO_MAX_PACING_RATE', 8],
  [SOL_SOCKET, 60, 'SO_ZEROCOPY'], [SOL_SOCKET, 61, 'SO_TXTIME', 8], [SOL_SOCKET, 69, 'SO_PREFER_BUSY_POLL'], [SOL_SOCKET, 70, 'SO_BUSY_POLL_BUDGET'],
  [SOL_SOCKET, 73, 'SO_RESERVE_MEM'], [SOL_SOCKET, 74, 'SO_TXREHASH'], [SOL_SOCKET, 75, 'SO_RCVMARK'], [SOL_SOCKET, 82, 'SO_RCVPRIORITY'],
];

/** The SOL_SOCKET options the image cannot hold, plus a kind's own ones. */
export function foreignOpts(holdsCreds: boolean, own: Opt[] = []): Opt[] {
  return [...FOREIGN.filter(([, name]) => !holdsCreds || (name !== SO.PASSCRED && name !== SO.PASSSEC)), ...own];
}

/** Option values as text (an errno name when unreadable), by label. */
export function optionValues(sock: number, opts: Opt[]): Map<string, string> {
  const n = native();
  const out = new Map<string, string>();
  for (const [level, name, label, len] of opts) {
    let v: string;
    try {
      const b = n.getsockopt(sock, level, name, len ?? 4);
      v = len ? b.toString('hex') : b.length >= 4 ? String(b.readInt32LE(0)) : b.toString('hex');
    } catch (e) {
      v = isNativeError(e) ? e.code : String(e);
    }
    out.set(label, v);
  }
  return out;
}

const freshCache = new Map<string, Map<string, string>>();

/**
 * The first option whose value differs from what a new socket of the kind has. `key` names the
 * kind (the new socket's values are kept per engine run), `fresh` makes one.
 */
export function foreignDifference(sock: number, key: string, opts: Opt[], fresh: () => number): { label: string; have: string; fresh: string } | undefined {
  let want = freshCache.get(key);
  if (!want) {
    const s = fresh();
    try {
      want = optionValues(s, opts);
    } finally {
      native().close(s);
    }
    freshCache.set(key, want);
  }
  for (const [label, have] of optionValues(sock, opts)) {
    const f = want.get(label)!;
    if (have !== f) return { label, have, fresh: f };
  }
  return undefined;
}

export function intOpt(sock: number, level: number, name: number): number {
  return native().getsockopt(sock, level, name, 4).readInt32LE(0);
}

function boundDevice(sock: number): string {
  const dev = native().getsockopt(sock, SOL_SOCKET, SO.BINDTODEVICE, 16);
  const nul = dev.indexOf(0);
  return dev.subarray(0, nul < 0 ? dev.length : nul).toString();
}

/**
 * The classic BPF filter as CRIU records it (one u64 per instruction: code << 48 | jt << 40 |
 * jf << 32 | k); 'ebpf' for a program attached with SO_ATTACH_BPF, which cannot be read back.
 */
export function socketFilter(sock: number): bigint[] | 'ebpf' {
  let prog: Buffer;
  try {
    prog = native().getFilter(sock);
  } catch (e) {
    if (isNativeError(e) && e.code === 'EACCES') return 'ebpf';
    throw e;
  }
  const out: bigint[] = [];
  for (let i = 0; i + 8 <= prog.length; i += 8)
    out.push((BigInt(prog.readUInt16LE(i)) << 48n) | (BigInt(prog[i + 2]) << 40n) | (BigInt(prog[i + 3]) << 32n) | BigInt(prog.readUInt32LE(i + 4)));
  return out;
}

/** so_filter back to struct sock_filter bytes. */
export function filterProgram(words: unknown[]): Buffer {
  const b = Buffer.alloc(8 * words.length);
  words.forEach((w, i) => {
    const v = big(w);
    b.writeUInt16LE(Number((v >> 48n) & 0xffffn), 8 * i);
    b[8 * i + 2] = Number((v >> 40n) & 0xffn);
    b[8 * i + 3] = Number((v >> 32n) & 0xffn);
    b.writeUInt32LE(Number(v & 0xffffffffn), 8 * i + 4);
  });
  return b;
}

/** sk_opts_entry as CRIU 4.2 fills it for a packet (holdsCreds false) or netlink socket (true). */
export function skOpts(sock: number, holdsCreds: boolean): Msg {
  const o = socketOpts(sock, holdsCreds);
  const linger = native().getsockopt(sock, SOL_SOCKET, SO.LINGER, 8);
  if (linger.readInt32LE(0)) o.so_linger = linger.readInt32LE(4);
  const dev = boundDevice(sock);
  if (dev) o.so_bound_dev = dev;
  const filter = socketFilter(sock);
  if (filter !== 'ebpf' && filter.length) o.so_filter = filter;
  return o;
}

// ---------------------------------------------------------------------------------------------
// dump

/** The filesystem uid and gid of a task (the fourth numbers of the Uid: and Gid: lines of status). */
function taskFsIds(pid: number): { uid: number; gid: number } {
  const status = readProc(pid, 'status');
  const fourth = (key: string) => Number(new RegExp(`^${key}:\\s+\\d+\\s+\\d+\\s+\\d+\\s+(\\d+)`, 'm').exec(status)![1]);
  return { uid: fourth('Uid'), gid: fourth('Gid') };
}

let engineNs: number | undefined;

/**
 * What any socket the restore makes again in the engine must be, refused through `refuse`
 * otherwise: of the engine's network namespace, without a pending error or an eBPF filter,
 * made under its task's filesystem ids, with file flags fcntl can set, with even buffer sizes
 * (the kernel doubles what is set), and with the options the image has no field for as a new
 * socket of the kind has them.
 */
export function checkCommon(sock: number, pid: number, flags: number, refuse: (why: string) => Error, foreign: { key: string; opts: Opt[]; fresh: () => number }): void {
  const n = native();
  engineNs ??= fs.statSync('/proc/self/ns/net').ino;
  const nsFd = n.ioctl(sock, SIOCGSKNS);
  try {
    if (fs.fstatSync(nsFd).ino !== engineNs) throw refuse("it belongs to another network namespace than the engine's (not supported)");
  } finally {
    n.close(nsFd);
  }
  if (n.pollOne(sock, 0, 0) & POLLERR) throw refuse('a socket error is pending (it would be lost; not supported)');
  if (socketFilter(sock) === 'ebpf') throw refuse('an eBPF socket filter is attached (SO_ATTACH_BPF; not supported)');
  const diff = foreignDifference(sock, foreign.key, foreign.opts, foreign.fresh);
  if (diff) throw refuse(`option ${diff.label} is ${diff.have}, a new socket has ${diff.fresh} (CRIU images have no field for it; not supported)`);
  const st = fs.fstatSync(sock);
  const ids = taskFsIds(pid);
  if (st.uid !== ids.uid || st.gid !== ids.gid)
    throw refuse(`made by uid ${st.uid} gid ${st.gid}, while the task's fsuid is ${ids.uid} and fsgid ${ids.gid} (the owner of a restored socket is its task's; not supported)`);
  if (flags & ~(SETFL | O_RDWR)) throw refuse(`file flags 0o${flags.toString(8)} cannot be set again (not supported)`);
  for (const [name, v] of [['SO_SNDBUF', intOpt(sock, SOL_SOCKET, SO.SNDBUF)], ['SO_RCVBUF', intOpt(sock, SOL_SOCKET, SO.RCVBUF)]] as const)
    if (v & 1) throw refuse(`${name} is ${v}, an odd size (the kernel doubles what is set; not restorable)`);
}

// ---------------------------------------------------------------------------------------------
// restore

/** The creds_entry of the first task (pstree order, as dumped) that holds each file id. */
export function firstHolders(set: ImageSet): Map<number, Msg> {
  const owner = new Map<number, Msg>();
  for (const t of set.tasks)
    for (const e of t.fdinfo ?? []) if (!owner.has(num(e.id)) && t.leader.thread_core?.creds) owner.set(num(e.id), t.leader.thread_core.creds);
  return owner;
}

/** socket(2) in the engine, under the fsuid/fsgid of the task that holds it first. */
export function makeSocket(domain: number, type: number, proto: number, creds?: Msg): number {
  const n = native();
  return creds ? n.socket(domain, type | SOCK_CLOEXEC, proto, num(creds.fsuid), num(creds.fsgid)) : n.socket(domain, type | SOCK_CLOEXEC, proto);
}

export type Setter = (level: number, name: number, v: number | Buffer, label: string) => void;

/** A setsockopt that names the socket and the option when it fails. */
export function setter(fd: number, fail: (what: string, err: unknown) => Error): Setter {
  return (level, name, v, label) => {
    try {
      native().setsockopt(fd, level, name, v);
    } catch (err) {
      throw fail(`setsockopt(${label})`, err);
    }
  };
}

/** The recorded sk_opts, each set only where it differs from what the new socket has. */
export function applySkOpts(fd: number, o: Msg, set: Setter, withFilter = true): void {
  const cur = (name: number) => intOpt(fd, SOL_SOCKET, name);
  const flag = (v: unknown, name: number, label: string) => {
    if (v === undefined) return;
    const want = num(v) ? 1 : 0;
    if ((cur(name) ? 1 : 0) !== want) set(SOL_SOCKET, name, want, label);
  };
  const value = (v: unknown, name: number, label: string) => {
    if (v !== undefined && num(v) !== cur(name)) set(SOL_SOCKET, name, num(v), label);
  };
  if (o.so_bound_dev) set(SOL_SOCKET, SO.BINDTODEVICE, Buffer.from(String(o.so_bound_dev)), 'SO_BINDTODEVICE');
  if (withFilter) attachRecordedFilter(fd, o);
  value(o.so_rcvlowat, SO.RCVLOWAT, 'SO_RCVLOWAT');
  // the kernel doubles a buffer size it is given; FORCE: past the sysctl limits, as root
  if (o.so_sndbuf !== undefined && num(o.so_sndbuf) !== cur(SO.SNDBUF)) set(SOL_SOCKET, SO.SNDBUFFORCE, num(o.so_sndbuf) >> 1, 'SO_SNDBUFFORCE');
  if (o.so_rcvbuf !== undefined && num(o.so_rcvbuf) !== cur(SO.RCVBUF)) set(SOL_SOCKET, SO.RCVBUFFORCE, num(o.so_rcvbuf) >> 1, 'SO_RCVBUFFORCE');
  // setting a size locks it: the recorded locks go back after the sizes
  value(o.so_buf_lock, SO.BUF_LOCK, 'SO_BUF_LOCK');
  value(o.so_mark ?? 0, SO.MARK, 'SO_MARK');
  value(o.so_priority, SO.PRIORITY, 'SO_PRIORITY');
  flag(o.reuseaddr, SO.REUSEADDR, 'SO_REUSEADDR');
  flag(o.so_reuseport, SO.REUSEPORT, 'SO_REUSEPORT');
  flag(o.so_passcred, SO.PASSCRED, 'SO_PASSCRED');
  flag(o.so_passsec, SO.PASSSEC, 'SO_PASSSEC');
  flag(o.so_dontroute, SO.DONTROUTE, 'SO_DONTROUTE');
  flag(o.so_no_check, SO.NO_CHECK, 'SO_NO_CHECK');
  flag(o.so_broadcast, SO.BROADCAST, 'SO_BROADCAST');
  flag(o.so_keepalive, SO.KEEPALIVE, 'SO_KEEPALIVE');
  flag(o.so_oobinline, SO.OOBINLINE, 'SO_OOBINLINE');
  if (o.so_linger !== undefined) {
    const l = Buffer.alloc(8);
    l.writeInt32LE(1, 0);
    l.writeInt32LE(num(o.so_linger), 4);
    set(SOL_SOCKET, SO.LINGER, l, 'SO_LINGER');
  }
  const tv = (sec: unknown, usec: unknown) => {
    const b = Buffer.alloc(16);
    b.writeBigInt64LE(big(sec), 0);
    b.writeBigInt64LE(big(usec), 8);
    return b;
  };
  if (big(o.so_snd_tmo_sec) || big(o.so_snd_tmo_usec)) set(SOL_SOCKET, SO.SNDTIMEO, tv(o.so_snd_tmo_sec, o.so_snd_tmo_usec), 'SO_SNDTIMEO');
  if (big(o.so_rcv_tmo_sec) || big(o.so_rcv_tmo_usec)) set(SOL_SOCKET, SO.RCVTIMEO, tv(o.so_rcv_tmo_sec, o.so_rcv_tmo_usec), 'SO_RCVTIMEO');
}

/** The recorded classic BPF filter in place of what the socket has (none: detached). */
export function attachRecordedFilter(fd: number, o: Msg): void {
  const filter = (o.so_filter ?? []) as unknown[];
  try {
    if (filter.length) native().attachFilter(fd, filterProgram(filter));
    else if (native().getFilter(fd).length) native().setsockopt(fd, SOL_SOCKET, SO.DETACH_FILTER, 0);
  } catch (err) {
    throw new EngineError(`socket filter: ${isNativeError(err) ? err.code : (err as Error).message}`);
  }
}

/** A classic BPF program that drops everything (ret #0). */
export const DROP_ALL = (() => {
  const b = Buffer.alloc(8);
  b.writeUInt16LE(0x06, 0); // BPF_RET | BPF_K
  return b;
})();

/**
 * What the image holds must read back the same after restore (sk_opts and the filter), the
 * rest as a new socket has it, the owner the task's, the file flags the recorded ones.
 */
export function verifySkOpts(fd: number, want: Msg, holdsCreds: boolean, where: string, creds: Msg | undefined, flags: number, foreign: { key: string; opts: Opt[]; fresh: () => number }): void {
  const got = skOpts(fd, holdsCreds);
  const same = (a: unknown, b: unknown) => (typeof a === 'string' || typeof b === 'string' ? String(a ?? '') === String(b ?? '') : big(a === true ? 1 : a === false ? 0 : a) === big(b === true ? 1 : b === false ? 0 : b));
  for (const k of new Set([...Object.keys(want), ...Object.keys(got)])) {
    if (k === 'so_filter' || k.startsWith('tcp_')) continue;
    if (!same(want[k], got[k])) throw new EngineError(`${where}: opts.${k} is ${got[k] ?? 'unset'} after restore, the image says ${want[k] ?? 'unset'}`);
  }
  const filter = socketFilter(fd);
  const words = ((want.so_filter ?? []) as unknown[]).map(big);
  if (filter === 'ebpf' || filter.length !== words.length || filter.some((w, i) => w !== words[i])) throw new EngineError(`${where}: the socket filter differs from the image after restore`);
  const diff = foreignDifference(fd, foreign.key, foreign.opts, foreign.fresh);
  if (diff) throw new EngineError(`${where}: option ${diff.label} is ${diff.have} after restore, a new socket has ${diff.fresh}`);
  const st = fs.fstatSync(fd);
  if (creds && (st.uid !== num(creds.fsuid) || st.gid !== num(creds.fsgid)))
    throw new EngineError(`${where}: made by uid ${st.uid} gid ${st.gid}, not by its task's fsuid ${creds.fsuid} fsgid ${creds.fsgid}`);
  const fl = native().fcntl(fd, F_GETFL) & SETFL;
  if (fl !== (flags & SETFL)) throw new EngineError(`${where}: file flags 0o${fl.toString(8)} after restore, the image says 0o${(flags & SETFL).toString(8)}`);
}

/** The recorded file status flags on the engine's socket (the task's fd shares its description). */
export function applyFileFlags(fd: number, flags: number): void {
  if (flags & SETFL) native().fcntl(fd, F_SETFL, flags & SETFL);
}

/** Refuses file flags fcntl cannot give a socket (restore-side image check). */
export function badFileFlags(flags: number): boolean {
  return (flags & ~(SETFL | O_RDWR | 0o1 | 0o100000 | 0o2000000)) !== 0;
}

/** A socket of files.img made by the engine: its id, its entry (psk, nlsk...), its fd, its first holder's creds. */
export interface MadeSocket {
  id: number;
  entry: Msg;
  fd: number;
  creds?: Msg;
}

/**
 * The sockets of one files.img type, made by the engine before any process (make: the kind's
 * own), one per file id, passed into every task that has it, and closed once they hold them.
 */
export abstract class EngineSockets {
  protected byId = new Map<number, MadeSocket>();

  constructor(protected set: ImageSet, protected log: Log, private type: number, private field: string, private label: string) {}

  fd(id: number): number | undefined {
    return this.byId.get(id)?.fd;
  }

  build(): void {
    const owners = firstHolders(this.set);
    for (const f of this.set.files.values()) {
      if (num(f.type) !== this.type) continue;
      const s: MadeSocket = { id: num(f.id), entry: f[this.field], fd: -1, creds: owners.get(num(f.id)) };
      this.byId.set(s.id, s);
      s.fd = this.make(s);
    }
    if (this.byId.size) this.log.debug(`${this.label}: ${this.byId.size} made`);
  }

  protected abstract make(s: MadeSocket): number;

  /** Closes the engine's copies (the tasks hold their own by now). */
  close(): void {
    for (const s of this.byId.values()) if (s.fd >= 0) try { native().close(s.fd); } catch { /* closed */ }
    for (const s of this.byId.values()) s.fd = -1;
  }
}
