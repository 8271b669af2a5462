// The fuzz harness proper: a pool of real images (fixtures, ../shared/corpus, synthetic ones
// for kinds the corpus lacks), one deterministic iteration per index, run through the very
// functions the crit command runs (decode, encode, check, x, xray, diff), and a verdict:
// clean result, clean located error, or FAILURE (internal error, unlocated or multi-line
// error, slow input, memory growth, an encoded image that does not read back the same).
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as crypto from 'crypto';
import { ByteSource } from '../../images/source';
import { readHeader, readEntries, BinSink, ImageWriter } from '../../images/image';
import { TextSink } from '../../images/json/document';
import { kindFor } from '../../images/kinds';
import { messageType, enumType } from '../../images/schema';
import { MAGICS } from '../../images/magic';
import type { JsonOut } from '../../images/json/tojson';
import { decodeStream, encodeStream, decodeSalvage, imageInfo } from '../../crit/commands/codec';
import { check } from '../../crit/commands/check';
import { explore } from '../../crit/commands/explore';
import { xray, XrayOpts } from '../../crit/commands/xray';
import { diff } from '../../crit/commands/diff';
import { redirectOutput } from '../../crit/io';
import { errorKind } from '../../crit/cli';
import { ImageSet } from '../../images/imageset';
import { Rng, BinInput, mutateBinary, mutateJson } from './mutate';

// bench/fuzz from the sources (vitest), dist/bench/fuzz when compiled
// (FUZZ_ROOT: the checkout, when a copy of dist/ runs a long campaign while the sources change)
const up2 = path.resolve(__dirname, '..', '..');
export const ROOT = process.env.FUZZ_ROOT || (path.basename(up2) === 'dist' ? path.dirname(up2) : up2);
export const CORPUS = process.env.CRIT_CORPUS || path.resolve(ROOT, '..', 'shared', 'corpus');

export type Verdict = 'clean' | 'error' | 'failure';

export interface Failure {
  signature: string;
  kind: string;
  op: string;
  iteration: number;
  message: string;
  stack?: string;
  /** what to save as the reproducer */
  input?: { name: string; data: Buffer };
  /** set operations: which set and command */
  context?: string;
}

export interface Counts {
  iterations: number;
  decodeInputs: number;
  decodeRuns: number;
  encodeInputs: number;
  encodeRuns: number;
  /** mutated images that decoded (plain) / mutated documents that encoded */
  decodedOk: number;
  encodedOk: number;
  setOps: number;
  clean: number;
  errors: number;
  failures: number;
}

export const newCounts = (): Counts => ({ iterations: 0, decodeInputs: 0, decodeRuns: 0, encodeInputs: 0, encodeRuns: 0, decodedOk: 0, encodedOk: 0, setOps: 0, clean: 0, errors: 0, failures: 0 });

export interface PoolImage extends BinInput {
  path: string;
  plain?: string;
  pretty?: string;
}

export interface PoolSet {
  name: string;
  dir: string;
  files: string[];
  pid?: number;
  vmaStarts: bigint[];
}

export interface Pool {
  images: PoolImage[];
  /** images that decode, for JSON mutations */
  json: PoolImage[];
  sets: PoolSet[];
  corpus: boolean;
}

class StringSink implements JsonOut {
  s = '';
  parts: string[] = [];
  flush(): void {
    this.parts.push(this.s);
    this.s = '';
  }
  text(): string {
    this.flush();
    return this.parts.join('');
  }
}

/** BinSink that keeps the image in memory. */
class MemBinSink extends BinSink {
  chunks: Buffer[] = [];
  constructor() {
    super(-1);
  }
  override flush(): void {
    this.chunks.push(Buffer.from(this.w.buf.subarray(0, this.w.pos)));
    this.w.pos = 0;
  }
  bytes(): Buffer {
    this.flush();
    return Buffer.concat(this.chunks);
  }
}

function listFiles(dir: string, maxSize: number): string[] {
  const out: string[] = [];
  const walk = (d: string) => {
    for (const n of fs.readdirSync(d).sort()) {
      const p = path.join(d, n);
      const st = fs.lstatSync(p);
      if (st.isDirectory()) {
        if (n !== 'expected' && n !== 'crit-out' && n !== 'logs') walk(p);
      } else if (st.isFile() && st.size <= maxSize && (/\.img$/.test(n) || /^stats-/.test(n) || n === 'irmap-cache')) out.push(p);
    }
  };
  if (fs.existsSync(dir)) walk(dir);
  return out;
}

function decodeText(file: string, name: string, mode: 'plain' | 'pretty'): string {
  const src = ByteSource.open(file);
  try {
    const out = new StringSink();
    decodeStream(src, name, out, mode);
    return out.text();
  } finally {
    src.close();
  }
}

function entryOffsets(file: string, name: string): number[] {
  const src = ByteSource.open(file);
  try {
    const hdr = readHeader(src, name);
    if (hdr.kind.layout === 'amdgpu' || hdr.kind.layout === 'amdgpu-raw') return [];
    return [...readEntries(src, hdr)].map((e) => e.offset);
  } catch {
    return [];
  } finally {
    src.close();
  }
}

/** Images for kinds the corpus has none of, written by our own writer. */
function synthetic(): { name: string; magic: string; entries: { type?: string; msg: any; extra?: any }[] }[] {
  const blob = (s: string) => ({ kind: 'blob', data: Buffer.from(s) });
  return [
    { name: 'ghost-file-1.img', magic: 'GHOST_FILE', entries: [{ msg: { uid: 0, gid: 0, mode: 0o100644 }, extra: blob('gone but open') }] },
    { name: 'ghost-file-2.img', magic: 'GHOST_FILE', entries: [{ msg: { uid: 0, gid: 0, mode: 0o100644, chunks: true, size: 8192 } }, { type: 'ghost_chunk_entry', msg: { len: 3, off: 4096 }, extra: blob('abc') }, { type: 'ghost_chunk_entry', msg: { len: 2, off: 8190 }, extra: blob('yz') }] },
    { name: 'tcp-stream-1a.img', magic: 'TCP_STREAM', entries: [{ msg: { inq_len: 3, inq_seq: 1, outq_len: 5, outq_seq: 2, opt_mask: 7, snd_wscale: 7, mss_clamp: 1460 }, extra: { kind: 'tcp', inq: Buffer.from('INQ'), outq: Buffer.from('OUTQQ') } }] },
    { name: 'sk-queues.img', magic: 'SK_QUEUES', entries: [{ msg: { id_for: 5, length: 3 }, extra: blob('abc') }, { msg: { id_for: 6, length: 0 }, extra: blob('') }] },
    { name: 'bpfmap-data.img', magic: 'BPFMAP_DATA', entries: [{ msg: { map_id: 1, keys_bytes: 4, values_bytes: 8, count: 1 }, extra: blob('keyvalue1234') }] },
    { name: 'ipcns-sem-1.img', magic: 'IPCNS_SEM', entries: [{ msg: { desc: { key: 1, uid: 0, gid: 0, cuid: 0, cgid: 0, mode: 0o600, id: 3 }, nsems: 3 }, extra: { kind: 'sem', values: [1, 2, 65535] } }] },
    { name: 'ipcns-msg-1.img', magic: 'IPCNS_MSG', entries: [{ msg: { desc: { key: 1, uid: 0, gid: 0, cuid: 0, cgid: 0, mode: 0o600, id: 3 }, qbytes: 100, qnum: 2 }, extra: { kind: 'msgq', items: [{ msg: { mtype: 1, msize: 5 }, data: Buffer.from('first') }, { msg: { mtype: 2, msize: 9 }, data: Buffer.from('second!!!') }] } }] },
    { name: 'ipcns-shm-1.img', magic: 'IPCNS_SHM', entries: [{ msg: { desc: { key: 1, uid: 0, gid: 0, cuid: 0, cgid: 0, mode: 0o600, id: 3 }, size: 5 }, extra: blob('hello') }] },
    { name: 'files.img', magic: 'FILES', entries: [
      { msg: { id: 1, type: 2, isk: { id: 1, ino: 2, family: 2, type: 1, proto: 6, state: 10, src_port: 80, dst_port: 0, flags: 2, backlog: 5, src_addr: [16777343], dst_addr: [0], fown: { uid: 0, euid: 0, signum: 0, pid_type: 0, pid: 0 }, opts: { so_sndbuf: 1, so_rcvbuf: 1, so_snd_tmo_sec: 0, so_snd_tmo_usec: 0, so_rcv_tmo_sec: 0, so_rcv_tmo_usec: 0 } } } },
      { msg: { id: 2, type: 2, isk: { id: 2, ino: 3, family: 10, type: 1, proto: 6, state: 1, src_port: 80, dst_port: 5000, flags: 2, backlog: 0, src_addr: [0, 0, 4294901760, 16777343], dst_addr: [0, 0, 0, 16777216], fown: { uid: 0, euid: 0, signum: 0, pid_type: 0, pid: 0 }, opts: { so_sndbuf: 1, so_rcvbuf: 1, so_snd_tmo_sec: 0, so_snd_tmo_usec: 0, so_rcv_tmo_sec: 0, so_rcv_tmo_usec: 0 } } } },
    ] },
    { name: 'cgroup.img', magic: 'CGROUP', entries: [{ msg: { sets: [{ id: 1, ctls: [{ name: 'cpu', path: '/a' }] }], controllers: [{ cnames: ['cpu'], dirs: [{ dir_name: 'a', children: [{ dir_name: 'b', children: [], properties: [{ name: 'cpu.shares', value: '1024' }] }], properties: [] }] }] } }] },
  ];
}

/** A random message of `type` (required fields always, others often), for kinds no real image has. */
function randomMessage(r: Rng, type: string, depth = 0): Record<string, unknown> {
  const m = messageType(type);
  const o: Record<string, unknown> = {};
  for (const f of m.fields) {
    if (f.label === 'optional' && !r.chance(0.6)) continue;
    if (f.kind === 'message' && depth > 3 && f.label !== 'required') continue;
    const one = (): unknown => {
      if (f.kind === 'message') return randomMessage(r, f.type, depth + 1);
      if (f.kind === 'enum') return r.pick([...enumType(f.type).byValue.keys()]);
      switch (f.type) {
        case 'bool': return r.chance(0.5);
        case 'string': return r.pick(['', 'x', '/tmp/a b', 'caf\u00e9', 'n'.repeat(40)]);
        case 'bytes': { const b = new Uint8Array(r.int(24)); for (let i = 0; i < b.length; i++) b[i] = r.int(256); return b; }
      }
      const wide = /64/.test(f.type);
      const signed = /^(s?int|sfixed)/.test(f.type);
      const v = r.pick(wide ? [0, 1, 4096, 0x7fffffff, 0x100000000, 0x1fffffffffffff] : [0, 1, 2, 255, 4096, 0x7fffffff]);
      return signed && r.chance(0.2) ? -v : wide && r.chance(0.1) ? 0xffffffffffffffffn : v;
    };
    if (f.label === 'repeated') {
      const n = f.opts?.ipadd ? r.pick([1, 4]) : r.int(depth > 1 ? 2 : 4);
      if (n) o[f.name] = Array.from({ length: n }, one);
    } else o[f.name] = one();
  }
  return o;
}

/** Two random entries of every kind with plain entries (and one per amdgpu metadata kind). */
function randomImages(): { name: string; magic: string; entries: { type?: string; msg: any; extra?: any }[] }[] {
  const out: { name: string; magic: string; entries: { type?: string; msg: any; extra?: any }[] }[] = [];
  const r = new Rng(0x5eed, 0);
  const kinds = [...Object.keys(MAGICS), 'AMDGPU_KFD', 'AMDGPU_RENDER_NODE', 'AMDGPU_DMABUF'];
  for (const magic of kinds) {
    const k = kindFor(magic);
    if (!k || k.extra || k.layout === 'ghost' || k.layout === 'amdgpu-raw' || !k.message) continue;
    const amd: Record<string, string> = { AMDGPU_KFD: 'amdgpu-kfd-7.img', AMDGPU_RENDER_NODE: 'amdgpu-renderD-7.img', AMDGPU_DMABUF: 'amdgpu-dmabuf_7.img' };
    const name = amd[magic] ?? `random-${magic.toLowerCase()}.img`;
    const n = k.layout === 'amdgpu' ? 1 : 2;
    const entries = Array.from({ length: n }, (_, i) => ({ type: k.layout === 'pagemap' ? (i === 0 ? 'pagemap_head' : 'pagemap_entry') : undefined, msg: randomMessage(r, k.layout === 'pagemap' ? (i === 0 ? 'pagemap_head' : 'pagemap_entry') : k.message) }));
    out.push({ name, magic, entries });
  }
  return out;
}

function writeSynthetic(dir: string): string[] {
  const out: string[] = [];
  for (const s of [...synthetic(), ...randomImages()]) {
    const kind = kindFor(s.magic)!;
    const sink = new MemBinSink();
    const w = new ImageWriter(sink, kind);
    try {
      for (const e of s.entries) w.write({ type: e.type ?? w.nextType(), msg: e.msg, extra: e.extra });
    } catch {
      continue; // a schema detail changed: leave that one out
    }
    const p = path.join(dir, s.name);
    fs.writeFileSync(p, sink.bytes());
    out.push(p);
  }
  return out;
}

/** Everything the iterations draw from; `scratch` is this process's private directory. */
export function loadPool(scratch: string, opts: { corpus?: boolean } = {}): Pool {
  const files: string[] = [];
  files.push(...listFiles(path.join(ROOT, 'fixtures', 'sets'), 2 << 20));
  files.push(...listFiles(path.join(ROOT, 'fixtures', 'amdgpu'), 2 << 20));
  const useCorpus = opts.corpus !== false && fs.existsSync(CORPUS);
  if (useCorpus) files.push(...listFiles(CORPUS, 2 << 20));
  const synthDir = path.join(scratch, 'synthetic');
  fs.mkdirSync(synthDir, { recursive: true });
  files.push(...writeSynthetic(synthDir));
  // the hand-made damaged files
  const corrupt = path.join(ROOT, 'fixtures', 'corrupt');
  if (fs.existsSync(corrupt)) {
    for (const f of fs.readdirSync(corrupt).filter((n) => n.endsWith('.hex'))) {
      const hex = fs.readFileSync(path.join(corrupt, f), 'utf8').split('\n').map((l) => l.replace(/#.*/, '')).join('').replace(/\s+/g, '');
      const p = path.join(synthDir, f.slice(0, -4));
      fs.writeFileSync(p, Buffer.from(hex, 'hex'));
      files.push(p);
    }
  }
  const images: PoolImage[] = [];
  for (const p of files) {
    const name = path.basename(p);
    const img: PoolImage = { name, path: p, bytes: fs.readFileSync(p), entries: entryOffsets(p, name) };
    try {
      img.plain = decodeText(p, name, 'plain');
      img.pretty = decodeText(p, name, 'pretty');
    } catch { /* raw pages and damaged fixtures: binary mutations only */ }
    images.push(img);
  }
  const sets: PoolSet[] = [];
  const setDirs = [path.join(ROOT, 'fixtures', 'sets', 'counter'), path.join(ROOT, 'fixtures', 'amdgpu', 'dmabuf-pair')];
  if (useCorpus) {
    for (const v of fs.readdirSync(CORPUS).sort()) {
      const vd = path.join(CORPUS, v);
      if (!fs.statSync(vd).isDirectory()) continue;
      // bigmem and manyvmas left their pages out; manyvmas alone takes seconds per command
      for (const s of fs.readdirSync(vd).sort()) if (!['bigmem', 'manyvmas'].includes(s) && fs.statSync(path.join(vd, s)).isDirectory()) setDirs.push(path.join(vd, s));
    }
  }
  for (const d of setDirs) {
    if (!fs.existsSync(d)) continue;
    const name = path.relative(ROOT, d).startsWith('..') ? path.relative(CORPUS, d) : path.relative(ROOT, d);
    const copy = path.join(scratch, 'sets', name.replace(/[/\\]/g, '_'));
    fs.mkdirSync(copy, { recursive: true });
    const names = fs.readdirSync(d).filter((n) => fs.lstatSync(path.join(d, n)).isFile() && (/\.img$/.test(n) || /^stats-/.test(n) || n === 'PAGES-OMITTED.txt'));
    for (const n of names) fs.copyFileSync(path.join(d, n), path.join(copy, n));
    let pid: number | undefined;
    let vmaStarts: bigint[] = [];
    try {
      const set = new ImageSet(copy);
      const t = set.tasks().find((x) => set.has(`mm-${x.pid}.img`));
      pid = t?.pid;
      if (pid !== undefined) vmaStarts = set.vmas(pid).map((v) => BigInt(v.start));
      set.close();
    } catch { /* a set without tasks: no xray */ }
    sets.push({ name, dir: copy, files: names.sort(), pid, vmaStarts });
  }
  return { images, json: images.filter((i) => i.plain !== undefined), sets, corpus: useCorpus };
}

// ---- one iteration --------------------------------------------------------------------------

interface Ctx {
  pool: Pool;
  scratch: string;
  devnull: number;
  seed: number;
  counts: Counts;
  failures: Failure[];
  /** stderr lines of the command being run */
  errLines: string[];
  /** the slowest single call of this iteration (CPU ms) and what it was */
  slowest: number;
  slowestWhat: string;
  grew: number;
  grewWhat: string;
}

/**
 * Runs one call of the code under test, keeping the iteration's slowest call and the largest
 * growth of the process's peak RSS during one call (the harness's own data is made outside).
 */
function timed<T>(c: Ctx, what: string, fn: () => T): T {
  const peak = process.resourceUsage().maxRSS;
  // CPU time, not wall time: the machine may be busy with other work
  const t = process.cpuUsage();
  try {
    return fn();
  } finally {
    const d = process.cpuUsage(t);
    const ms = (d.user + d.system) / 1000;
    if (ms > c.slowest) { c.slowest = ms; c.slowestWhat = what; }
    const grew = (process.resourceUsage().maxRSS - peak) * 1024;
    if (grew > c.grew) { c.grew = grew; c.grewWhat = what; }
  }
}

const LOCATED = /: (at byte \d+|entry \d+)/;

function normalize(s: string): string {
  return s
    .replace(/(\/[^\s:'"]+)+/g, 'PATH')
    .replace(/'[^']*'/g, "'Q'")
    .replace(/"[^"]*"/g, '"Q"')
    .replace(/0x[0-9a-f]+/gi, 'X')
    .replace(/\d+/g, 'N')
    .slice(0, 240);
}

function frame(stack: string | undefined): string {
  const lines = (stack ?? '').split('\n').slice(1);
  const ours = lines.find((l) => /\/(images|crit|tui|bench)\//.test(l)) ?? lines[0] ?? '';
  const m = /at (?:(\S+) )?\(?.*\/((?:images|crit|tui|bench)\/[^:]+):\d+/.exec(ours);
  return m ? `${m[2]}:${m[1] ?? '?'}` : ours.trim().slice(0, 80);
}

function fail(c: Ctx, it: number, op: string, kind: string, message: string, stack: string | undefined, input?: Failure['input'], context?: string): void {
  const sig = `${kind}|${op}|${kind === 'internal' ? frame(stack) + '|' : ''}${normalize(message)}`;
  c.failures.push({ signature: crypto.createHash('sha1').update(sig).digest('hex').slice(0, 12) + ' ' + sig, kind, op, iteration: it, message, stack, input, context });
  c.counts.failures++;
}

/** Classifies an exception from a command; returns false when it is a FAILURE (already recorded). */
function judge(c: Ctx, it: number, op: string, e: unknown, needLocation: boolean, input?: Failure['input'], context?: string): boolean {
  const kind = errorKind(e);
  const msg = (e as Error)?.message ?? String(e);
  if (kind === 'internal') {
    fail(c, it, op, 'internal', `${(e as Error)?.constructor?.name ?? typeof e}: ${msg}`, (e as Error)?.stack, input, context);
    return false;
  }
  if (/\n/.test(msg)) {
    fail(c, it, op, 'multiline', msg, undefined, input, context);
    return false;
  }
  if (needLocation && !LOCATED.test(msg)) {
    fail(c, it, op, 'unlocated', msg, undefined, input, context);
    return false;
  }
  c.counts.errors++;
  return true;
}

// Outputs go to files, as the CLI writes them (crit's own sinks, in bounded blocks), and are
// compared by hash: the harness holds no big strings, so memory measured is crit's.

/** TextSink that also hashes what it writes. */
class HashingTextSink extends TextSink {
  private h = crypto.createHash('sha1');
  override flush(): void {
    if (this.s.length) this.h.update(this.s, 'latin1');
    super.flush();
  }
  digest(): string {
    this.flush();
    return this.h.digest('hex');
  }
}

/** decode into `out` (a file) through crit's decode core; returns the hash of the JSON. */
function decodeToFile(file: string, name: string, mode: 'plain' | 'pretty', out: string): string {
  const src = ByteSource.open(file);
  const fd = fs.openSync(out, 'w');
  try {
    const sink = new HashingTextSink(fd);
    decodeStream(src, name, sink, mode);
    return sink.digest();
  } finally {
    fs.closeSync(fd);
    src.close();
  }
}

function hashFile(f: string): string {
  const h = crypto.createHash('sha1');
  const fd = fs.openSync(f, 'r');
  const b = Buffer.allocUnsafe(1 << 20);
  try {
    for (let n; (n = fs.readSync(fd, b, 0, b.length, null)) > 0;) h.update(b.subarray(0, n));
  } finally {
    fs.closeSync(fd);
  }
  return h.digest('hex');
}

/** The first bytes of a file (to learn a document's magic). */
function head(f: string, n = 200): string {
  const fd = fs.openSync(f, 'r');
  try {
    const b = Buffer.alloc(n);
    return b.subarray(0, fs.readSync(fd, b, 0, n, 0)).toString('latin1');
  } finally {
    fs.closeSync(fd);
  }
}

type Res = { ok: true; json: string; hash: string } | { ok: false };

let seq = 0;
const tmp = (c: Ctx, ext: string) => path.join(c.scratch, 'io', `${seq++ % 8}${ext}`);

function tryDecode(c: Ctx, it: number, file: string, name: string, mode: 'plain' | 'pretty', input: Failure['input'], op = `decode-${mode}`): Res {
  c.counts.decodeRuns++;
  const json = tmp(c, `.${mode}.json`);
  try {
    return { ok: true, json, hash: timed(c, `decode --${mode}`, () => decodeToFile(file, name, mode, json)) };
  } catch (e) {
    judge(c, it, op, e, true, input);
    return { ok: false };
  }
}

type Enc = { ok: true; image: string; hash: string } | { ok: false; clean: boolean; message?: string };

/** encode the JSON file `json` through crit's encode core into an image file. */
function tryEncode(c: Ctx, it: number, json: string, op: string, input: Failure['input']): Enc {
  c.counts.encodeRuns++;
  const image = tmp(c, '.img');
  const fd = fs.openSync(json, 'r');
  const out = fs.openSync(image, 'w');
  try {
    const sink = new BinSink(out);
    timed(c, 'encode', () => { encodeStream(fd, json, sink); sink.flush(); });
    return { ok: true, image, hash: hashFile(image) };
  } catch (e) {
    return { ok: false, clean: judge(c, it, op, e, true, input), message: (e as Error)?.message };
  } finally {
    fs.closeSync(fd);
    fs.closeSync(out);
  }
}

/** File name a JSON document's image must carry (amdgpu files are known by name only). */
function nameFor(text: string, fallback: string): string {
  const m = /"magic":\s*"([A-Z_0-9]+)"/.exec(text);
  const magic = m?.[1];
  const amd: Record<string, string> = { AMDGPU_KFD: 'amdgpu-kfd-1.img', AMDGPU_RENDER_NODE: 'amdgpu-renderD-1.img', AMDGPU_DMABUF: 'amdgpu-dmabuf_1.img', AMDGPU_PAGES: 'amdgpu-pages-1-0001.img', AMDGPU_DRM_PAGES: 'amdgpu-drm-pages-1-128-0000.img' };
  if (magic && amd[magic]) return amd[magic];
  return /^amdgpu-|^pages-/.test(fallback) ? 'image.img' : fallback;
}

/** An image file under the name its kind needs. */
function named(c: Ctx, image: string, name: string): string {
  const f = path.join(c.scratch, 'rb', name);
  fs.renameSync(image, f);
  return f;
}

/**
 * An image encode wrote must read back: plain and pretty decode succeed, and encoding what
 * they print gives the same bytes again.
 */
function checkReadBack(c: Ctx, it: number, enc: { image: string; hash: string }, name: string, op: string, input: Failure['input']): void {
  const f = named(c, enc.image, name);
  for (const mode of ['plain', 'pretty'] as const) {
    const json = tmp(c, `.rb-${mode}.json`);
    c.counts.decodeRuns++;
    try {
      timed(c, `decode --${mode} of the encoded image`, () => decodeToFile(f, name, mode, json));
    } catch (e) {
      fail(c, it, op, 'readback', `encode wrote an image ${mode} decode refuses: ${(e as Error)?.message}`, (e as Error)?.stack, input);
      return;
    }
    const again = tryEncode(c, it, json, `${op}-reencode-${mode}`, input);
    if (!again.ok) {
      if (again.clean) fail(c, it, op, 'readback', `encode refuses the ${mode} JSON of an image it wrote: ${again.message}`, undefined, input);
      return;
    }
    if (again.hash !== enc.hash) fail(c, it, op, 'mismatch', `${mode} JSON of an encoded image encodes to different bytes (${fs.statSync(again.image).size} vs ${fs.statSync(f).size})`, undefined, input);
  }
}

/**
 * An image to mutate: a kind first (so the one ghost file weighs as much as the corpus's
 * hundred core images), then an image of it. Large images (an mm of 30,000 VMAs costs a
 * hundred small ones) are drawn rarely.
 */
export function pickImage(r: Rng, pool: PoolImage[]): PoolImage {
  let g = groups.get(pool);
  if (!g) {
    const by = new Map<string, PoolImage[]>();
    for (const p of pool) {
      const k = p.bytes.length > LARGE ? 'large' : kindKey(p);
      by.set(k, [...(by.get(k) || []), p]);
    }
    groups.set(pool, (g = by));
  }
  const keys = [...g.keys()].filter((k) => k !== 'large');
  const big = g.has('large') && r.chance(0.004);
  const list = big ? g.get('large')! : g.get(keys[r.int(keys.length)])!;
  return list[r.int(list.length)];
}

const LARGE = 128 << 10;
const groups = new WeakMap<PoolImage[], Map<string, PoolImage[]>>();

function kindKey(p: PoolImage): string {
  const m = p.plain ? /"magic": "([^"]+)"/.exec(p.plain.slice(0, 100)) : undefined;
  return m ? m[1] : p.name.replace(/[-_.]?\d+/g, '').replace(/\.img$/, '');
}

function decodeOp(c: Ctx, it: number, r: Rng): void {
  const pool = c.pool.images;
  const inp = pickImage(r, pool);
  const bytes = mutateBinary(r, inp, pickImage(r, pool));
  const f = path.join(c.scratch, 'dec', inp.name);
  fs.writeFileSync(f, bytes);
  const input = { name: inp.name, data: bytes };
  c.counts.decodeInputs++;
  const p = tryDecode(c, it, f, inp.name, 'plain', input);
  const q = tryDecode(c, it, f, inp.name, 'pretty', input);
  if (p.ok) c.counts.decodedOk++;
  if (r.chance(0.15)) {
    // crit info and decode --salvage, as the CLI runs them (output to the redirected fd)
    const salvage = r.chance(0.5);
    c.counts.decodeRuns++;
    try {
      timed(c, salvage ? 'decode --salvage' : 'info', () => (salvage ? decodeSalvage(f, undefined, r.chance(0.5) ? 'pretty' : 'plain') : imageInfo(f)));
      if (!p.ok && !salvage) fail(c, it, 'info', 'inconsistent', 'crit info reads an image decode refuses', undefined, input);
    } catch (e) {
      judge(c, it, salvage ? 'decode-salvage' : 'info', e, true, input);
    }
  }
  if (p.ok !== q.ok && p.ok === false) fail(c, it, 'decode', 'inconsistent', 'pretty decode succeeds where plain decode fails', undefined, input);
  if (p.ok && q.ok && r.chance(0.25)) {
    // what decode printed must encode, and read back as the same text
    for (const [mode, res] of [['plain', p], ['pretty', q]] as const) {
      const e = tryEncode(c, it, res.json, `encode-decoded-${mode}`, input);
      if (!e.ok) {
        if (e.clean) fail(c, it, `encode-decoded-${mode}`, 'refused', `encode refuses what ${mode} decode printed: ${e.message}`, undefined, input);
        continue;
      }
      const name = nameFor(head(res.json), inp.name);
      const g = named(c, e.image, name);
      let back: string;
      try {
        back = timed(c, `decode --${mode} of the re-encoded image`, () => decodeToFile(g, name, mode, tmp(c, '.back.json')));
      } catch (err) {
        fail(c, it, `encode-decoded-${mode}`, 'readback', `re-encoded image does not decode: ${(err as Error)?.message}`, (err as Error)?.stack, input);
        continue;
      }
      if (back !== res.hash) fail(c, it, `encode-decoded-${mode}`, 'mismatch', `decode -> encode -> decode changes the ${mode} JSON`, undefined, input);
    }
  }
}

function encodeOp(c: Ctx, it: number, r: Rng): void {
  const pool = c.pool.json;
  const inp = pickImage(r, pool);
  const pretty = r.chance(0.4);
  const other = pickImage(r, pool);
  const text = mutateJson(r, pretty ? inp.pretty! : inp.plain!, other.plain!, pretty);
  const input = { name: `${inp.name}.json`, data: Buffer.from(text) };
  const json = tmp(c, '.in.json');
  fs.writeFileSync(json, text);
  c.counts.encodeInputs++;
  const e = tryEncode(c, it, json, 'encode', input);
  if (e.ok) {
    c.counts.encodedOk++;
    checkReadBack(c, it, e, nameFor(text, inp.name), 'encode', input); // "magic" may come last
  }
}

function setOp(c: Ctx, it: number, r: Rng): void {
  const sets = c.pool.sets;
  if (!sets.length) return decodeOp(c, it, r);
  const s = sets[r.int(sets.length)];
  const file = r.pick(s.files);
  const p = path.join(s.dir, file);
  const orig = fs.readFileSync(p);
  const m = r.weighted([70, 10, 10]);
  let input: Failure['input'];
  if (m === 0) {
    const img = c.pool.images.find((x) => x.name === file) ?? { name: file, bytes: orig, entries: [] };
    const bytes = mutateBinary(r, { ...img, bytes: orig }, c.pool.images[r.int(c.pool.images.length)]);
    fs.writeFileSync(p, bytes);
    input = { name: file, data: bytes };
  } else if (m === 1) {
    fs.unlinkSync(p);
    input = { name: `${file}.deleted`, data: Buffer.alloc(0) };
  } else {
    const b = orig.subarray(0, r.int(orig.length + 1));
    fs.writeFileSync(p, b);
    input = { name: file, data: Buffer.from(b) };
  }
  c.counts.setOps++;
  try {
    for (let k = 0; k < 2; k++) runSetCommand(c, it, r, s, file, m, input);
  } finally {
    fs.writeFileSync(p, orig);
  }
}

const EXPLORERS = ['ps', 'fds', 'mems', 'rss', 'sk', 'tree', 'gpu'];

function runSetCommand(c: Ctx, it: number, r: Rng, s: PoolSet, file: string, how: number, input: Failure['input']): void {
  const json = r.chance(0.3);
  let cmd: string;
  let run: () => unknown;
  const which = r.weighted([25, 30, 20, 25]);
  if (which === 0) {
    cmd = `check${json ? ' --json' : ''}`;
    run = () => check(s.dir, { json });
  } else if (which === 1) {
    const what = r.pick(EXPLORERS);
    cmd = `x ${what}${json ? ' --json' : ''}`;
    run = () => explore(s.dir, what, { json });
  } else if (which === 2) {
    const o: XrayOpts = { pid: s.pid !== undefined ? String(s.pid) : '1', json };
    const sub = r.int(8);
    if (sub === 1 && s.vmaStarts.length) o.vma = String(r.int(Math.min(s.vmaStarts.length, 40)));
    if (sub === 2 && s.vmaStarts.length) { o.addr = '0x' + r.pick(s.vmaStarts).toString(16); o.len = String(r.pick([1, 16, 4096, 70000])); }
    if (sub === 3) o.search = r.pick(['ab', 'counter', 'PATH=', 'x'.repeat(20)]);
    if (sub === 4) { o.strings = true; o.min = '8'; }
    if (sub === 5 && s.vmaStarts.length) { o.addr = '0x' + r.pick(s.vmaStarts).toString(16); o.len = '4096'; o.raw = true; o.zeroFill = r.chance(0.5); }
    // patterns that are rare in memory: a search prints every match (4 zero bytes match a million times)
    if (sub === 6) { o.hex = r.pick(['de ad be ef', '7f454c46', 'ff fe fd']); o.context = '4'; }
    if (sub === 7) { o.gpu = true; o.raw = r.chance(0.3); if (r.chance(0.5)) o.bo = String(r.int(3)); }
    cmd = `xray ${JSON.stringify(o)}`;
    run = () => xray(s.dir, o);
  } else {
    const memory = r.chance(0.5);
    cmd = `diff${memory ? ' --memory' : ''}${json ? ' --json' : ''}`;
    const orig = path.join(c.scratch, 'orig', path.basename(s.dir));
    run = () => diff(orig, s.dir, { json, memory });
  }
  const context = `set ${s.name}, ${['mutated', 'deleted', 'truncated'][how]} ${file}, crit ${cmd}`;
  c.errLines.length = 0;
  try {
    const code = timed(c, `crit ${cmd}`, run);
    if (which === 3 && code === 2) {
      const line = c.errLines[0] ?? '';
      if (/internal error/.test(line)) fail(c, it, `set:diff`, 'internal', line.trim(), c.errLines.slice(1).join(''), input, context);
    }
  } catch (e) {
    judge(c, it, `set:${cmd.split(' ')[0]}`, e, false, input, context);
  }
}

// ---- driver ---------------------------------------------------------------------------------

export interface RunOptions {
  seed: number;
  /** iterations to run: start, start+step, ... below end */
  start: number;
  end: number;
  step: number;
  /** weights of decode, encode and set operations */
  weights?: [number, number, number];
  /** per-iteration hook (status file) */
  onIteration?: (i: number) => void;
  /** return true to stop early (time budget) */
  stop?: () => boolean;
  /** called after each chunk of about `chunkMs` */
  onChunk?: (counts: Counts, failures: Failure[]) => void;
}

export const SLOW_MS = 2000;
export const RSS_GROWTH = 200 << 20;

export class Fuzzer {
  readonly counts = newCounts();
  readonly failures: Failure[] = [];
  private c: Ctx;
  private replaying = false;

  constructor(readonly pool: Pool, readonly scratch: string, readonly seed: number, readonly weights: [number, number, number] = [76, 20, 4]) {
    for (const d of ['dec', 'rb', 'orig', 'io']) fs.mkdirSync(path.join(scratch, d), { recursive: true });
    for (const s of pool.sets) {
      const o = path.join(scratch, 'orig', path.basename(s.dir));
      fs.mkdirSync(o, { recursive: true });
      for (const f of s.files) fs.copyFileSync(path.join(s.dir, f), path.join(o, f));
    }
    const devnull = fs.openSync('/dev/null', 'w');
    this.c = { pool, scratch, devnull, seed, counts: this.counts, failures: this.failures, errLines: [], slowest: 0, slowestWhat: '', grew: 0, grewWhat: '' };
  }

  /** One iteration, fully determined by (seed, i). */
  iteration(i: number): void {
    const c = this.c;
    const r = new Rng(c.seed, i);
    const op = r.weighted(this.weights);
    const before = c.counts.failures;
    c.slowest = 0;
    c.grew = 0;
    redirectOutput(c.devnull, (line) => { c.errLines.push(line); });
    try {
      if (op === 0) decodeOp(c, i, r);
      else if (op === 1) encodeOp(c, i, r);
      else setOp(c, i, r);
    } catch (e) {
      // a harness bug or an error outside the judged calls: still a failure to look at
      fail(c, i, ['decode', 'encode', 'set'][op], 'harness', `${(e as Error)?.constructor?.name}: ${(e as Error)?.message}`, (e as Error)?.stack);
    } finally {
      redirectOutput(1);
    }
    const what = ['decode', 'encode', 'set'][op];
    if (c.slowest > SLOW_MS && !this.replaying) {
      // timing is only trusted when it repeats: the machine may have been busy
      const first = c.slowest;
      this.replaying = true;
      const keep = c.failures.length;
      const saved = { ...c.counts };
      try { this.iteration(i); } finally { this.replaying = false; }
      c.failures.length = keep;
      Object.assign(c.counts, saved);
      if (c.slowest > SLOW_MS) fail(c, i, what, 'slow', `${c.slowestWhat} took ${Math.round(first)} ms of CPU, ${Math.round(c.slowest)} ms again (limit ${SLOW_MS} per call)`, undefined, regenerate(this, i));
    }
    if (c.grew > RSS_GROWTH && !this.replaying) fail(c, i, what, 'memory', `peak RSS grew by ${Math.round(c.grew / 1048576)} MB in ${c.grewWhat} (limit ${RSS_GROWTH >> 20})`, undefined, regenerate(this, i));
    c.counts.iterations++;
    if (c.counts.failures === before) c.counts.clean++;
  }

  close(): void {
    fs.closeSync(this.c.devnull);
  }
}

/** The input of iteration i, for a reproducer of a failure found by timing (slow, memory). */
export function regenerate(f: Fuzzer, i: number): Failure['input'] {
  const r = new Rng(f.seed, i);
  const op = r.weighted(f.weights);
  if (op === 0) {
    const pool = f.pool.images;
    const inp = pickImage(r, pool);
    return { name: inp.name, data: mutateBinary(r, inp, pickImage(r, pool)) };
  }
  if (op === 1) {
    const pool = f.pool.json;
    const inp = pickImage(r, pool);
    const pretty = r.chance(0.4);
    const other = pickImage(r, pool);
    return { name: `${inp.name}.json`, data: Buffer.from(mutateJson(r, pretty ? inp.pretty! : inp.plain!, other.plain!, pretty)) };
  }
  return undefined;
}

export function scratchDir(tag: string): string {
  const base = fs.existsSync('/dev/shm') ? '/dev/shm' : os.tmpdir();
  return fs.mkdtempSync(path.join(base, `crit-fuzz-${tag}-`));
}

/** Writes one reproducer per failure signature into `out`; returns the new signatures. */
export function writeReproducers(out: string, failures: Failure[], seen: Set<string>, seed: number): string[] {
  fs.mkdirSync(out, { recursive: true });
  const fresh: string[] = [];
  for (const f of failures) {
    if (seen.has(f.signature)) continue;
    seen.add(f.signature);
    fresh.push(f.signature);
    const id = f.signature.slice(0, 12);
    const lines = [
      `signature: ${f.signature}`,
      `kind: ${f.kind}`,
      `operation: ${f.op}`,
      `seed: ${seed}, iteration: ${f.iteration}`,
      `replay: node dist/bench/fuzz.js --seed ${seed} --only ${f.iteration}`,
      f.context ? `context: ${f.context}` : '',
      f.input ? `input: ${id}-${f.input.name}` : '',
      `message: ${f.message}`,
      f.stack ? `stack:\n${f.stack}` : '',
    ].filter(Boolean);
    fs.writeFileSync(path.join(out, `${id}.txt`), lines.join('\n') + '\n');
    if (f.input) fs.writeFileSync(path.join(out, `${id}-${f.input.name}`), f.input.data);
  }
  return fresh;
}
