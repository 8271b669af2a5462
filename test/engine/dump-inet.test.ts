// engine dump of IPv4 sockets: a TCP listener and UDP sockets with the inet_sk_entry fields of
// CRIU 4.2 (corpus fdkinds/), values checked against what the program set up; the program
// still serves on them afterwards. An established TCP connection is refused by name.
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import * as dgram from 'dgram';
import * as fs from 'fs';
import * as net from 'net';
import * as path from 'path';
import { IS_ROOT, SKIP_REASON, tempDir, compile, startTarget, runEngine, decode, alive, lastCount, consecutive, Target, dumpOk } from './helpers';
import { CORPUS, checkAllImagesDecode, fdTable } from './dump-support';

if (!IS_ROOT) console.warn(`SKIPPING engine inet tests: ${SKIP_REASON}`);

const LOOPBACK = 0x0100007f; // 127.0.0.1 as CRIU stores it (network order read little-endian)

/** Field names of a message and of its sub-messages, as paths. */
function shape(m: Record<string, unknown>, prefix = ''): string[] {
  const out: string[] = [];
  for (const [k, v] of Object.entries(m)) {
    out.push(prefix + k);
    if (v && typeof v === 'object' && !Array.isArray(v) && !(v instanceof Uint8Array) && typeof v !== 'bigint') out.push(...shape(v as Record<string, unknown>, `${prefix}${k}.`));
  }
  return out.sort();
}

describe.skipIf(!IS_ROOT)('engine dump: IPv4 sockets', () => {
  let work: string;
  let exe: string;
  let target: Target;
  let dir: string;
  let fds: { lsn: number; lport: number; udp: number; uport: number; udp2: number };
  let table: Map<number, [any, any]>;
  const others: Target[] = [];

  beforeAll(async () => {
    work = tempDir('inet');
    exe = compile('inet', work);
    target = startTarget(exe, [], work);
    const m = await target.waitFor(/inet lsn=(\d+):(\d+) udp=(\d+):(\d+) udp2=(\d+)/);
    fds = { lsn: +m[1], lport: +m[2], udp: +m[3], uport: +m[4], udp2: +m[5] };
    await target.waitFor(/count=2\n/);
    dir = path.join(work, 'images');
    dumpOk(target.pid, dir, '--leave-running');
    table = fdTable(dir, decode(path.join(dir, `ids-${target.pid}.img`))[0].files_id);
  });

  afterAll(() => {
    target?.kill();
    for (const o of others) o.kill();
    if (work) fs.rmSync(work, { recursive: true, force: true });
  });

  it('writes INETSK entries with the fields of CRIU 4.2, all decodable', () => {
    checkAllImagesDecode(dir);
    for (const fd of [fds.lsn, fds.udp, fds.udp2]) {
      const [info, f] = table.get(fd)!;
      expect(info.type).toBe(4);
      expect(f.type).toBe(4);
    }
    const corpus = path.join(CORPUS, 'fdkinds', 'files.img');
    if (!fs.existsSync(corpus)) return;
    const theirs = decode(corpus).filter((e) => e.type === 4);
    const theirTcp = theirs.find((e) => e.isk.proto === 6).isk;
    const theirUdp = theirs.find((e) => e.isk.proto === 17).isk;
    const tcp = table.get(fds.lsn)![1].isk;
    const udp = table.get(fds.udp)![1].isk;
    expect(shape(tcp)).toEqual(shape(theirTcp));
    expect(shape(udp)).toEqual(shape(theirUdp));
    // defaults the kernel gives every socket of these kinds: the same values as CRIU recorded
    expect(tcp.tcp_opts).toEqual(theirTcp.tcp_opts);
    expect(tcp.ip_opts).toEqual(theirTcp.ip_opts);
    expect(udp.tcp_opts).toEqual(theirUdp.tcp_opts);
    expect(udp.ip_opts).toEqual(theirUdp.ip_opts);
    expect({ ...tcp.opts, so_sndbuf: 0, so_rcvbuf: 0 }).toEqual({ ...theirTcp.opts, so_sndbuf: 0, so_rcvbuf: 0 });
    expect({ ...udp.opts, so_sndbuf: 0, so_rcvbuf: 0 }).toEqual({ ...theirUdp.opts, so_sndbuf: 0, so_rcvbuf: 0 });
  });

  it('records addresses, ports, states and backlog from the live sockets', () => {
    const netNs = decode(path.join(dir, `ids-${target.pid}.img`))[0].net_ns_id;
    const ino = (fd: number) => Number(/\[(\d+)\]/.exec(fs.readlinkSync(`/proc/${target.pid}/fd/${fd}`))![1]);
    const tcp = table.get(fds.lsn)![1].isk;
    expect(tcp).toMatchObject({
      ino: ino(fds.lsn), family: 2, type: 1, proto: 6, state: 10, src_port: fds.lport, dst_port: 0, flags: 2, backlog: 8,
      src_addr: [LOOPBACK], dst_addr: [0], ns_id: netNs,
    });
    const udp = table.get(fds.udp)![1].isk;
    expect(udp).toMatchObject({ ino: ino(fds.udp), family: 2, type: 2, proto: 17, state: 7, src_port: fds.uport, dst_port: 0, backlog: 0, src_addr: [LOOPBACK] });
    const udp2 = table.get(fds.udp2)![1].isk;
    // connected: state ESTABLISHED, the peer's address and port, an ephemeral local port
    expect(udp2).toMatchObject({ ino: ino(fds.udp2), type: 2, proto: 17, state: 1, dst_port: fds.uport, dst_addr: [LOOPBACK], src_addr: [LOOPBACK] });
    expect(udp2.src_port).toBeGreaterThan(0);
    expect(udp2.ip_opts).toEqual({ tos: 0x10, ttl: 64 });
    expect(udp2.opts.so_broadcast).toBe(true);
  });

  it('leaves the sockets working: the listener accepts and the UDP socket receives', async () => {
    await new Promise<void>((resolve, reject) => {
      const c = net.connect(fds.lport, '127.0.0.1', () => {
        c.end();
        resolve();
      });
      c.on('error', reject);
    });
    await target.waitFor(/^accepted$/m);
    const s = dgram.createSocket('udp4');
    await new Promise<void>((resolve, reject) => s.send('ping-after-dump', fds.uport, '127.0.0.1', (e) => (e ? reject(e) : resolve())));
    s.close();
    await target.waitFor(/^udp got ping-after-dump$/m);
    expect(alive(target.pid)).toBe(true);
    expect(consecutive(target.output())).toBe(true);
  });

  it('refuses an established TCP connection by fd, leaving the task as it was', async () => {
    const t = startTarget(exe, ['connected'], work);
    others.push(t);
    const m = await t.waitFor(/cli=(\d+) srv=(\d+)/);
    await t.waitFor(/count=2\n/);
    const maps = fs.readFileSync(`/proc/${t.pid}/maps`, 'utf8');
    const d = path.join(work, 'connected');
    const r = runEngine(['dump', '-t', String(t.pid), '-D', d]);
    expect(r.status).not.toBe(0);
    expect(r.stderr).toMatch(new RegExp(`^engine: task ${t.pid} fd ${m[1]}: IPv4 TCP connection 127\\.0\\.0\\.1:\\d+ -> 127\\.0\\.0\\.1:\\d+ is established \\(dump it with --tcp-established\\)\n$`));
    expect(fs.existsSync(d)).toBe(false);
    expect(fs.readFileSync(`/proc/${t.pid}/maps`, 'utf8')).toBe(maps);
    const before = lastCount(t.output());
    await t.waitFor(new RegExp(`count=${before + 3}\\n`));
    expect(consecutive(t.output())).toBe(true);
    expect(fs.readFileSync(`/proc/${t.pid}/status`, 'utf8')).toMatch(/TracerPid:\s+0\n/);
  });
});
