// Linux AIO contexts (io_setup): the ring a context maps into its process ("/[aio] (deleted)" in
// maps), both halves, in CRIU 4.2's layout: the VMA is recorded with status VMA_AREA_AIORING and
// all its pages, and mm.img's `aios` names each ring (id = its address, ring_len, and the nr_req
// that makes a ring of that size again). Completed events not yet reaped live in the ring and
// come back with it; requests still in flight live only in the kernel and cannot be made again.
//
// Dump: the kernel shows no count of requests in flight, so it is measured. Every request takes a
// slot out of nr - 1 (nr: the ring's events) when submitted and its slot comes back once its event
// is reaped. Slots move between a global counter and per-CPU caches in batches of
// (nr - 1) / (4 * possible CPUs), so the global counter always keeps (nr - 1) mod batch of them out
// of reach. Submitting 1-byte writes to a memfd (they complete at once) until io_submit says
// EAGAIN, on every CPU whose cache may hold slots, takes all others: what is missing then was
// taken by requests in flight. After the count, the ring is turned once all the way round (nr
// such writes in all, their events reaped by moving the head), so the kernel's own tail is back
// where it was, and the ring's memory is written back as it was found: the task sees nothing.
// A ring mapped by a task without a context of its own (inherited through fork) is refused.
//
// Restore: a placeholder holds the dumped ring's pages (restore/memory); then io_setup(nr_req)
// makes a new context, requests are submitted and reaped until the kernel's tail and the ring's
// head are the dumped ones, the events area is copied in and the new ring is moved onto the
// placeholder with mremap. Contexts are made in the order of their kernel ids, gaps filled with
// contexts destroyed afterwards, so each ring keeps its id.
import * as fs from 'fs';
import type { Msg } from '../../images/codec';
import { VMA } from '../../images/flags';
import { native } from '../../native';
import type { RemoteSyscalls } from '../inject';
import { isErr } from '../inject';
import type { Vma } from '../proc/maps';
import { procPath, readProc } from '../proc/read';
import { EngineError, UnsupportedError } from '../errors';
import type { Proc } from '../restore/context';
import { ImageError, big, num } from '../restore/imageset';

const NR = {
  close: 3, mmap: 9, munmap: 11, sched_yield: 24, mremap: 25, mlock: 149, sched_setaffinity: 203, sched_getaffinity: 204,
  io_setup: 206, io_destroy: 207, io_getevents: 208, io_submit: 209, memfd_create: 319,
} as const;
const EAGAIN = 11, EINVAL = 22;
const MAP_SHARED = 0x1, MAP_LOCKED = 0x2000, MREMAP_MAYMOVE = 1, MREMAP_FIXED = 2, MFD_CLOEXEC = 1;
const S_IFMT = 0o170000;
const IOCB_CMD_PWRITE = 1;
/** struct aio_ring (the header) and struct io_event */
const HEADER = 32, EVENT = 32;
const RING_MAGIC = 0xa10a10a1, COMPAT_FEATURES = 1, INCOMPAT_FEATURES = 0;
/** aio_data of the engine's own requests */
const TAG = 0x656e67696e65n;
/** the task's work area: iocb, its byte, the context pointer, two cpu masks, then the iocb pointers */
const AREA = 128 * 1024, BYTE_AT = 64, CTXP_AT = 72, MASK_AT = 128, PIN_AT = 256, MASK_LEN = 128, PTRS_AT = 512;
const CAP = (AREA - PTRS_AT) / 8;
/** io_submit calls in a row that may find no slot before the engine gives up */
const PATIENCE = 64;

const hex = (v: bigint | number) => '0x' + v.toString(16);

interface Header {
  id: number;
  nr: number;
  head: number;
  tail: number;
  magic: number;
  compat: number;
  incompat: number;
  headerLength: number;
}

function header(b: Buffer): Header {
  const u = (i: number) => b.readUInt32LE(i * 4);
  return { id: u(0), nr: u(1), head: u(2), tail: u(3), magic: u(4), compat: u(5), incompat: u(6), headerLength: u(7) };
}

/** The events a ring of len bytes holds. */
const eventsIn = (len: number) => Math.floor((len - HEADER) / EVENT);

/** What is wrong with a ring's header for a VMA of len bytes, if anything. */
function insane(h: Header, len: number): string | undefined {
  if (h.magic !== RING_MAGIC || h.compat !== COMPAT_FEATURES || h.incompat !== INCOMPAT_FEATURES || h.headerLength !== HEADER)
    return `its header is not the kernel's (magic ${hex(h.magic)}, features ${h.compat}/${h.incompat}, header length ${h.headerLength})`;
  if (h.nr !== eventsIn(len)) return `it says ${h.nr} events, the mapping of ${len} bytes holds ${eventsIn(len)}`;
  if (h.head >= h.nr || h.tail >= h.nr) return `head ${h.head} or tail ${h.tail} is outside its ${h.nr} events`;
  return undefined;
}

/** Is this VMA an AIO ring? Its name, and the anonymous inode of the kernel's aio mount behind it. */
export function isAioRing(pid: number, v: Pick<Vma, 'name' | 'start' | 'end'>): boolean {
  if (!v.name.startsWith('/[aio]')) return false;
  try {
    return (fs.statSync(procPath(pid, 'map_files', `${v.start.toString(16)}-${v.end.toString(16)}`)).mode & S_IFMT) === 0;
  } catch {
    return false;
  }
}

/**
 * mm.img's nr_req for a ring of len bytes, as CRIU 4.2 writes it: the kernel makes a ring of
 * 2 * nr_req + 2 events (rounded up to whole pages), so half of what the ring holds, less one.
 */
export function nrReqFor(len: number): number {
  return Math.floor((eventsIn(len) - 2) / 2);
}

/** mm.img's aios for the planned VMAs (none: the field stays out). */
export function aioRingEntries(vmas: { entry: Msg; start: bigint; end: bigint }[]): { aios?: Msg[] } {
  const aios = vmas.filter((v) => num(v.entry.status) & VMA.AIORING).map((v) => ({ id: v.start, nr_req: nrReqFor(Number(v.end - v.start)), ring_len: Number(v.end - v.start) }));
  return aios.length ? { aios } : {};
}

function cpuList(file: string): number[] {
  const out: number[] = [];
  for (const part of fs.readFileSync(file, 'utf8').trim().split(',')) {
    if (!part) continue;
    const [a, b] = part.split('-').map(Number);
    for (let c = a; c <= (b ?? a); c++) out.push(c);
  }
  return out;
}

function cpuMask(cpus: number[]): Buffer {
  const b = Buffer.alloc(MASK_LEN);
  for (const c of cpus) if (c < MASK_LEN * 8) b[c >> 3] |= 1 << (c & 7);
  return b;
}

/** A thread's whole affinity mask (Cpus_allowed: offline CPUs too, which sched_getaffinity leaves out). */
function cpusAllowed(pid: number, tid: number): Buffer {
  const line = /^Cpus_allowed:\s*([0-9a-f,]+)$/m.exec(readProc(pid, 'task', String(tid), 'status'));
  if (!line) throw new EngineError(`task ${pid} thread ${tid}: no Cpus_allowed in its status`);
  const v = BigInt('0x' + line[1].replace(/,/g, ''));
  const b = Buffer.alloc(MASK_LEN);
  for (let i = 0; i < MASK_LEN; i++) b[i] = Number((v >> BigInt(8 * i)) & 0xffn);
  if (v >> BigInt(8 * MASK_LEN)) throw new EngineError(`task ${pid} thread ${tid}: an affinity mask of more than ${MASK_LEN * 8} CPUs`);
  return b;
}

/** System calls in one thread of the task, raw results (-errno), and its memory. */
interface Task {
  call(what: string, nr: number, ...args: (number | bigint)[]): bigint;
  read(addr: bigint, len: number): Buffer;
  write(addr: bigint, data: Uint8Array): void;
}

function u32(v: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(v >>> 0);
  return b;
}

/** The work area's contents: one iocb writing one byte to fd at offset 0, and CAP pointers to it. */
function workArea(area: bigint, fd: bigint): Buffer {
  const b = Buffer.alloc(AREA);
  b.writeBigUInt64LE(TAG, 0); // aio_data
  b.writeUInt16LE(IOCB_CMD_PWRITE, 16);
  b.writeUInt32LE(Number(fd), 20);
  b.writeBigUInt64LE(area + BigInt(BYTE_AT), 24); // aio_buf
  b.writeBigUInt64LE(1n, 32); // aio_nbytes
  for (let i = 0; i < CAP; i++) b.writeBigUInt64LE(area, PTRS_AT + i * 8);
  return b;
}

/** A memfd of the task's to write to (any path could be missing in its root) and the work area for it. */
function prepareWrites(t: Task, area: bigint, who: string): bigint {
  t.write(area + BigInt(BYTE_AT), Buffer.alloc(8)); // "" for the memfd's name
  const fd = t.call('memfd_create', NR.memfd_create, area + BigInt(BYTE_AT), MFD_CLOEXEC);
  if (isErr(fd)) throw new EngineError(`${who}: memfd_create failed (errno ${-fd})`);
  t.write(area, workArea(area, fd));
  return fd;
}

/** io_submit of up to n of the engine's writes: how many went in, or -EAGAIN when none found a slot. */
function submit(t: Task, ctx: bigint, area: bigint, n: number, who: string): number {
  const r = t.call('io_submit', NR.io_submit, ctx, Math.min(n, CAP), area + BigInt(PTRS_AT));
  if (r === BigInt(-EAGAIN)) return -EAGAIN;
  if (isErr(r)) throw new EngineError(`${who}: io_submit failed (errno ${-r})`);
  return Number(r);
}

const tailOf = (t: Task, ring: bigint) => t.read(ring + 12n, 4).readUInt32LE(0);
const setHead = (t: Task, ring: bigint, head: number) => t.write(ring + 8n, u32(head));

// ---------------------------------------------------------------------------------------------
// dump

/**
 * Dump half, while the task is stopped and the engine can inject: every ring is checked and
 * proven to hold no request in flight, and left exactly as it was. Throws UnsupportedError naming
 * the task and the context otherwise.
 */
export function checkAioRings(remote: RemoteSyscalls, pid: number, vmas: Vma[], debug: (m: string) => void = () => {}): void {
  const rings = vmas.filter((v) => isAioRing(pid, v));
  if (!rings.length) return;
  const n = native();
  const t: Task = {
    call: (_what, nr, ...args) => remote.one(pid, nr, ...args),
    read: (addr, len) => {
      const b = Buffer.alloc(len);
      n.readMemory(pid, addr, b);
      return b;
    },
    write: (addr, data) => void n.writeMemory(pid, addr, data),
  };
  const area = t.call('mmap', NR.mmap, 0, AREA, 3, 0x22, -1, 0);
  if (isErr(area)) throw new EngineError(`task ${pid}: injected mmap failed (errno ${-area})`);
  try {
    for (const v of rings) probeRing(t, pid, v, area, debug);
  } finally {
    t.call('munmap', NR.munmap, area, AREA);
  }
}

function probeRing(t: Task, pid: number, v: Vma, area: bigint, debug: (m: string) => void): void {
  const who = `task ${pid}: AIO context ${hex(v.start)}`;
  const len = Number(v.end - v.start);
  const ring = v.start;
  const saved = t.read(ring, len);
  const h = header(saved);
  const bad = insane(h, len);
  if (bad) throw new UnsupportedError(`${who}: not a ring this engine can restore: ${bad}`);
  // the count writes the ring's head (the kernel writes the ring through its own mapping whatever its protection)
  if (!v.read || !v.write) throw new UnsupportedError(`${who}: the ring's protection was changed (${v.read ? 'r' : '-'}${v.write ? 'w' : '-'}); only a readable and writable ring is dumped`);
  // a context of this process? A ring mapped through fork has none (io_getevents says EINVAL)
  const own = t.call('io_getevents', NR.io_getevents, ring, 0, 0, 0, 0);
  if (own === BigInt(-EINVAL)) throw new UnsupportedError(`${who}: the ring is mapped but the context is not this process's (a mapping inherited through fork); it cannot be made again`);
  if (isErr(own)) throw new EngineError(`${who}: io_getevents failed (errno ${-own})`);
  const nr = h.nr;
  const possible = cpuList('/sys/devices/system/cpu/possible').length;
  const batch = Math.max(1, Math.floor((nr - 1) / (possible * 4)));
  const unreachable = (nr - 1) % batch;
  const waiting = (h.tail - h.head + nr) % nr;

  const fd = prepareWrites(t, area, who);
  // the thread is moved between CPUs only when slots are missing (its affinity is put back after)
  let original: Buffer | undefined;
  const pin = (cpu: number): boolean => {
    if (!original) original = cpusAllowed(pid, pid);
    t.write(area + BigInt(PIN_AT), cpuMask([cpu]));
    return !isErr(t.call('sched_setaffinity', NR.sched_setaffinity, 0, MASK_LEN, area + BigInt(PIN_AT)));
  };
  // events completed meanwhile by requests the task had in flight
  const foreign: Buffer[] = [];
  let seen = h.tail;
  const scan = () => {
    const now = tailOf(t, ring);
    const count = (now - seen + nr) % nr;
    if (count) {
      const first = Math.min(count, nr - seen);
      const evs = Buffer.concat([t.read(ring + BigInt(HEADER + seen * EVENT), first * EVENT), ...(count > first ? [t.read(ring + BigInt(HEADER), (count - first) * EVENT)] : [])]);
      for (let i = 0; i < count; i++) {
        const e = evs.subarray(i * EVENT, (i + 1) * EVENT);
        if (e.readBigUInt64LE(0) !== TAG || e.readBigUInt64LE(8) !== area) foreign.push(Buffer.from(e));
      }
    }
    seen = now;
  };
  let taken = 0;
  const drain = () => {
    for (;;) {
      const got = submit(t, ring, area, nr, who);
      if (got === -EAGAIN) return;
      taken += got;
      if (got < Math.min(nr, CAP)) return;
    }
  };
  let damaged = true;
  try {
    // 1. every slot within reach: first wherever the thread runs, then on each CPU in turn
    drain();
    scan();
    let missing = nr - 1 - unreachable - waiting - taken - foreign.length;
    const online = cpuList('/sys/devices/system/cpu/online');
    let unpinnable = possible - online.length;
    if (missing > 0 && !foreign.length) {
      for (const cpu of online) {
        if (pin(cpu)) drain();
        else unpinnable++;
      }
      scan();
      missing = nr - 1 - unreachable - waiting - taken - foreign.length;
    }
    debug(`${who}: ${nr} events, ${waiting} waiting, ${taken} slots taken by the engine${original ? ' (the thread moved to each CPU)' : ''}, ${unreachable} out of reach, ${missing} missing, ${foreign.length} completed meanwhile`);
    // 2. once round: nr writes in all, so the kernel's tail is where it was (plus what completed meanwhile)
    let left = taken ? nr - taken : 0;
    let idle = 0;
    while (left > 0) {
      scan();
      // the engine's events reaped, the task's own kept: their slots stay taken
      setHead(t, ring, (seen - waiting - foreign.length + 2 * nr) % nr);
      const got = submit(t, ring, area, left, who);
      if (got === -EAGAIN) {
        // the freed slots went to a CPU the thread left: follow them
        if (++idle > PATIENCE) throw new EngineError(`${who}: no slot came free while the ring was turned back`);
        if (idle % 4 === 0) pin(online[(idle / 4) % online.length]);
        else t.call('sched_yield', NR.sched_yield);
        continue;
      }
      idle = 0;
      left -= got;
    }
    scan();
    // 3. the ring's memory as it was: the task's events in their places, its own completions after them
    const tail = (h.tail + foreign.length) % nr;
    if (tailOf(t, ring) !== tail && !foreign.length) throw new EngineError(`${who}: the ring's tail is ${tailOf(t, ring)} after the count, not ${tail}`);
    if (!foreign.length) {
      t.write(ring + BigInt(HEADER), saved.subarray(HEADER));
    } else {
      for (let i = 0; i < waiting; i++) {
        const p = (h.head + i) % nr;
        t.write(ring + BigInt(HEADER + p * EVENT), saved.subarray(HEADER + p * EVENT, HEADER + (p + 1) * EVENT));
      }
      foreign.forEach((e, i) => t.write(ring + BigInt(HEADER + ((h.tail + i) % nr) * EVENT), e));
    }
    setHead(t, ring, h.head);
    if (!foreign.length && !t.read(ring, len).equals(saved)) throw new EngineError(`${who}: the ring's memory differs from what it was before the count`);
    damaged = false;
    if (missing < 0) throw new UnsupportedError(`${who}: its request slots do not add up (${-missing} more free than the ring allows); whether requests are in flight cannot be told`);
    if (missing + foreign.length > 0) {
      const held = unpinnable ? ` (or slots held by ${unpinnable} CPU(s) the thread cannot be moved to)` : '';
      const meanwhile = foreign.length ? `, ${foreign.length} of them completed during the dump` : '';
      throw new UnsupportedError(`${who}: ${missing + foreign.length} request(s) submitted and not completed: in flight${meanwhile}${held}; requests in flight cannot be restored`);
    }
  } catch (e) {
    if (damaged) throw new EngineError(`${(e as Error).message}; the context's ring may be left damaged`);
    throw e;
  } finally {
    t.call('close', NR.close, fd);
    if (original) {
      t.write(area + BigInt(MASK_AT), original);
      const r = t.call('sched_setaffinity', NR.sched_setaffinity, 0, MASK_LEN, area + BigInt(MASK_AT));
      if (isErr(r)) throw new EngineError(`task ${pid}: its CPU affinity could not be set back (errno ${-r})`);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// restore

/** Restore-side check of mm.img: every ring VMA has its aios entry and every entry its VMA. */
export function checkAioImage(image: string, mm: Msg): void {
  const vmas = (mm.vmas ?? []) as Msg[];
  const aios = (mm.aios ?? []) as Msg[];
  const rings = new Map<bigint, number>();
  vmas.forEach((v, i) => {
    const st = num(v.status);
    if (!(st & VMA.AIORING)) return;
    const at = hex(big(v.start));
    if (st !== VMA.AIORING) throw new ImageError(image, `vmas[${i}].status`, `0x${st.toString(16)} at ${at}: an AIO ring with other status bits`);
    if (!(num(v.flags) & MAP_SHARED)) throw new ImageError(image, `vmas[${i}].flags`, `the AIO ring at ${at} is not a shared mapping`);
    rings.set(big(v.start), Number(big(v.end) - big(v.start)));
  });
  const seen = new Set<bigint>();
  aios.forEach((a, i) => {
    const len = rings.get(big(a.id));
    if (len === undefined) throw new ImageError(image, `aios[${i}].id`, `no AIO ring VMA at ${hex(big(a.id))}`);
    if (num(a.ring_len) !== len) throw new ImageError(image, `aios[${i}].ring_len`, `${a.ring_len}, the VMA at ${hex(big(a.id))} is ${len} bytes`);
    if (num(a.nr_req) < 1) throw new ImageError(image, `aios[${i}].nr_req`, `${a.nr_req}`);
    seen.add(big(a.id));
  });
  for (const [start] of rings) if (!seen.has(start)) throw new ImageError(image, 'aios', `the AIO ring VMA at ${hex(start)} has no aios entry`);
}

/**
 * Restore half, once the task's VMAs are mapped and their pages read (each ring's placeholder
 * holds the dumped ring): the contexts made again, each ring moved onto its placeholder.
 */
export function restoreAioRings(p: Proc): void {
  const mm = p.img.mm!;
  const aios = (mm.aios ?? []) as Msg[];
  if (!aios.length) return;
  const image = `mm-${p.img.pid}.img`;
  const n = native();
  const r = p.remote;
  const t: Task = {
    call: (what, nr, ...args) => r.run(p.host, [{ nr, args, what, mayFail: true }])[0],
    read: (addr, len) => r.read(addr, len),
    write: (addr, data) => void n.writeMemory(p.host, addr, data),
  };
  const vmas = (mm.vmas ?? []) as Msg[];
  const rings = aios.map((a, i) => {
    const start = big(a.id), len = num(a.ring_len);
    const saved = t.read(start, len);
    const h = header(saved);
    const bad = insane(h, len);
    if (bad) throw new ImageError(image, `aios[${i}]`, `the dumped ring at ${hex(start)}: ${bad}`);
    const vma = vmas.find((v) => big(v.start) === start)!;
    return { i, start, len, nrReq: num(a.nr_req), saved, h, locked: (num(vma.flags) & MAP_LOCKED) !== 0 };
  }).sort((a, b) => a.h.id - b.h.id);
  for (let k = 1; k < rings.length; k++) if (rings[k].h.id === rings[k - 1].h.id) throw new ImageError(image, `aios[${rings[k].i}]`, `two rings with the kernel id ${rings[k].h.id}`);
  const maxId = rings[rings.length - 1].h.id;
  if (maxId > 4096) throw new ImageError(image, `aios[${rings[rings.length - 1].i}]`, `kernel id ${maxId} is out of range`);
  r.reset();
  const area = r.alloc(AREA);
  const must = (what: string, v: bigint) => {
    if (isErr(v)) throw new EngineError(`task ${p.img.pid}: ${what} failed (errno ${-v})`, 'EINJECT');
    return v;
  };
  // one CPU for all of it: a fresh context's slots then never wait in another CPU's cache
  const maskLen = Number(must('sched_getaffinity', t.call('sched_getaffinity', NR.sched_getaffinity, 0, MASK_LEN, area + BigInt(MASK_AT))));
  const mask = t.read(area + BigInt(MASK_AT), maskLen);
  let cpu = 0;
  while (cpu < maskLen * 8 && !(mask[cpu >> 3] & (1 << (cpu & 7)))) cpu++;
  t.write(area + BigInt(PIN_AT), cpuMask([cpu]));
  must('sched_setaffinity', t.call('sched_setaffinity', NR.sched_setaffinity, 0, MASK_LEN, area + BigInt(PIN_AT)));
  let fd = -1n;
  const setup = (nrReq: number): bigint => {
    t.write(area + BigInt(CTXP_AT), Buffer.alloc(8));
    must(`io_setup(${nrReq})`, t.call(`io_setup(${nrReq})`, NR.io_setup, nrReq, area + BigInt(CTXP_AT)));
    return t.read(area + BigInt(CTXP_AT), 8).readBigUInt64LE(0);
  };
  try {
    const fillers: bigint[] = [];
    let id = 0;
    for (const ring of rings) {
      // kernel ids are table slots taken in order: an unused one is held by a context destroyed later
      for (; id < ring.h.id; id++) fillers.push(setup(1));
      id++;
      const who = `${image}: aios[${ring.i}] (ring at ${hex(ring.start)})`;
      const ctx = setup(ring.nrReq);
      const fresh = header(t.read(ctx, HEADER));
      if (fresh.nr !== ring.h.nr) throw new EngineError(`${who}: io_setup(${ring.nrReq}) made a ring of ${fresh.nr} events here; the dumped one has ${ring.h.nr}`, 'EIMAGE');
      if (fresh.id !== ring.h.id) throw new EngineError(`${who}: the new context has the kernel id ${fresh.id}, not ${ring.h.id}`);
      const { head, tail, nr } = ring.h;
      if (head || tail) {
        // the kernel's tail moves only by completions: as many as bring it to the dumped tail
        // (a whole turn first when the tail is behind the head), reaped up to the dumped head
        if (fd < 0n) fd = prepareWrites(t, area, who);
        const count = tail >= head ? tail : nr + tail;
        let done = 0, idle = 0;
        while (done < count) {
          const got = submit(t, ctx, area, count - done, who);
          if (got === -EAGAIN) {
            if (++idle > PATIENCE) throw new EngineError(`${who}: no request slot came free while the ring was refilled`);
            continue;
          }
          idle = 0;
          done += got;
          setHead(t, ctx, done < head ? done : head);
        }
      }
      t.write(ctx + BigInt(HEADER), ring.saved.subarray(HEADER));
      const at = must(`mremap of the new ring to ${hex(ring.start)}`, t.call('mremap', NR.mremap, ctx, ring.len, ring.len, MREMAP_MAYMOVE | MREMAP_FIXED, ring.start));
      if (at !== ring.start) throw new EngineError(`${who}: the new ring landed at ${hex(at)}`);
      if (ring.locked) must(`mlock(${hex(ring.start)})`, t.call('mlock', NR.mlock, ring.start, ring.len));
      if (!t.read(ring.start, ring.len).equals(ring.saved)) throw new EngineError(`${who}: the ring differs from the dumped one after it was made again`);
    }
    for (const f of fillers) must('io_destroy', t.call('io_destroy', NR.io_destroy, f));
  } finally {
    if (fd >= 0n) t.call('close', NR.close, fd);
    t.write(area + BigInt(MASK_AT), mask);
    t.call('sched_setaffinity', NR.sched_setaffinity, 0, maskLen, area + BigInt(MASK_AT));
  }
}
