// engine restore of inet sockets (fixtures/engine/inetsrv.c, loopback only, kernel-chosen ports):
// TCP servers on 127.0.0.1 and on [::1] / [::ffff:127.0.0.1] answer a client of the test after
// restore; two forked workers share one restored listener and both still accept; UDP sockets
// (bound, connected, IPv6-only, v4-mapped, UDPLITE) exchange datagrams again; socket options read
// back the same; and what cannot be restored exactly is refused at dump naming task and fd.
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import * as dgram from 'dgram';
import * as fs from 'fs';
import * as net from 'net';
import * as path from 'path';
import { IS_ROOT, SKIP_REASON, tempDir, compile, startTarget, runEngine, alive, lastCount, consecutive, Target, decode, killPid, restoreOk, dumpAndReap, until, runCriu, gone } from './helpers';
import { crit } from '../helpers/cli';

if (!IS_ROOT) console.warn(`SKIPPING engine inet restore tests: ${SKIP_REASON}`);
process.env.ENGINE_RESTORE_STATS = '1';

let work: string;
let exe: string;

/** Sends "Q text" over a new TCP connection and returns the answer line. */
function ask(port: number, host: string, text: string): Promise<string> {
  return new Promise((resolve, reject) => {
    let got = '';
    const c = net.connect({ port, host }, () => c.write(`Q ${text}\n`));
    const timer = setTimeout(() => {
      c.destroy();
      reject(new Error(`no answer from ${host}:${port}`));
    }, 3000);
    c.on('data', (d) => (got += d.toString()));
    c.on('end', () => {
      clearTimeout(timer);
      resolve(got.trim());
    });
    c.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
  });
}

/** One datagram to host:port and the first answer. */
function echo(type: 'udp4' | 'udp6', port: number, host: string, text: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = dgram.createSocket(type);
    const timer = setTimeout(() => {
      s.close();
      reject(new Error(`no datagram back from ${host}:${port}`));
    }, 3000);
    s.on('message', (m) => {
      clearTimeout(timer);
      s.close();
      resolve(m.toString());
    });
    s.send(text, port, host, (e) => e && reject(e));
  });
}

/** Starts inetsrv in a mode, waits for its ready line and a few counts. */
async function start(mode: string, ready: RegExp): Promise<{ t: Target; m: RegExpMatchArray }> {
  const t = startTarget(exe, [mode], work);
  try {
    const m = await t.waitFor(ready);
    await t.waitFor(/count=2\n/);
    return { t, m };
  } catch (e) {
    t.kill();
    throw e;
  }
}

function inetEntries(dir: string): any[] {
  return decode(path.join(dir, 'files.img')).filter((e) => e.type === 4).map((e) => e.isk);
}

const fdFlags = (pid: number, fd: number) => parseInt(/^flags:\s+(\d+)$/m.exec(fs.readFileSync(`/proc/${pid}/fdinfo/${fd}`, 'utf8'))![1], 8);
const inode = (pid: number, fd: number) => fs.statSync(`/proc/${pid}/fd/${fd}`).ino;

describe.skipIf(!IS_ROOT)('engine restore: inet sockets', () => {
  const started: number[] = [];

  beforeAll(() => {
    work = tempDir('restore-inet');
    exe = compile('inetsrv', work);
  });

  afterAll(() => {
    killPid(...started);
    if (work) fs.rmSync(work, { recursive: true, force: true });
  });

  it('restores an IPv4 TCP server: a client connects after restore and gets its answer', async () => {
    const { t, m } = await start('tcp4', /ready tcp4 fd=(\d+) port=(\d+)/);
    started.push(t.pid);
    const [fd, port] = [+m[1], +m[2]];
    // served once before: the connection it closed first waits in TIME_WAIT on the port
    expect(await ask(port, '127.0.0.1', 'before')).toBe(`A ${t.pid} before`);
    const dir = path.join(work, 'tcp4');
    await dumpAndReap(t.pid, dir);
    const [isk] = inetEntries(dir);
    expect(isk).toMatchObject({ family: 2, type: 1, proto: 6, state: 10, src_port: port, backlog: 16, src_addr: [0x0100007f] });
    expect(isk.opts.reuseaddr).toBe(true);
    expect(restoreOk(dir)).toBe(t.pid);
    expect(await ask(port, '127.0.0.1', 'after restore')).toBe(`A ${t.pid} after restore`);
    expect(await ask(port, '127.0.0.1', 'again')).toBe(`A ${t.pid} again`);
    expect(fdFlags(t.pid, fd) & 0o4000).toBe(0o4000); // O_NONBLOCK
    const c = lastCount(t.output());
    await t.waitFor(new RegExp(`count=${c + 3}\\n`));
    expect(consecutive(t.output())).toBe(true);
    t.kill();
  });

  it('restores IPv6 listeners ([::1] IPv6-only, [::ffff:127.0.0.1] v4-mapped) in CRIU 4.2 layout', async () => {
    const { t, m } = await start('tcp6', /ready tcp6 fd=(\d+) port=(\d+) mapped=(\d+) mport=(\d+)/);
    started.push(t.pid);
    const [port, mport] = [+m[2], +m[4]];
    const dir = path.join(work, 'tcp6');
    await dumpAndReap(t.pid, dir);
    const [v6, mapped] = inetEntries(dir);
    expect(v6).toMatchObject({ family: 10, type: 1, proto: 6, state: 10, src_port: port, backlog: 12, v6only: true, src_addr: [0, 0, 0, 0x01000000], dst_addr: [0, 0, 0, 0] });
    expect(mapped).toMatchObject({ family: 10, state: 10, src_port: mport, backlog: 5, v6only: false, src_addr: [0, 0, 0xffff0000, 0x0100007f] });
    // CRIT's JSON: four words as one compressed IPv6 address (Python's ipaddress text)
    const pretty = crit(['decode', '--pretty', '-i', path.join(dir, 'files.img')]);
    expect(pretty.status).toBe(0);
    const text = pretty.stdout.toString();
    expect(text).toMatch(/"src_addr": \[\n +"::1"\n +\]/);
    expect(text).toContain('"::ffff:7f00:1"');
    expect(text).toContain('"family": "INET6"');
    expect(text).toContain('"v6only": true');
    // and back to the same bytes
    const back = crit(['encode'], pretty.stdout);
    expect(Buffer.compare(back.stdout, fs.readFileSync(path.join(dir, 'files.img')))).toBe(0);
    const sk = crit(['x', dir, 'sk']).stdout.toString();
    expect(sk).toContain(`tcp inet6 listen [::1]:${port} -> [::]:0`);
    expect(sk).toContain(`tcp inet6 listen [::ffff:7f00:1]:${mport} -> [::]:0`);

    expect(restoreOk(dir)).toBe(t.pid);
    expect(await ask(port, '::1', 'six')).toBe(`A ${t.pid} six`);
    expect(await ask(mport, '127.0.0.1', 'four on six')).toBe(`A ${t.pid} four on six`);
    // IPV6_V6ONLY is back: the IPv6-only listener takes no IPv4 client
    await expect(ask(port, '127.0.0.1', 'nope')).rejects.toThrow();
    t.kill();
  });

  it('restores one listener shared by two forked workers: both accept on it again', async () => {
    const { t, m } = await start('workers', /ready workers fd=(\d+) port=(\d+) w1=(\d+) w2=(\d+)/);
    const [fd, port, w1, w2] = [+m[1], +m[2], +m[3], +m[4]];
    started.push(t.pid, w1, w2);
    const dir = path.join(work, 'workers');
    await dumpAndReap(t.pid, dir, [t.pid, w1, w2]);
    expect(inetEntries(dir)).toHaveLength(1); // one file entry, three fds
    expect(restoreOk(dir)).toBe(t.pid);
    // the one socket again in all three processes
    expect(inode(w1, fd)).toBe(inode(t.pid, fd));
    expect(inode(w2, fd)).toBe(inode(t.pid, fd));
    const seen = new Set<string>();
    for (let i = 0; i < 20 && seen.size < 2; i++) {
      const a = await ask(port, '127.0.0.1', `n${i}`);
      expect(a).toMatch(new RegExp(`^A (${w1}|${w2}) n${i}$`));
      seen.add(a.split(' ')[1]);
    }
    expect([...seen].sort()).toEqual([String(w1), String(w2)].sort());
    expect(alive(t.pid)).toBe(true);
    killPid(w1, w2);
    t.kill();
  });

  it('restores UDP sockets: bound, connected, IPv6-only, v4-mapped and UDPLITE exchange datagrams', async () => {
    const { t, m } = await start('udp', /ready udp A=(\d+):(\d+) B=(\d+):(\d+) C=(\d+):(\d+) D=(\d+):(\d+) E=(\d+):(\d+)/);
    started.push(t.pid);
    const port = { A: +m[2], B: +m[4], C: +m[6], D: +m[8], E: +m[10] };
    const dir = path.join(work, 'udp');
    await dumpAndReap(t.pid, dir);
    const byPort = new Map(inetEntries(dir).map((e) => [e.src_port, e]));
    expect(byPort.get(port.B)).toMatchObject({ family: 2, proto: 17, state: 1, dst_port: port.A, dst_addr: [0x0100007f] });
    expect(byPort.get(port.D)).toMatchObject({ family: 10, proto: 17, state: 1, dst_port: port.A, v6only: false, dst_addr: [0, 0, 0xffff0000, 0x0100007f] });
    expect(byPort.get(port.C)).toMatchObject({ family: 10, state: 7, v6only: true, src_addr: [0, 0, 0, 0x01000000] });
    expect(byPort.get(port.E)).toMatchObject({ family: 2, type: 2, proto: 136, state: 7 });
    expect(restoreOk(dir)).toBe(t.pid);
    expect(await echo('udp4', port.A, '127.0.0.1', 'hello A')).toBe(`E ${t.pid} hello A`);
    expect(await echo('udp6', port.C, '::1', 'hello C')).toBe(`E ${t.pid} hello C`);
    process.kill(t.pid, 'SIGUSR1');
    await t.waitFor(/^udp (PASS|FAIL.*)$/m);
    expect(t.output()).toMatch(/^udp PASS$/m);
    t.kill();
  });

  it('restores socket options exactly: the program reads the same values before and after', async () => {
    const { t, m } = await start('opts', /ready opts n=(\d+) fds=([\d,]+)\n/);
    started.push(t.pid);
    const fds = m[2].split(',').map(Number);
    const dir = path.join(work, 'opts');
    await dumpAndReap(t.pid, dir);
    expect(restoreOk(dir)).toBe(t.pid);
    process.kill(t.pid, 'SIGUSR1');
    await t.waitFor(/^opts (PASS|FAIL)$/m);
    const out = t.output();
    for (const fd of fds) {
      const before = new RegExp(`^opts before ${fd}: (.*)$`, 'm').exec(out)![1];
      const after = new RegExp(`^opts after ${fd}: (.*)$`, 'm').exec(out)![1];
      expect(after, `fd ${fd}`).toBe(before);
    }
    expect(out).toMatch(/^opts PASS$/m);
    // what was set shows in the values compared (not only defaults)
    expect(out).toMatch(/keepalive=1 sndbuf=80000 rcvbuf=100000 priority=2 rcvlowat=3 mark=77 linger=1,9 sndtimeo=3,0,252000,0 rcvtimeo=7,0,0,0 dev='lo'/);
    expect(out).toMatch(/ttl=33 tos=8 freebind=1 .* nodelay=1 cork=1 keepidle=111 keepintvl=22 keepcnt=4 .* fl=024002 fd=0 own=1:\d+ sig=23/);
    t.kill();
  });

  it('makes a socket as the user of the task that holds it', async () => {
    const { t, m } = await start('user', /ready tcp4 fd=(\d+) port=(\d+)/);
    started.push(t.pid);
    const [fd, port] = [+m[1], +m[2]];
    expect(fs.statSync(`/proc/${t.pid}/fd/${fd}`).uid).toBe(65534);
    const dir = path.join(work, 'user');
    await dumpAndReap(t.pid, dir);
    expect(restoreOk(dir)).toBe(t.pid);
    const st = fs.statSync(`/proc/${t.pid}/fd/${fd}`);
    expect([st.uid, st.gid]).toEqual([65534, 65534]);
    expect(await ask(port, '127.0.0.1', 'as nobody')).toBe(`A ${t.pid} as nobody`);
    t.kill();
  });

  async function refused(mode: string, expected: (pid: number, fd: number) => string | RegExp, before?: (port: number) => Promise<() => void>): Promise<void> {
    const { t, m } = await start(mode, new RegExp(`ready ${mode} fd=(\\d+)(?: port=(\\d+))?`));
    started.push(t.pid);
    const release = before ? await before(+m[2]) : undefined;
    try {
      const d = path.join(work, `refused-${mode}`);
      const r = runEngine(['dump', '-t', String(t.pid), '-D', d]);
      expect(r.status).not.toBe(0);
      const want = expected(t.pid, +m[1]);
      if (typeof want === 'string') expect(r.stderr).toBe(`engine: ${want}\n`);
      else expect(r.stderr).toMatch(want);
      expect(fs.existsSync(d)).toBe(false);
      // left running as it was
      const c = lastCount(t.output());
      await t.waitFor(new RegExp(`count=${c + 2}\\n`));
      expect(consecutive(t.output())).toBe(true);
    } finally {
      release?.();
      t.kill();
    }
  }

  it('refuses a listener with a connection not accepted yet, naming task and fd', async () => {
    await refused('pending', (pid, fd) => `task ${pid} fd ${fd}: IPv4 TCP listener: 1 connection(s) waiting to be accepted (they would be lost; dump with --skip-in-flight to drop them)`, async (port) => {
      const c = net.connect(port, '127.0.0.1');
      await new Promise<void>((resolve, reject) => {
        c.on('connect', () => resolve());
        c.on('error', reject);
      });
      return () => c.destroy();
    });
  });

  it('leaves a connection not accepted yet out with --skip-in-flight; the listener listens again', async () => {
    const { t, m } = await start('pending', /ready pending fd=(\d+) port=(\d+)/);
    started.push(t.pid);
    const port = +m[2];
    const c = net.connect(port, '127.0.0.1');
    await new Promise<void>((resolve, reject) => c.on('connect', () => resolve()).on('error', reject));
    c.on('error', () => { /* reset once it is left out */ });
    const d = path.join(work, 'skip-in-flight');
    fs.mkdirSync(d);
    const r = runCriu(['dump', '-t', String(t.pid), '-D', d, '-o', 'dump.log', '-v4', '--skip-in-flight']);
    expect(r.status).toBe(0);
    expect(fs.readFileSync(path.join(d, 'dump.log'), 'utf8')).toMatch(new RegExp(`task ${t.pid} fd ${m[1]}: IPv4 TCP listener: connections not accepted yet are left out`));
    await until(() => gone(t.pid), 'the dumped task to be reaped');
    c.destroy();
    const rr = runCriu(['restore', '-D', d, '-d', '-o', 'restore.log']);
    expect(rr.status, rr.stderr).toBe(0);
    await new Promise<void>((resolve, reject) => net.connect(port, '127.0.0.1', resolve).on('error', reject));
    t.kill();
  });

  it('refuses foreign-namespace sockets, and one its task does not own', async () => {
    await refused('dropped', (pid, fd) => `task ${pid} fd ${fd}: IPv4 TCP listener: made by uid 0 gid 0, while the task's fsuid is 65534 and fsgid 65534 (the owner of a restored socket is its task's; not supported)`);
    await refused('netns', (pid, fd) => `task ${pid} fd ${fd}: IPv4 UDP socket: it belongs to another network namespace than the engine's (not supported)`);
  });

  it('refuses what the image cannot hold or would lose: an unknown option, IP_TRANSPARENT, unread datagrams', async () => {
    await refused('timestamp', (pid, fd) => `task ${pid} fd ${fd}: IPv4 UDP socket: option SO_TIMESTAMP is 1, a new socket has 0 (CRIU images have no field for it; not supported)`);
    await refused('transparent', (pid, fd) => `task ${pid} fd ${fd}: IPv4 closed TCP socket: IP_TRANSPARENT is set (CRIU images have no field for it; not supported)`);
    await refused('udpqueue', (pid, fd) => new RegExp(`^engine: task ${pid} fd ${fd}: IPv4 UDP socket: \\d+ bytes of datagrams received and not read yet \\(they would be lost; not supported\\)\n$`));
  });

  it('fails a restore that cannot bind the port again cleanly, creating no process', async () => {
    const { t, m } = await start('tcp4', /ready tcp4 fd=(\d+) port=(\d+)/);
    started.push(t.pid);
    const port = +m[2];
    const dir = path.join(work, 'busy');
    await dumpAndReap(t.pid, dir);
    // someone else took the port meanwhile: the restore fails and creates nothing
    const squatter = net.createServer();
    await new Promise<void>((resolve) => squatter.listen(port, '127.0.0.1', resolve));
    try {
      const r = runEngine(['restore', '-D', dir, '-d']);
      expect(r.status).not.toBe(0);
      expect(r.stderr).toMatch(new RegExp(`^engine: files\\.img: id \\d+: IPv4 TCP socket: cannot bind 127\\.0\\.0\\.1:${port} again: EADDRINUSE\\n$`));
      await until(() => !fs.existsSync(`/proc/${t.pid}`), 'no restored process');
    } finally {
      await new Promise((resolve) => squatter.close(resolve));
    }
  });
});

describe.skipIf(!IS_ROOT)('engine restore: ICMP (ping) sockets', () => {
  const RANGE = '/proc/sys/net/ipv4/ping_group_range';
  let work: string;
  let range: string;
  const targets: Target[] = [];

  beforeAll(() => {
    work = tempDir('ping');
    // ping sockets are for the groups in this range only; root's group for these tests
    range = fs.readFileSync(RANGE, 'utf8').trim();
    fs.writeFileSync(RANGE, '0 0');
  });

  afterAll(() => {
    for (const t of targets) t.kill();
    fs.writeFileSync(RANGE, range.replace(/\s+/, ' '));
    fs.rmSync(work, { recursive: true, force: true });
  });

  it('keeps a used socket\'s echo id and a connected socket\'s peer', async () => {
    const t = startTarget(compile('pingsock', work), [], work);
    targets.push(t);
    const id = Number((await t.waitFor(/id=(\d+)\n/))[1]);
    await t.waitFor(/count=2\n/);
    const dir = path.join(work, 'images');
    await dumpAndReap(t.pid, dir);
    const isk = decode(path.join(dir, 'files.img')).filter((f) => f.type === 4).map((f) => f.isk);
    expect(isk.map((s) => [s.type, s.proto, s.state, s.src_port])).toEqual([[2, 1, 7, id], [2, 1, 1, expect.any(Number)]]);
    expect(restoreOk(dir)).toBe(t.pid);
    fs.writeFileSync(path.join(work, 'go'), '');
    await t.waitFor(/^ping (ok|fail.*)$/m);
    expect(t.output()).toMatch(/^ping ok$/m);
  });

  it('refuses a reply not read yet, naming task and fd, and the task runs on', async () => {
    fs.rmSync(path.join(work, 'go'), { force: true });
    const t = startTarget(compile('pingsock', work), ['unread'], work);
    targets.push(t);
    await t.waitFor(/count=2\n/);
    const r = runEngine(['dump', '-t', String(t.pid), '-D', path.join(work, 'unread')]);
    expect(r.status).not.toBe(0);
    expect(r.stderr).toMatch(new RegExp(`^engine: task ${t.pid} fd 3: IPv4 ICMP \\(ping\\) socket: \\d+ bytes of replies received and not read yet`));
    expect(alive(t.pid)).toBe(true);
  });
});

describe.skipIf(!IS_ROOT)('engine restore: raw sockets', () => {
  let work: string;
  const targets: Target[] = [];

  beforeAll(() => {
    work = tempDir('raw');
  });

  afterAll(() => {
    for (const t of targets) t.kill();
    fs.rmSync(work, { recursive: true, force: true });
  });

  it('keeps their protocol, type filters, header and fragment options, and the peer', async () => {
    const t = startTarget(compile('rawsock', work), [], work);
    targets.push(t);
    await t.waitFor(/count=2\n/);
    const dir = path.join(work, 'images');
    await dumpAndReap(t.pid, dir);
    const isk = decode(path.join(dir, 'files.img')).filter((f) => f.type === 4).map((f) => f.isk);
    expect(isk.map((s) => [s.family, s.type, s.proto, s.state])).toEqual([[2, 3, 1, 7], [2, 3, 17, 1], [10, 3, 58, 7], [2, 3, 6, 7]]);
    expect(isk[3].opts.so_filter.map(BigInt)).toEqual([6n << 48n]); // BPF_RET | BPF_K, 0
    expect(isk[0].ip_opts.raw).toEqual({ hdrincl: true, icmpv_filter: [~1 >>> 0] });
    expect(isk[1].ip_opts.raw).toEqual({ nodefrag: true });
    expect(isk[2].ip_opts.raw.icmpv_filter).toHaveLength(8);
    expect(restoreOk(dir)).toBe(t.pid);
    fs.writeFileSync(path.join(work, 'go'), '');
    await t.waitFor(/^raw (ok|fail.*)$/m);
    expect(t.output()).toMatch(/^raw ok$/m);
  });

  it('refuses one holding a packet not read yet, naming task and fd, and the task runs on', async () => {
    fs.rmSync(path.join(work, 'go'), { force: true });
    const t = startTarget(compile('rawsock', work), ['queued'], work);
    targets.push(t);
    await t.waitFor(/count=2\n/);
    const r = runEngine(['dump', '-t', String(t.pid), '-D', path.join(work, 'queued')]);
    expect(r.status).not.toBe(0);
    expect(r.stderr).toMatch(new RegExp(`^engine: task ${t.pid} fd \\d+: raw IPv4 socket \\(protocol \\d+\\): \\d+ bytes of packets received and not read yet`));
    expect(alive(t.pid)).toBe(true);
  });
});

describe.skipIf(!IS_ROOT)('engine restore: a port shared by listeners', () => {
  let work: string;
  let t: Target;

  beforeAll(() => {
    work = tempDir('reuseport');
  });

  afterAll(() => {
    t?.kill();
    fs.rmSync(work, { recursive: true, force: true });
  });

  it('binds both again (SO_REUSEPORT on while they are bound, then as it was), and they accept', async () => {
    t = startTarget(compile('reuseport', work), [], work);
    const port = Number((await t.waitFor(/port=(\d+)\n/))[1]);
    await t.waitFor(/count=2\n/);
    const dir = path.join(work, 'images');
    await dumpAndReap(t.pid, dir);
    const isk = decode(path.join(dir, 'files.img')).filter((f) => f.type === 4).map((f) => f.isk);
    expect(isk.map((s) => [s.src_port, s.opts.so_reuseport])).toEqual([[port, false], [port, true]]);
    expect(restoreOk(dir)).toBe(t.pid);
    fs.writeFileSync(path.join(work, 'go'), '');
    await t.waitFor(/^(listening|reuseport fail.*)$/m);
    for (let i = 0; i < 2; i++) await new Promise<void>((res, rej) => net.connect(port, '127.0.0.1', res).on('error', rej));
    await t.waitFor(/^reuseport (ok|fail.*)$/m);
    expect(t.output()).toMatch(/^reuseport ok$/m);
  });
});
