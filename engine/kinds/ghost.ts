// Ghost files: files (directories, FIFOs, device nodes, symlinks) that a task still holds open, maps, runs or sits in after
// they were unlinked. Both halves, in CRIU 4.2's layout: at dump the contents go into
// ghost-file-<hex id>.img (holes kept: chunked from 12 KiB on, data regions found with
// SEEK_DATA/SEEK_HOLE) and remap-fpath.img maps each files.img id to its ghost. At restore the
// file is made again at its old path (or beside it when that path is taken), everything opens it
// by that name, and it is unlinked again once the tree is restored (or the restore failed).
import * as fs from 'fs';
import * as path from 'path';
import type { Msg } from '../../images/codec';
import { writeImage, loadImage, NewEntry } from '../../images/files';
import { ByteSource } from '../../images/source';
import { readHeader, readEntries, ImageError } from '../../images/image';
import { native } from '../../native';
import { major, minor } from '../proc/devnum';
import { UnsupportedError, EngineError } from '../errors';

/** CRIU's default --ghost-limit: allocated bytes of one ghost file */
export const DEFAULT_GHOST_LIMIT = 1 << 20;
/** files from this size on are written as chunks (holes are not stored) */
const CHUNKS_FROM = 3 * 4096;
/** the most bytes read or written per step: bounded memory whatever the file's size */
const STEP = 4 << 20;
const SEEK_DATA = 3, SEEK_HOLE = 4;
const REMAP_LINKED = 0, REMAP_GHOST = 1, REMAP_PROCFS = 2;
const S_IFMT = 0o170000, S_IFREG = 0o100000, S_IFDIR = 0o040000, S_IFIFO = 0o010000, S_IFCHR = 0o020000, S_IFBLK = 0o060000, S_IFLNK = 0o120000;
const GHOST_KINDS = new Set([S_IFREG, S_IFDIR, S_IFIFO, S_IFCHR, S_IFBLK, S_IFLNK]);

const DELETED = ' (deleted)';

/** What a /proc link says about a file that may have been unlinked. */
export function unlinkedName(link: string): string | undefined {
  return link.endsWith(DELETED) ? link.slice(0, -DELETED.length) : undefined;
}

/** The dump half: one ghost image per unlinked inode, one remap entry per files.img id. */
export class GhostFiles {
  private byInode = new Map<string, number>();
  private nextId = 1;
  readonly remaps: Msg[] = [];
  /** with --link-remap: a file unlinked but linked elsewhere gets a new name, this files.img REG entry */
  linkRemap?: { allocId: () => number; entries: Msg[] };
  /** the names made for link remaps (removed again when the dump fails) */
  private links = new Map<string, { id: number; at: string }>();

  constructor(private dir: string, private limit: number) {}

  /** The dump failed: the names given to link-remapped files go again. */
  abort(): void {
    for (const l of this.links.values()) try { fs.unlinkSync(l.at); } catch { /* gone */ }
    this.links.clear();
  }

  /**
   * A link remap, as CRIU makes it: the open file, unlinked here but still linked elsewhere, gets
   * the name link_remap.<id> in the directory it was unlinked from, recorded as a REG entry of
   * that id; the restore opens it there and removes the name.
   */
  private linked(fileId: number, name: string, via: string, st: fs.Stats, who: string): string {
    const key = `${st.dev}:${st.ino}`;
    let l = this.links.get(key);
    if (!l) {
      const id = this.linkRemap!.allocId();
      const at = path.join(path.dirname(name), `link_remap.${id}`);
      try {
        native().linkFollow(via, at);
      } catch (e) {
        throw new UnsupportedError(`${who}: ${name} was unlinked but is still linked elsewhere, and cannot be linked again as ${at}: ${(e as Error).message}`);
      }
      l = { id, at };
      this.links.set(key, l);
      this.linkRemap!.entries.push({ type: 1, id, reg: { id, flags: 0, pos: 0n, fown: { uid: 0, euid: 0, signum: 0, pid_type: 0, pid: 0 }, name: at } });
    }
    this.remaps.push({ orig_id: fileId, remap_id: l.id, remap_type: REMAP_LINKED });
    return name;
  }

  /**
   * Is the file behind `via` (a /proc link) with /proc name `link` unlinked? Then its contents are
   * saved and files.img id `fileId` is remapped to them; returns the name to record (without
   * " (deleted)"), or undefined when the file is simply there under that name.
   */
  remap(fileId: number, link: string, via: string, who: string): string | undefined {
    const name = unlinkedName(link);
    if (name === undefined) return undefined;
    const st = fs.statSync(via);
    if (st.nlink > 0) {
      // a file really named "... (deleted)", or one unlinked here but linked elsewhere
      try {
        const there = fs.statSync(link);
        if (there.dev === st.dev && there.ino === st.ino) return undefined;
      } catch {
        /* not there */
      }
      if ((st.mode & S_IFMT) === S_IFDIR) throw new UnsupportedError(`${who}: the directory ${name} was removed but is still linked elsewhere (unsupported)`);
      if (this.linkRemap) return this.linked(fileId, name, via, st, who);
      throw new UnsupportedError(`${who}: ${name} was unlinked but is still linked elsewhere (dump it with --link-remap)`);
    }
    // an internal mount's object (hugetlb or SysV memory, an AIO ring) only looks like an
    // unlinked file; a real one was on the mount its nearest directory still there is on (the
    // directories removed after it are made again for the restore, as CRIU does)
    let parent: fs.Stats | undefined;
    for (let dir = path.dirname(name); !parent; dir = path.dirname(dir)) {
      try {
        parent = fs.statSync(dir);
      } catch {
        if (dir === '/') break;
      }
    }
    if (!parent || parent.dev !== st.dev)
      throw new UnsupportedError(`${who}: ${link} is not on a mounted file system that can be written again (an internal mount: hugetlb, SysV or AIO memory)`);
    const kind = st.mode & S_IFMT;
    if (!GHOST_KINDS.has(kind)) throw new UnsupportedError(`${who}: unlinked ${name} is of a kind that cannot be made again (mode 0${st.mode.toString(8)})`);
    const used = st.blocks * 512;
    if (kind === S_IFREG && used > this.limit)
      throw new UnsupportedError(`${who}: unlinked file ${name} holds ${used} bytes, more than the ghost limit of ${this.limit} (raise it with --ghost-limit)`);
    const key = `${st.dev}:${st.ino}`;
    let id = this.byInode.get(key);
    if (id === undefined) {
      id = this.nextId++;
      this.byInode.set(key, id);
      this.write(id, via, st);
    }
    this.remaps.push({ orig_id: fileId, remap_id: id, remap_type: REMAP_GHOST });
    return name;
  }

  private write(id: number, via: string, st: fs.Stats): void {
    const tv = (ms: number, ns: bigint) => ({ tv_sec: BigInt(Math.floor(ms / 1000)), tv_usec: (ns / 1000n) % 1_000_000n });
    const big = fs.statSync(via, { bigint: true });
    const head: Msg = {
      uid: st.uid, gid: st.gid, mode: st.mode, dev: st.dev, ino: BigInt(st.ino),
      atim: tv(st.atimeMs, big.atimeNs), mtim: tv(st.mtimeMs, big.mtimeNs),
    };
    const file = path.join(this.dir, `ghost-file-${id.toString(16)}.img`);
    const kind = st.mode & S_IFMT;
    if (kind === S_IFCHR || kind === S_IFBLK) head.rdev = st.rdev;
    if (kind === S_IFLNK) head.symlnk_target = symlinkTarget(via);
    if (kind !== S_IFREG) {
      writeImage(file, 'GHOST_FILE', [{ msg: head }]);
      return;
    }
    // reopened through /proc: the task's own fd may be write-only
    const fd = fs.openSync(via, 'r');
    try {
      if (st.size < CHUNKS_FROM) {
        const data = Buffer.alloc(st.size);
        readFull(fd, data, 0);
        writeImage(file, 'GHOST_FILE', [{ msg: head, extra: { kind: 'blob', data } }]);
      } else {
        writeImage(file, 'GHOST_FILE', [{ msg: { ...head, chunks: true, size: BigInt(st.size) } }, ...chunks(fd, st.size)]);
      }
    } finally {
      fs.closeSync(fd);
    }
  }
}

/** Where an unlinked symlink points: asked of the task's O_PATH fd itself (`via` is its /proc link). */
function symlinkTarget(via: string): string {
  const m = /^\/proc\/(\d+)\/fd\/(\d+)$/.exec(via);
  if (!m) throw new UnsupportedError(`${via}: an unlinked symlink held other than by an fd`);
  const n = native();
  const pidfd = n.pidfdOpen(Number(m[1]));
  try {
    const fd = n.pidfdGetfd(pidfd, Number(m[2]));
    try {
      return n.readlinkFd(fd);
    } finally {
      n.close(fd);
    }
  } finally {
    n.close(pidfd);
  }
}

function readFull(fd: number, buf: Buffer, at: number): void {
  let off = 0;
  while (off < buf.length) {
    const n = fs.readSync(fd, buf, off, buf.length - off, at + off);
    if (n === 0) throw new EngineError(`unlinked file shrank while it was saved (short read at ${at + off})`);
    off += n;
  }
}

/** ghost_chunk_entry + data for every data region, at most STEP bytes each. */
function* chunks(fd: number, size: number): Generator<NewEntry> {
  const n = native();
  let at = 0;
  while (at < size) {
    let data: number, hole: number;
    try {
      data = Number(n.lseek(fd, at, SEEK_DATA));
    } catch {
      return; // ENXIO: only a hole is left
    }
    hole = Math.min(size, Number(n.lseek(fd, data, SEEK_HOLE)));
    for (let off = data; off < hole; off += STEP) {
      const len = Math.min(STEP, hole - off);
      const buf = Buffer.alloc(len);
      readFull(fd, buf, off);
      yield { msg: { len: BigInt(len), off: BigInt(off) }, extra: { kind: 'blob', data: buf } };
    }
    at = hole;
  }
}

/** The restore half: the ghosts made for a restore, removed again by remove(). */
export class RestoredGhosts {
  private made: { path: string; dir: boolean }[] = [];
  /** link remaps opened: their names go once the restore succeeded (a failed one may be tried again) */
  private links: string[] = [];

  /** Makes every ghost of the set and points its files.img entries at it. */
  static make(dir: string, files: Map<number, Msg>): RestoredGhosts {
    const g = new RestoredGhosts();
    const remapFile = path.join(dir, 'remap-fpath.img');
    if (!fs.existsSync(remapFile)) return g;
    try {
      const byGhost = new Map<number, number[]>();
      for (const e of loadImage(remapFile).entries) {
        const m = e.msg;
        const type = m.remap_type === undefined ? ((Number(m.remap_id) >>> 31) ? REMAP_GHOST : 0) : Number(m.remap_type);
        const ghost = Number(m.remap_id) & 0x7fffffff;
        if (type === REMAP_PROCFS) continue; // a dead process's /proc directory: kinds/deadproc
        if (type !== REMAP_GHOST && type !== REMAP_LINKED) throw new EngineError(`remap-fpath.img: file id ${m.orig_id}: remap type ${type} (ghost files, link remaps and dead processes' /proc directories are restored)`, 'EIMAGE');
        const f = files.get(Number(m.orig_id));
        if (!f?.reg) throw new EngineError(`remap-fpath.img: file id ${m.orig_id} is not a regular file in files.img`, 'EIMAGE');
        if (type === REMAP_LINKED) {
          // opened by the name the dump gave it, which goes once the tree is restored
          const to = files.get(Number(m.remap_id))?.reg?.name;
          if (typeof to !== 'string' || !fs.existsSync(to)) throw new EngineError(`remap-fpath.img: file id ${m.orig_id}: its link remap ${to ?? `(file ${m.remap_id})`} is missing`, 'EIMAGE');
          f.reg.name = to;
          if (!g.links.includes(to)) g.links.push(to);
          continue;
        }
        const l = byGhost.get(ghost) ?? [];
        l.push(Number(m.orig_id));
        byGhost.set(ghost, l);
      }
      for (const [ghost, ids] of byGhost) {
        const at = g.makeOne(dir, ghost, files.get(ids[0])!.reg.name as string);
        for (const id of ids) files.get(id)!.reg.name = at;
      }
    } catch (e) {
      g.remove();
      throw e;
    }
    return g;
  }

  private makeOne(dir: string, id: number, name: string): string {
    const image = `ghost-file-${id.toString(16)}.img`;
    const file = path.join(dir, image);
    if (!fs.existsSync(file)) throw new EngineError(`${image}: missing from the image set (needed for ${name})`, 'EIMAGE');
    const src = ByteSource.open(file);
    try {
      return this.makeFrom(src, image, id, name);
    } catch (e) {
      if (e instanceof ImageError) throw new EngineError(`${image}: ${e.message}`, 'EIMAGE');
      throw e;
    } finally {
      src.close();
    }
  }

  /** The ghost's entries are read one at a time: memory stays bounded by one chunk. */
  private makeFrom(src: ByteSource, image: string, id: number, name: string): string {
    const entries = readEntries(src, readHeader(src, image));
    const first = entries.next();
    if (first.done) throw new EngineError(`${image}: no ghost_file_entry`, 'EIMAGE');
    const head = first.value.msg;
    // directories removed since are made again for the while (and removed with the ghost)
    const missing: string[] = [];
    for (let dir = path.dirname(name); !fs.existsSync(dir); dir = path.dirname(dir)) missing.unshift(dir);
    for (const dir of missing) {
      fs.mkdirSync(dir, 0o700);
      this.made.push({ path: dir, dir: true });
    }
    // the old name when it is free, so that /proc shows the same "<name> (deleted)" again
    const at = fs.existsSync(name) ? `${name}.cr.${id.toString(16)}.ghost` : name;
    const mode = Number(head.mode);
    if ((mode & S_IFMT) === S_IFDIR) {
      fs.mkdirSync(at, mode & 0o7777);
      this.made.push({ path: at, dir: true });
    } else if ((mode & S_IFMT) === S_IFIFO) {
      try {
        native().mknod(at, S_IFIFO | (mode & 0o7777));
      } catch (e) {
        throw new EngineError(`${image}: cannot make the FIFO ${at} again: ${(e as Error).message}`);
      }
      this.made.push({ path: at, dir: false });
    } else if ((mode & S_IFMT) === S_IFCHR || (mode & S_IFMT) === S_IFBLK) {
      const rdev = Number(head.rdev ?? 0);
      try {
        native().mknod(at, (mode & S_IFMT) | (mode & 0o7777), major(rdev), minor(rdev));
      } catch (e) {
        throw new EngineError(`${image}: cannot make the device node ${at} (${major(rdev)}:${minor(rdev)}) again: ${(e as Error).message}`);
      }
      this.made.push({ path: at, dir: false });
    } else if ((mode & S_IFMT) === S_IFLNK) {
      if (typeof head.symlnk_target !== 'string') throw new EngineError(`${image}: a symlink without symlnk_target`, 'EIMAGE');
      fs.symlinkSync(head.symlnk_target, at);
      this.made.push({ path: at, dir: false });
      fs.lchownSync(at, Number(head.uid), Number(head.gid));
      const t = (tv: Msg | undefined) => (tv ? Number(tv.tv_sec) + Number(tv.tv_usec) / 1e6 : Date.now() / 1000);
      fs.lutimesSync(at, t(head.atim), t(head.mtim));
      return at;
    } else if ((mode & S_IFMT) === S_IFREG) {
      const fd = fs.openSync(at, fs.constants.O_CREAT | fs.constants.O_EXCL | fs.constants.O_WRONLY, 0o600);
      this.made.push({ path: at, dir: false });
      try {
        if (head.chunks) {
          for (const e of entries) {
            const data = e.extra?.kind === 'blob' ? e.extra.data : Buffer.alloc(0);
            if (BigInt(data.length) !== BigInt(e.msg.len as bigint)) throw new EngineError(`${image}: a chunk at ${e.msg.off} holds ${data.length} bytes, not ${e.msg.len}`, 'EIMAGE');
            writeFull(fd, data, Number(e.msg.off));
          }
          fs.ftruncateSync(fd, Number(head.size ?? 0));
        } else {
          const data = first.value.extra?.kind === 'blob' ? first.value.extra.data : Buffer.alloc(0);
          writeFull(fd, data, 0);
        }
      } finally {
        fs.closeSync(fd);
      }
    } else {
      throw new EngineError(`${image}: mode 0${mode.toString(8)}: only regular files, directories, FIFOs, device nodes and symlinks are made again`, 'EIMAGE');
    }
    fs.chownSync(at, Number(head.uid), Number(head.gid));
    fs.chmodSync(at, mode & 0o7777);
    const t = (tv: Msg | undefined) => (tv ? Number(tv.tv_sec) + Number(tv.tv_usec) / 1e6 : Date.now() / 1000);
    fs.utimesSync(at, t(head.atim), t(head.mtim));
    return at;
  }

  /** The restore succeeded: the ghosts go, and the names link remaps were given. */
  finished(): void {
    this.remove();
    for (const l of this.links.splice(0)) try { fs.unlinkSync(l); } catch { /* gone */ }
  }

  /** Unlinks every ghost again (the restored tasks keep them open, as before the dump). */
  remove(): void {
    for (const m of this.made.reverse()) {
      try {
        if (m.dir) fs.rmdirSync(m.path);
        else fs.unlinkSync(m.path);
      } catch {
        /* already gone */
      }
    }
    this.made = [];
  }
}

function writeFull(fd: number, data: Uint8Array, at: number): void {
  let off = 0;
  while (off < data.length) off += fs.writeSync(fd, data, off, data.length - off, at + off);
}
