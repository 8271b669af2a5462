// engine dump and restore of packet and netlink sockets (fixtures/engine/packetsk.c, netlinksk.c):
// packet sockets bound to lo with their options, memberships (with their counts), fanout group,
// filter and rings (the rings' mappings recorded as CRIU's socket VMAs and mapped again where they
// were), SOCK_PACKET sockets; netlink sockets with their port ids, groups and peers. Each process
// checks its sockets from the inside after restore (frames and messages arrive where they
// should); what cannot be restored exactly is refused at dump naming task and fd.
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import * as fs from 'fs';
import * as path from 'path';
import { IS_ROOT, SKIP_REASON, tempDir, compile, startTarget, Target, decode, dumpAndReap, restoreOk, runEngine, alive, lastCount, until, pyCritDecode } from './helpers';
import { native } from '../../native';
import { packetDiag } from '../../engine/kinds/packet';

if (!IS_ROOT) console.warn(`SKIPPING packet/netlink socket tests: ${SKIP_REASON}`);

const entries = (dir: string, type: number, key: string) => decode(path.join(dir, 'files.img')).filter((e) => e.type === type).map((e) => e[key]);
const ino = (pid: number, fd: number) => fs.statSync(`/proc/${pid}/fd/${fd}`).ino;
const hex = (b: unknown) => Buffer.from(b as Uint8Array).toString('hex');

/** Starts the fixture in a mode, dumps it, expects the refusal, and that the task runs on. */
async function refused(exe: string, work: string, mode: string, want: (pid: number) => RegExp): Promise<void> {
  const t = startTarget(exe, [mode], work);
  try {
    await t.waitFor(/count=2\n/);
    const dir = path.join(work, `refused-${mode}`);
    const r = runEngine(['dump', '-t', String(t.pid), '-D', dir]);
    expect(r.status).not.toBe(0);
    expect(r.stderr).toMatch(want(t.pid));
    expect(fs.existsSync(dir)).toBe(false);
    expect(alive(t.pid)).toBe(true);
    const c = lastCount(t.output());
    await t.waitFor(new RegExp(`count=${c + 2}\\n`));
  } finally {
    t.kill();
    await until(() => !fs.existsSync(`/proc/${t.pid}`) || !alive(t.pid), 'the refused target to end');
  }
}

describe.skipIf(!IS_ROOT)('engine restore: packet sockets', () => {
  let work: string;
  let exe: string;
  let target: Target | undefined;

  beforeAll(() => {
    work = tempDir('packetsk');
    exe = compile('packetsk', work);
  });

  afterAll(() => {
    target?.kill();
    if (work) fs.rmSync(work, { recursive: true, force: true });
  });

  it('dumps them in CRIU 4.2 layout, rings as socket VMAs, and restores them exactly', async () => {
    target = startTarget(exe, [], work);
    const t = target;
    const m = await t.waitFor(/fds d=(\d+) r=(\d+) v=(\d+) h=(\d+) p=(\d+) q=(\d+)/);
    const [d, r, v, h, p, q] = m.slice(1).map(Number);
    await t.waitFor(/count=2\n/);
    const dir = path.join(work, 'images');
    await dumpAndReap(t.pid, dir);

    const psk = entries(dir, 10, 'psk');
    expect(psk).toHaveLength(6);
    const [pd, pr, pv, ph, pp, pq] = psk;
    // protocols as socket() takes them (network order): 0x88b5 -> 0xb588
    expect(pd).toMatchObject({ type: 2, protocol: 0xb588, ifindex: 1, reserve: 8, aux_data: true, orig_dev: true, loss: true, vnet_hdr: false, timestamp: 64, copy_thresh: 123 });
    expect(pd.flags & 0o4000).toBe(0o4000);
    // the memberships oldest first, one entry per add
    expect(pd.mclist.map((x: any) => [x.index, x.type, hex(x.addr)])).toEqual([[1, 3, '020000000001'], [1, 2, ''], [1, 2, '']]);
    // id 4242, load balance, with the rollover flag (bits 24..31, which sock_diag leaves out)
    expect(pd.fanout).toBe(4242 | (1 << 16) | (0x10 << 24));
    expect(pd.opts).toMatchObject({ so_rcvbuf: 200000, so_priority: 3, so_mark: 7 });
    expect(pd.opts.so_filter).toHaveLength(1);
    expect(pr).toMatchObject({ type: 3, protocol: 0xb688, ifindex: 1, version: 1, rx_ring: { block_size: 4096, block_nr: 2, frame_size: 2048, frame_nr: 4 }, tx_ring: { block_size: 4096, block_nr: 1, frame_size: 2048, frame_nr: 2 } });
    expect(pr.mclist.map((x: any) => x.type)).toEqual([1]);
    expect(pv).toMatchObject({ type: 3, protocol: 0, ifindex: 0, version: 2, rx_ring: { block_size: 8192, block_nr: 2, frame_size: 2048, frame_nr: 8, retire_tmo: 10, sizeof_priv: 16 } });
    expect(pv.tx_ring).toBeUndefined();
    expect(ph).toMatchObject({ type: 3, vnet_hdr: true });
    expect(pp).toMatchObject({ type: 10, protocol: 0xb788, ifindex: 1 });
    expect(pq).toMatchObject({ type: 10, protocol: 0, ifindex: 0 });
    // the ring mappings: VMA_AREA_SOCKET | VMA_AREA_REGULAR naming the socket's file, no pages
    const vmas = decode(path.join(dir, `mm-${t.pid}.img`))[0].vmas.filter((x: any) => x.status & 0x800);
    expect(vmas.map((x: any) => [x.status, x.shmid, Number(x.end - x.start), x.flags & 3, x.prot]).sort()).toEqual([[0x801, pr.id, 3 * 4096, 1, 3], [0x801, pv.id, 2 * 8192, 2, 1]].sort());
    const pm = decode(path.join(dir, `pagemap-${t.pid}.img`)).slice(1);
    for (const x of vmas) expect(pm.some((e: any) => BigInt(e.vaddr) < BigInt(x.end) && BigInt(e.vaddr) + BigInt(e.nr_pages) * 4096n > BigInt(x.start))).toBe(false);
    const py = pyCritDecode(path.join(dir, 'files.img'));
    if (py) expect(py.err).toBe('');

    expect(restoreOk(dir)).toBe(t.pid);
    // memberships with their counts (a drop answers the same whether one was held or not)
    const diag = packetDiag();
    expect(diag.get(ino(t.pid, d))!.mclist.map((x) => [x.type, x.count]).sort()).toEqual([[2, 2], [3, 1]]);
    expect(diag.get(ino(t.pid, r))!.mclist.map((x) => [x.type, x.count])).toEqual([[1, 1]]);
    for (const fd of [v, h, p, q]) expect(diag.get(ino(t.pid, fd))).toBeDefined();
    fs.writeFileSync(path.join(work, 'go'), '');
    await t.waitFor(/^packet (ok|fail.*)$/m);
    expect(t.output()).toMatch(/^packet ok$/m);
    t.kill();
  });

  it('refuses packets not read yet, in the queue or in a ring, naming task and fd, and the task runs on', async () => {
    fs.rmSync(path.join(work, 'go'), { force: true });
    await refused(exe, work, 'queued', (pid) => new RegExp(`^engine: task ${pid} fd \\d+: packet socket \\(SOCK_DGRAM, protocol 0x88b5\\): \\d+ bytes of packets received and not read yet \\(they would be lost; not supported\\)\n$`));
    await refused(exe, work, 'ringframe', (pid) => new RegExp(`^engine: task ${pid} fd \\d+: packet socket \\(SOCK_RAW, protocol 0x88b6\\): its RX ring at byte \\d+ holds what a new ring does not \\(packets, or frames written by the task; not restorable\\)\n$`));
  });

  it('refuses a ring the task changed in a private mapping, or maps without holding its socket', async () => {
    await refused(exe, work, 'cow', (pid) => new RegExp(`^engine: task ${pid} mapping [0-9a-f]+-[0-9a-f]+ \\(socket:\\[\\d+\\]\\): the task sees what a new ring does not have in its RX ring at byte 100 `));
    await refused(exe, work, 'nofd', (pid) => new RegExp(`^engine: task ${pid} mapping [0-9a-f]+-[0-9a-f]+ \\(socket:\\[\\d+\\]\\): the task holds no fd of the socket in its own fd table `));
  });

  it('refuses what the image cannot hold: an option it has no field for, a fanout group steered by a program', async () => {
    await refused(exe, work, 'qdisc', (pid) => new RegExp(`^engine: task ${pid} fd \\d+: packet socket \\(SOCK_RAW, protocol 0x0000\\): option PACKET_QDISC_BYPASS is 1, a new socket has 0 \\(CRIU images have no field for it; not supported\\)\n$`));
    await refused(exe, work, 'fanoutbpf', (pid) => new RegExp(`^engine: task ${pid} fd \\d+: packet socket \\(SOCK_DGRAM, protocol 0x88b5\\): in fanout group 4242 steered by a BPF program \\(the program cannot be read back; not supported\\)\n$`));
  });
});

describe.skipIf(!IS_ROOT)('engine restore: netlink sockets', () => {
  let work: string;
  let exe: string;
  let target: Target | undefined;

  beforeAll(() => {
    work = tempDir('netlinksk');
    exe = compile('netlinksk', work);
  });

  afterAll(() => {
    target?.kill();
    if (work) fs.rmSync(work, { recursive: true, force: true });
  });

  it('dumps them in CRIU 4.2 layout and restores port ids, groups and peers; a taken port id fails the restore cleanly', async () => {
    target = startTarget(exe, [], work);
    const t = target;
    const m = await t.waitFor(/ports a=(\d+) b=(\d+) c=(\d+) m=(\d+) k=(\d+)/);
    const [pa, pb, pc, pm, pk] = m.slice(1).map(Number);
    await t.waitFor(/count=2\n/);
    const dir = path.join(work, 'images');
    await dumpAndReap(t.pid, dir);

    const nl = entries(dir, 13, 'nlsk');
    expect(nl).toHaveLength(6);
    const [a, b, c, mm, k, u] = nl;
    expect(a).toMatchObject({ protocol: 2, portid: pa, dst_portid: 0, dst_group: 0 });
    expect(a.opts).toMatchObject({ so_passcred: true, so_rcvbuf: 300000, so_rcv_tmo_sec: 2, so_rcv_tmo_usec: 500000 });
    expect(a.opts.so_filter).toHaveLength(1);
    expect(b).toMatchObject({ protocol: 2, portid: pb, groups: [(1 << 4) | (1 << 9)] });
    expect(c).toMatchObject({ protocol: 2, portid: pc, state: 1, dst_portid: pa, dst_group: 0 });
    expect(mm).toMatchObject({ protocol: 2, portid: pm, state: 1, dst_portid: pa, dst_group: 5 });
    expect(k).toMatchObject({ protocol: 0, portid: pk });
    expect(k.flags & 0o4000).toBe(0o4000);
    expect(u).toMatchObject({ protocol: 0, portid: 0, state: 0 });
    const py = pyCritDecode(path.join(dir, 'files.img'));
    if (py) expect(py.err).toBe('');

    // someone holds a's port id meanwhile: the restore fails and creates nothing
    const n = native();
    const squatter = n.socket(16, 3 | 0o2000000, 2);
    try {
      const addr = Buffer.alloc(12);
      addr.writeUInt16LE(16, 0);
      addr.writeUInt32LE(pa, 4);
      n.sockBind(squatter, addr);
      const r = runEngine(['restore', '-D', dir, '-d']);
      expect(r.status).not.toBe(0);
      expect(r.stderr).toBe(`engine: files.img: id ${a.id}: netlink socket (NETLINK_USERSOCK): cannot bind port id ${pa} again: EADDRINUSE\n`);
      expect(fs.existsSync(`/proc/${t.pid}`)).toBe(false);
    } finally {
      n.close(squatter);
    }

    expect(restoreOk(dir)).toBe(t.pid);
    fs.writeFileSync(path.join(work, 'go'), '');
    await t.waitFor(/^netlink (ok|fail.*)$/m);
    expect(t.output()).toMatch(/^netlink ok$/m);
    t.kill();
  });

  it('refuses messages not read yet, naming task and fd, and the task runs on', async () => {
    fs.rmSync(path.join(work, 'go'), { force: true });
    await refused(exe, work, 'queued', (pid) => new RegExp(`^engine: task ${pid} fd \\d+: netlink socket \\(NETLINK_USERSOCK\\): \\d+ bytes of messages received and not read yet \\(they would be lost; not supported\\)\n$`));
  });

  it('refuses what the image cannot hold: kernel-side state, a socket type, flags, groups', async () => {
    const pre = (pid: number, proto: string) => `^engine: task ${pid} fd \\d+: netlink socket \\(NETLINK_${proto}\\): `;
    await refused(exe, work, 'generic', (pid) => new RegExp(`${pre(pid, 'GENERIC')}the kernel keeps state of its own for such a socket`));
    await refused(exe, work, 'dgram', (pid) => new RegExp(`${pre(pid, 'ROUTE')}of type SOCK_DGRAM \\(the image has no socket type`));
    await refused(exe, work, 'noenobufs', (pid) => new RegExp(`${pre(pid, 'ROUTE')}option NETLINK_NO_ENOBUFS is 1, a new socket has 0 \\(CRIU images have no field for it; not supported\\)\n$`));
    await refused(exe, work, 'bigroup', (pid) => new RegExp(`${pre(pid, 'ROUTE')}subscribed to groups above 32 `));
    await refused(exe, work, 'unboundgroups', (pid) => new RegExp(`${pre(pid, 'USERSOCK')}subscribed to groups without a port id `));
  });
});
