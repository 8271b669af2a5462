// engine dump of unix sockets: listener with a pending connection, abstract and path-bound
// datagram sockets, stream socketpairs (one shared with a child), queued data copied without
// being consumed, entries with the fields CRIU 4.2 writes (corpus unix/ and fdkinds/).
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import * as fs from 'fs';
import * as path from 'path';
import { loadImage } from '../../images/files';
import { native } from '../../native';
import { collectUnixSockets } from '../../engine/dump/netlink';
import { IS_ROOT, SKIP_REASON, tempDir, compile, startTarget, runEngine, decode, alive, lastCount, consecutive, Target, dumpOk, cleanUp } from './helpers';
import { CORPUS, imageKinds, checkAllImagesDecode, fdTable } from './dump-support';

if (!IS_ROOT) console.warn(`SKIPPING engine unix socket tests: ${SKIP_REASON}`);

const shape = (u: any) => `${u.type}/${u.state}/${u.name.length === 0 ? 'unbound' : u.name[0] === 0 ? 'abstract' : 'path'}/${u.peer ? 'peer' : 'nopeer'}`;

describe.skipIf(!IS_ROOT)('engine dump: unix sockets', () => {
  let work: string;
  let target: Target;
  let dir: string;
  let fd: Record<string, number>;
  let child: number;
  let inoOf: (pid: number, n: number) => number;

  beforeAll(async () => {
    work = tempDir('unix');
    const exe = compile('unix', work);
    target = startTarget(exe, [work], work);
    const m = await target.waitFor(/fds lis=(\d+) cli=(\d+) da=(\d+) db=(\d+) dc=(\d+) dd=(\d+) sp=(\d+),(\d+) kp=(\d+) child=(\d+)/);
    fd = { lis: +m[1], cli: +m[2], da: +m[3], db: +m[4], dc: +m[5], dd: +m[6], sp0: +m[7], sp1: +m[8], kp: +m[9] };
    child = +m[10];
    await target.waitFor(/count=2\n/);
    await target.waitFor(/child=2\n/);
    inoOf = (pid, n) => Number(/\[(\d+)\]/.exec(fs.readlinkSync(`/proc/${pid}/fd/${n}`))![1]);
    dir = path.join(work, 'images');
    dumpOk(target.pid, dir, '--leave-running');
  });

  afterAll(() => cleanUp(target, work, child));

  it('writes the image kinds of the corpus unix/ set, all decodable', () => {
    checkAllImagesDecode(dir);
    const corpus = path.join(CORPUS, 'unix');
    if (fs.existsSync(corpus)) expect(imageKinds(dir)).toEqual(imageKinds(corpus));
  });

  it('records each socket with sock_diag truth: type, state, name, peer, perms', () => {
    const ids = decode(path.join(dir, `ids-${target.pid}.img`))[0];
    const t = fdTable(dir, ids.files_id);
    const usk = (n: number) => {
      const [info, file] = t.get(n)!;
      expect(info.type).toBe(5);
      expect(file.usk.ino).toBe(inoOf(target.pid, n));
      expect(file.usk.ns_id).toBe(ids.net_ns_id);
      return file.usk;
    };
    const lis = usk(fd.lis);
    expect(lis).toMatchObject({ type: 1, state: 10, backlog: 4, peer: 0, flags: 2 });
    expect(Buffer.from(lis.name).toString()).toBe(path.join(work, 'listen.sock') + '\0');
    const st = fs.statSync(path.join(work, 'listen.sock'));
    expect(lis.file_perms).toEqual({ mode: st.mode, uid: st.uid, gid: st.gid });
    // a connection not accepted yet names the listener as its peer
    expect(usk(fd.cli)).toMatchObject({ type: 1, state: 1, peer: lis.ino });
    const da = usk(fd.da);
    expect(Buffer.from(da.name)).toEqual(Buffer.from(`\0engine-abstract-A-${target.pid}`, 'latin1'));
    expect(da.file_perms).toBeUndefined();
    const db = usk(fd.db);
    expect(Buffer.from(db.name)).toEqual(Buffer.from(`\0engine abs=B\x7f\xff\x01-${target.pid}`, 'latin1'));
    expect(db.peer).toBe(da.ino);
    expect(usk(fd.dd).peer).toBe(usk(fd.dc).ino);
    expect(usk(fd.sp0).peer).toBe(usk(fd.sp1).ino);
    expect(usk(fd.sp1).peer).toBe(usk(fd.sp0).ino);
    // the pair shared with the child: each end peers the other, across tasks
    const cids = decode(path.join(dir, `ids-${child}.img`))[0];
    const ct = fdTable(dir, cids.files_id);
    // the child inherited every other socket (same files); its own end is the one the parent lacks
    const parentIds = new Set([...t.values()].map(([i]) => i.id));
    const kidEnd = [...ct.values()].find(([i]) => i.type === 5 && !parentIds.has(i.id))![1].usk;
    expect(usk(fd.kp).peer).toBe(kidEnd.ino);
    expect(kidEnd.peer).toBe(usk(fd.kp).ino);
  });

  it('holds an entry back until its peer is written, as CRIU does', () => {
    const files = decode(path.join(dir, 'files.img'));
    const order = files.filter((e) => e.type === 5).map((e) => e.usk.ino);
    const sp0 = inoOf(target.pid, fd.sp0), sp1 = inoOf(target.pid, fd.sp1), kp = inoOf(target.pid, fd.kp);
    expect(order.indexOf(sp0)).toBe(order.indexOf(sp1) + 1);
    expect(order[order.length - 1]).toBe(kp);
  });

  it('has the fields CRIU 4.2 writes for the same kind of socket', () => {
    const corpusFiles = [path.join(CORPUS, 'unix', 'files.img'), path.join(CORPUS, 'fdkinds', 'files.img')].filter((f) => fs.existsSync(f));
    if (!corpusFiles.length) return;
    const theirs = new Map<string, any>();
    for (const f of corpusFiles) for (const e of decode(f)) if (e.type === 5) theirs.set(shape(e.usk), e.usk);
    let compared = 0;
    for (const e of decode(path.join(dir, 'files.img'))) {
      if (e.type !== 5) continue;
      const ref = theirs.get(shape(e.usk));
      if (!ref) continue;
      expect(Object.keys(e.usk).sort(), shape(e.usk)).toEqual(Object.keys(ref).sort());
      expect(Object.keys(e.usk.opts).sort()).toEqual(Object.keys(ref.opts).sort());
      compared++;
    }
    expect(compared).toBeGreaterThanOrEqual(5);
  });

  it('copies every queue, one entry per datagram', () => {
    const img = loadImage(path.join(dir, 'sk-queues.img'));
    const files = decode(path.join(dir, 'files.img'));
    const idOf = (ino: number) => files.find((e) => e.type === 5 && e.usk.ino === ino).id;
    const q = (ino: number) => img.entries.filter((e) => e.msg.id_for === idOf(ino)).map((e) => Buffer.from(e.extra?.kind === 'blob' ? e.extra.data : []).toString('latin1'));
    expect(q(inoOf(target.pid, fd.da))).toEqual(['dgram-11', 'dgram-12']);
    expect(q(inoOf(target.pid, fd.dc))).toEqual(['named-dgram-payload']);
    let lower = '', upper = '';
    for (let i = 0; i < 500; i++) lower += String.fromCharCode(97 + (i % 26));
    for (let i = 0; i < 500; i++) upper += String.fromCharCode(65 + (i % 26));
    expect(q(inoOf(target.pid, fd.sp1))).toEqual([lower]);
    expect(q(inoOf(target.pid, fd.sp0))).toEqual([upper]);
    expect(q(inoOf(target.pid, fd.kp))).toEqual(['from-kid\n']);
    for (const e of img.entries) expect(e.msg.length).toBe(e.extra?.kind === 'blob' ? e.extra.data.length : -1);
  });

  it('consumes nothing and puts the peek offset back; the tasks go on', async () => {
    const diag = collectUnixSockets();
    expect(diag.get(inoOf(target.pid, fd.sp0))!.rqueue).toBe(500);
    expect(diag.get(inoOf(target.pid, fd.sp1))!.rqueue).toBe(500);
    expect(diag.get(inoOf(target.pid, fd.da))!.rqueue).toBe(8); // first datagram still there
    const n = native();
    const pidfd = n.pidfdOpen(target.pid);
    try {
      for (const f of [fd.sp0, fd.da, fd.kp]) {
        const dup = n.pidfdGetfd(pidfd, f);
        expect(n.getsockopt(dup, 1, 42, 4).readInt32LE(0)).toBe(-1); // SO_PEEK_OFF disabled again
        n.close(dup);
      }
    } finally {
      n.close(pidfd);
    }
    expect(alive(target.pid) && alive(child)).toBe(true);
    const c = lastCount(target.output());
    await target.waitFor(new RegExp(`count=${c + 3}\\n`));
    expect(consecutive(target.output())).toBe(true);
    expect(consecutive(target.output(), 'child')).toBe(true);
  });
});
