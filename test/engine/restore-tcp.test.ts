// Established TCP connections (criu --tcp-established, kinds/tcp): a server and its client in one
// tree stream numbered bytes both ways with both queues of both sockets full; dumped with TCP
// repair, killed, restored, and the streams go on with no byte lost, duplicated or reordered
// (the fixture checks every byte), over IPv4, IPv6 and a v4-mapped IPv6 server. A connection to a
// peer outside the tree stays locked from the dump to the restore (an nftables table, or iptables
// rules with --network-lock iptables), and the peer sees the stream go on. Connections in every
// half-closed state keep their state, bytes and shutdowns. Refused: a connection without
// --tcp-established.
import { describe, it, expect, afterAll, beforeAll } from 'vitest';
import * as fs from 'fs';
import * as net from 'net';
import * as path from 'path';
import { spawnSync } from 'child_process';
import { crit } from '../helpers/cli';
import { IS_ROOT, SKIP_REASON, tempDir, compile, startTarget, Target, decode, cleanUp, runCriu, until, gone, alive } from './helpers';

const HAS_NFT = spawnSync('nft', ['--version'], { encoding: 'utf8' }).status === 0;
if (!IS_ROOT) console.warn(`SKIPPING TCP repair tests: ${SKIP_REASON}`);
else if (!HAS_NFT) console.warn('SKIPPING TCP repair tests: no nft command (Debian package nftables), which locks the connections');

const HAS_IPTABLES = spawnSync('iptables-restore', ['--version'], { encoding: 'utf8' }).status === 0;
const iptRules = () => (spawnSync('iptables', ['-w', '-S'], { encoding: 'utf8' }).stdout ?? '').split('\n').filter((l) => /0xc114/.test(l));

const engineTables = () => (spawnSync('nft', ['list', 'tables'], { encoding: 'utf8' }).stdout ?? '').split('\n').filter((l) => /inet CRIU-/.test(l));

/** The byte of the fixture's sequence at position k (as tcpconn.c numbers them). */
const byteAt = (k: number) => ((k % 251) ^ (Math.floor(k / 251) * 7)) & 0xff;

/** The last "got=" of a side (S or C) in the output. */
function got(text: string, side: string): number {
  const all = [...text.matchAll(new RegExp(`^${side} sent=\\d+ got=(\\d+)`, 'gm'))];
  return all.length ? Number(all[all.length - 1][1]) : 0;
}

/** A peer outside the tree (this test process) that checks every byte of the sequence it receives. */
function checkingPeer(port: number): { socket: net.Socket; received: number; wrong: number; broken: string } {
  const p = { socket: net.connect(port, '127.0.0.1'), received: 0, wrong: -1, broken: '' };
  p.socket.on('data', (b) => {
    for (const x of b) {
      if (p.wrong < 0 && x !== byteAt(p.received)) p.wrong = p.received;
      p.received++;
    }
  });
  p.socket.on('error', (e) => (p.broken = e.message));
  p.socket.on('close', () => (p.broken ||= 'closed'));
  return p;
}

const children = (pid: number) => fs.readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);

describe.skipIf(!IS_ROOT || !HAS_NFT)('established TCP connections', () => {
  const works: string[] = [];
  const targets: Target[] = [];
  afterAll(() => {
    for (const t of targets) cleanUp(t, undefined);
    for (const w of works) fs.rmSync(w, { recursive: true, force: true });
  });

  for (const mode of ['4', '6', 'mapped']) {
    it(`continue both streams after dump, kill and restore (${mode === '4' ? 'IPv4' : mode === '6' ? 'IPv6' : 'v4-mapped IPv6'})`, async () => {
      const work = tempDir(`tcpconn${mode}`);
      works.push(work);
      const target = startTarget(compile('tcpconn', work), [mode], work);
      targets.push(target);
      await target.waitFor(/^S ready$/m, 10000);
      await target.waitFor(/^C ready$/m, 10000);
      const client = children(target.pid)[0];
      const dir = path.join(work, 'images');
      fs.mkdirSync(dir);
      const d = runCriu(['dump', '-t', String(target.pid), '-D', dir, '-o', 'dump.log', '-v4', '--tcp-established']);
      expect(d.status, d.stderr + fs.readFileSync(path.join(dir, 'dump.log'), 'utf8').slice(-2000)).toBe(0);
      await until(() => gone(target.pid) && gone(client), 'the dumped tree to be reaped');
      expect(engineTables()).toEqual([]);
      // both sockets, with bytes in both queues
      const streams = fs.readdirSync(dir).filter((f) => /^tcp-stream-[0-9a-f]+\.img$/.test(f)).map((f) => decode(path.join(dir, f))[0]);
      expect(streams).toHaveLength(2);
      for (const s of streams) {
        expect(s.inq_len).toBeGreaterThan(0);
        expect(s.outq_len).toBeGreaterThan(0);
        expect(s.unsq_len).toBeLessThanOrEqual(s.outq_len);
      }
      const isk = decode(path.join(dir, 'files.img')).filter((f) => f.type === 4 && f.isk.state === 1);
      expect(isk).toHaveLength(2);
      expect(decode(path.join(dir, 'inventory.img'))[0].network_lock_method).toBe(2); // SKIP: no lock left to undo
      const before = target.output();
      const at = { S: got(before, 'S'), C: got(before, 'C') };
      // the output file grows no more: the restore finds it as dumped
      const r = runCriu(['restore', '-D', dir, '-o', 'restore.log', '-v4', '-d', '--tcp-established']);
      expect(r.status, r.stderr + fs.readFileSync(path.join(dir, 'restore.log'), 'utf8').slice(-2000)).toBe(0);
      expect(alive(target.pid)).toBe(true);
      // each side reads on past everything that was queued at the dump
      const need = Math.max(...streams.map((s) => s.inq_len + s.outq_len)) + 20000;
      await until(() => got(target.output(), 'S') > at.S + need && got(target.output(), 'C') > at.C + need, 'both streams to go on', 20000);
      expect(target.output()).not.toMatch(/fail/);
      process.kill(target.pid, 'SIGKILL');
      for (const c of children(target.pid).length ? children(target.pid) : []) process.kill(c, 'SIGKILL');
    }, 60000);
  }
});

describe.skipIf(!IS_ROOT || !HAS_NFT)('half-closed TCP connections', () => {
  const works: string[] = [];
  const targets: Target[] = [];
  afterAll(() => {
    for (const t of targets) cleanUp(t, undefined);
    for (const w of works) fs.rmSync(w, { recursive: true, force: true });
  });

  // FIN_WAIT1/2, CLOSE_WAIT, LAST_ACK and CLOSING, with bytes queued where the state has them
  for (const mode of ['4', '6']) {
    it(`keep their state, their bytes and their shutdowns through dump, kill and restore (IPv${mode})`, async () => {
      const work = tempDir(`tcphalf${mode}`);
      works.push(work);
      const target = startTarget(compile('tcphalf', work), [mode], work);
      targets.push(target);
      await target.waitFor(/^ready$/m, 15000);
      const states = [...target.output().matchAll(/^state (\d) a=(\d+) b=(\d+)$/gm)].map((m) => [Number(m[2]), Number(m[3])]);
      expect(states).toEqual([[5, 8], [4, 1], [5, 9], [11, 5]]);
      const dir = path.join(work, 'images');
      fs.mkdirSync(dir);
      const d = runCriu(['dump', '-t', String(target.pid), '-D', dir, '-o', 'dump.log', '-v4', '--tcp-established']);
      expect(d.status, d.stderr + fs.readFileSync(path.join(dir, 'dump.log'), 'utf8').slice(-2000)).toBe(0);
      await until(() => gone(target.pid), 'the dumped process to be reaped');
      expect(engineTables()).toEqual([]);
      // each connection in its state, its FINs kept out of the queue lengths (as CRIU records them)
      const isk = decode(path.join(dir, 'files.img')).filter((f) => f.type === 4 && f.isk.dst_port);
      expect(isk.map((f) => f.isk.state).sort((a: number, b: number) => a - b)).toEqual([1, 4, 5, 5, 5, 8, 9, 11]);
      const streams = new Map(isk.map((f) => [f.isk.state, decode(path.join(dir, `tcp-stream-${f.isk.ino.toString(16)}.img`))[0]]));
      expect(streams.get(8).inq_len).toBe(5000); // CLOSE_WAIT: the bytes before the FIN
      expect(streams.get(4).unsq_len).toBeGreaterThan(0); // FIN_WAIT1: bytes not sent yet, the FIN behind them
      // crit's socket explorer names every state, with the addresses of the family
      const sk = crit(['x', dir, 'sk']).stdout.toString();
      const lo = mode === '6' ? '\\[::1\\]' : '127\\.0\\.0\\.1';
      for (const st of ['fin_wait1', 'fin_wait2', 'close_wait', 'last_ack', 'closing', 'established'])
        expect(sk).toMatch(new RegExp(`tcp inet${mode === '6' ? '6' : ''} ${st} ${lo}:\\d+ -> ${lo}:\\d+ ino \\d+, inq \\d+ outq \\d+ bytes`));
      const r = runCriu(['restore', '-D', dir, '-o', 'restore.log', '-v4', '-d', '--tcp-established']);
      expect(r.status, r.stderr + fs.readFileSync(path.join(dir, 'restore.log'), 'utf8').slice(-2000)).toBe(0);
      // the restore's own lock is gone too
      expect(engineTables()).toEqual([]);
      process.kill(target.pid, 'SIGUSR1');
      await target.waitFor(/^(ok|fail).*$/m, 30000);
      expect(target.output()).toMatch(/^states kept$/m);
      expect(target.output()).not.toMatch(/fail/);
      expect(target.output()).toMatch(/^ok /m);
    }, 60000);
  }
});

describe.skipIf(!IS_ROOT || !HAS_NFT)('reset TCP connections', () => {
  let work: string;
  const targets: Target[] = [];
  beforeAll(() => {
    work = tempDir('tcpreset');
  });
  afterAll(() => {
    for (const t of targets) cleanUp(t, undefined);
    fs.rmSync(work, { recursive: true, force: true });
  });

  it('refuses to take the pending error from a tree left running, naming task and fd', async () => {
    const target = startTarget(compile('tcpreset', work), [], work);
    targets.push(target);
    await target.waitFor(/^ready$/m);
    const dir = path.join(work, 'running');
    fs.mkdirSync(dir);
    const r = runCriu(['dump', '-t', String(target.pid), '-D', dir, '-o', 'dump.log', '--tcp-established', '--leave-running']);
    expect(r.status).toBe(1);
    expect(fs.readFileSync(path.join(dir, 'dump.log'), 'utf8')).toMatch(new RegExp(`Error \\(dump\\): task ${target.pid} fd \\d+: IPv4 closed TCP connection: it was reset, and its error is not read yet`));
    // untouched: the task still finds its bytes and its errors
    process.kill(target.pid, 'SIGUSR1');
    await target.waitFor(/^(ok|fail).*$/m);
    expect(target.output()).toMatch(/^ok$/m);
  });

  it('keep their bytes and their pending error (ECONNRESET, EPIPE) through dump, kill and restore', async () => {
    const target = startTarget(compile('tcpreset', work), [], work);
    targets.push(target);
    await target.waitFor(/^ready$/m);
    const dir = path.join(work, 'images');
    fs.mkdirSync(dir);
    const d = runCriu(['dump', '-t', String(target.pid), '-D', dir, '-o', 'dump.log', '-v4', '--tcp-established']);
    expect(d.status, fs.readFileSync(path.join(dir, 'dump.log'), 'utf8').slice(-1500)).toBe(0);
    await until(() => gone(target.pid), 'the dumped process to be reaped');
    const errors = fs.readdirSync(dir).filter((f) => /^tcp-stream-/.test(f)).map((f) => decode(path.join(dir, f))[0].so_error).sort();
    expect(errors).toEqual([104, 32].sort());
    const r = runCriu(['restore', '-D', dir, '-o', 'restore.log', '-v4', '-d', '--tcp-established']);
    expect(r.status, fs.readFileSync(path.join(dir, 'restore.log'), 'utf8').slice(-1500)).toBe(0);
    process.kill(target.pid, 'SIGUSR1');
    await target.waitFor(/^(ok|fail).*$/m);
    expect(target.output()).not.toMatch(/fail/);
    expect(target.output()).toMatch(/^ok$/m);
  }, 30000);
});

describe.skipIf(!IS_ROOT || !HAS_NFT)('TCP connections that are not dumped', () => {
  let work: string;
  const targets: Target[] = [];
  afterAll(() => {
    for (const t of targets) cleanUp(t, undefined);
    fs.rmSync(work, { recursive: true, force: true });
  });

  it('refuses an established connection without --tcp-established, naming task and fd', async () => {
    work = tempDir('tcprefuse');
    const target = startTarget(compile('tcpconn', work), ['4'], work);
    targets.push(target);
    await target.waitFor(/^C ready$/m, 10000);
    const dir = path.join(work, 'img1');
    fs.mkdirSync(dir);
    const r = runCriu(['dump', '-t', String(target.pid), '-D', dir, '-o', 'dump.log']);
    expect(r.status).not.toBe(0);
    expect(r.stderr).toMatch(new RegExp(`task ${target.pid} fd \\d+: IPv4 TCP connection 127\\.0\\.0\\.1:\\d+ -> 127\\.0\\.0\\.1:\\d+ is established \\(dump it with --tcp-established\\)`));
    expect(alive(target.pid)).toBe(true);
    const g = got(target.output(), 'S');
    await until(() => got(target.output(), 'S') > g + 5000, 'the stream to go on');
    expect(target.output()).not.toMatch(/fail/);
  }, 30000);

  it('keeps a connection to a peer outside the tree: locked from the dump to the restore, the stream goes on', async () => {
    const target = startTarget(compile('tcpconn', work), ['outside'], work);
    targets.push(target);
    const port = Number((await target.waitFor(/^port=(\d+)$/m))[1]);
    // the peer: this test process, which checks every byte of the sequence it receives
    const p = checkingPeer(port);
    await until(() => p.received > 10000, 'the peer to receive', 10000);
    const dir = path.join(work, 'img2');
    fs.mkdirSync(dir);
    const r = runCriu(['dump', '-t', String(target.pid), '-D', dir, '-o', 'dump.log', '--tcp-established']);
    expect(r.status).toBe(0);
    await until(() => gone(target.pid), 'the dumped tree to be killed');
    // the lock stays, in CRIU's table for the dump's run id, and the peer sees no reset meanwhile
    const inv = decode(path.join(dir, 'inventory.img'))[0];
    expect(inv.network_lock_method).toBe(1);
    const table = `CRIU-${inv.dump_criu_run_id}`.slice(0, 26);
    expect(engineTables()).toEqual([`table inet ${table}`]);
    await new Promise((res) => setTimeout(res, 500));
    expect(p.broken).toBe('');
    const before = p.received;
    expect(runCriu(['restore', '-D', dir, '-d', '-o', 'restore.log']).status).toBe(0);
    expect(engineTables()).toEqual([]);
    await until(() => p.received > before + 10000, 'the stream to go on after the restore', 10000);
    expect([p.wrong, p.broken]).toEqual([-1, '']);
    p.socket.destroy();
  }, 30000);

  it.skipIf(!HAS_IPTABLES)('locks it with iptables rules as CRIU writes them (--network-lock iptables), removed by the restore', async () => {
    const target = startTarget(compile('tcpconn', work), ['outside'], work);
    targets.push(target);
    const port = Number((await target.waitFor(/^port=(\d+)$/m))[1]);
    const p = checkingPeer(port);
    await until(() => p.received > 10000, 'the peer to receive', 10000);
    const local = p.socket.localPort as number;
    const dir = path.join(work, 'img3');
    fs.mkdirSync(dir);
    const r = runCriu(['dump', '-t', String(target.pid), '-D', dir, '-o', 'dump.log', '--tcp-established', '--network-lock', 'iptables']);
    expect(r.status, fs.readFileSync(path.join(dir, 'dump.log'), 'utf8').slice(-1500)).toBe(0);
    await until(() => gone(target.pid), 'the dumped tree to be killed');
    expect(decode(path.join(dir, 'inventory.img'))[0].network_lock_method).toBe(0); // IPTABLES
    expect(engineTables()).toEqual([]);
    // one rule per direction, the marked segments let through
    const rules = iptRules().filter((l) => l.includes(`--sport ${local}`) || l.includes(`--dport ${local}`));
    expect(rules).toHaveLength(2);
    expect(rules.join('\n')).toMatch(/-A INPUT -s 127\.0\.0\.1\/32 -d 127\.0\.0\.1\/32 -p tcp -m mark ! --mark 0xc114 -m tcp --sport \d+ --dport \d+ -j DROP/);
    await new Promise((res) => setTimeout(res, 500));
    expect(p.broken).toBe('');
    const before = p.received;
    const rr = runCriu(['restore', '-D', dir, '-d', '-o', 'restore.log']);
    expect(rr.status, fs.readFileSync(path.join(dir, 'restore.log'), 'utf8').slice(-1500)).toBe(0);
    expect(iptRules().filter((l) => l.includes(`port ${local}`))).toEqual([]);
    await until(() => p.received > before + 10000, 'the stream to go on after the restore', 10000);
    expect([p.wrong, p.broken]).toEqual([-1, '']);
    p.socket.destroy();
  }, 30000);
});

describe.skipIf(!IS_ROOT || !HAS_NFT)('TCP connections dropped (--tcp-close) and not accepted yet (--skip-in-flight)', () => {
  let work: string;
  const targets: Target[] = [];
  beforeAll(() => {
    work = tempDir('tcpclose');
  });
  afterAll(() => {
    for (const t of targets) cleanUp(t, undefined);
    fs.rmSync(work, { recursive: true, force: true });
  });

  for (const [mode, dumpArgs, restoreArgs] of [
    ['established', ['--tcp-established'], ['--tcp-close']],
    ['dumped with --tcp-close', ['--tcp-close'], ['--tcp-close']],
    ['half-closed, dumped with --tcp-close', ['--tcp-close'], ['--tcp-close']],
  ] as const) {
    it(`comes back closed at both ends, the listener accepting (${mode})`, async () => {
      fs.rmSync(path.join(work, 'go'), { force: true });
      const t = startTarget(compile('tcpclosed', work), mode.startsWith('half') ? ['half'] : [], work);
      targets.push(t);
      await t.waitFor(/^ready$/m);
      const dir = path.join(work, `img-${targets.length}`);
      fs.mkdirSync(dir);
      expect(runCriu(['dump', '-t', String(t.pid), '-D', dir, '-o', 'dump.log', ...dumpArgs]).status).toBe(0);
      await until(() => gone(t.pid), 'the dumped task to exit');
      expect(decode(path.join(dir, 'inventory.img'))[0].tcp_close ?? false).toBe(dumpArgs[0] === '--tcp-close');
      if (dumpArgs[0] === '--tcp-close') {
        // such a set needs --tcp-close at restore too, as CRIU's does
        const r = runCriu(['restore', '-D', dir, '-d', '-o', 'refused.log']);
        expect(r.status).toBe(1);
        expect(fs.readFileSync(path.join(dir, 'refused.log'), 'utf8')).toMatch(/^Error \(restore\): inventory\.img: tcp_close: the set was dumped with --tcp-close/m);
      }
      expect(runCriu(['restore', '-D', dir, '-d', '-o', 'restore.log', ...restoreArgs]).status).toBe(0);
      fs.writeFileSync(path.join(work, 'go'), '');
      await t.waitFor(/^closed (ok|fail.*)$/m);
      expect(t.output()).toMatch(/^closed ok$/m);
    }, 30000);
  }
});
