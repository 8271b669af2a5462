// CRIU's LZ4-compressed pages (2026). Two incompatible pagemap schemas exist, both written as
// image version 3: G1 puts compressed_size (6, packed), total_compressed_size (7) and
// region_pages (8) in pagemap_entry; G2 makes field 6 an embedded pagemap_blocks message. Field 6
// is length-delimited in both, so a decoder built for one silently misreads the other. Our schema
// leaves 6-8 undeclared (the codec keeps them as unknown fields, byte for byte) and this module
// reads them in both ways, keeping the one that validates (spec compressed-pages.md §10), and
// says where every byte of the pages file lives (§7.1).
import { UNKNOWN, Msg, UnknownField } from '../codec';
import { Reader, Writer, WireError } from '../wire';
import { entryPages, entryFlags } from '../imageset';
import { PE } from '../flags';

export type Schema = 'g1' | 'g2';

export const SCHEMA_LABEL: Record<Schema, string> = {
  g1: "G1 schema (compressed_size/total_compressed_size/region_pages fields)",
  g2: "G2 schema (pagemap_blocks message)",
};

/** CRIU's largest block (G1 region / G2 block) in bytes. */
export const MAX_BLOCK_BYTES = 4 << 20;

/** Stored sizes of one entry's blocks and how they are laid out. */
export interface BlockMeta {
  /** stored size per block: 0 zero block, = decoded size raw, else LZ4 */
  sizes: number[];
  /** pages per block (1 = per-page) */
  ppb: number;
  /** total the entry says it occupies (G1 optional, G2 required) */
  total?: number;
  /** G2 payload_padded: every non-empty block takes a page-rounded extent */
  padded: boolean;
}

/** A problem with entry `entry` of a pagemap file (0 is the head, as crit check counts). */
export interface LayoutProblem {
  entry: number;
  what: string;
}

export const KIND_ZERO = 0;
export const KIND_RAW = 1;
export const KIND_LZ4 = 2;

interface RawField {
  no: number;
  wt: number;
  /** wire type 2: the payload; wire type 0: the value */
  payload?: Uint8Array;
  value?: number | bigint;
}

const META_FIELDS = new Set([6, 7, 8]);

function rawFields(e: Msg): RawField[] {
  const u: UnknownField[] | undefined = e[UNKNOWN];
  if (!u) return [];
  const out: RawField[] = [];
  for (const f of u) {
    if (!META_FIELDS.has(f.no)) continue;
    const r = new Reader(f.bytes);
    try {
      const tag = r.u32();
      const wt = tag & 7;
      if (wt === 2) {
        const n = r.len();
        out.push({ no: f.no, wt, payload: f.bytes.subarray(r.pos, r.pos + n) });
      } else if (wt === 0) out.push({ no: f.no, wt, value: r.u64() });
      else out.push({ no: f.no, wt });
    } catch {
      out.push({ no: f.no, wt: -1 }); // the codec split it, so this does not happen
    }
  }
  return out;
}

/** The entry carries compression metadata (fields 6, 7 or 8, in either schema). */
export function hasMeta(e: Msg): boolean {
  const u: UnknownField[] | undefined = e[UNKNOWN];
  return !!u && u.some((f) => META_FIELDS.has(f.no));
}

/** The entry has pagemap_entry field `no` (6, 7 or 8) as an unknown field. */
export function hasMetaField(e: Msg, no: number): boolean {
  const u: UnknownField[] | undefined = e[UNKNOWN];
  return !!u && u.some((f) => f.no === no);
}

/** Metadata only G1 can have: field 7 or 8, or a field 6 that is not length-delimited. */
function g1Only(e: Msg): boolean {
  return rawFields(e).some((f) => f.no !== 6 || f.wt !== 2);
}

function num(v: number | bigint): number {
  return typeof v === 'bigint' ? Number(v) : v;
}

function packedU32(p: Uint8Array, into: number[]): void {
  const r = new Reader(p);
  while (r.pos < r.end) into.push(r.u32());
}

/** The entry's metadata read as G1; undefined when it has none, a string when it cannot be G1. */
export function parseG1(e: Msg): BlockMeta | string | undefined {
  const fs = rawFields(e);
  if (!fs.length) return undefined;
  const sizes: number[] = [];
  let total: number | undefined;
  let region: number | undefined;
  try {
    for (const f of fs) {
      if (f.no === 6) {
        if (f.wt === 2) packedU32(f.payload!, sizes);
        else if (f.wt === 0) sizes.push(num(f.value!) >>> 0);
        else return `compressed_size (field 6) has wire type ${f.wt}`;
      } else if (f.wt !== 0) return `${f.no === 7 ? 'total_compressed_size (field 7)' : 'region_pages (field 8)'} has wire type ${f.wt}, not a varint`;
      else if (f.no === 7) total = num(f.value!);
      else region = num(f.value!) >>> 0;
    }
  } catch (err) {
    return `compressed_size (field 6) is not packed varints: ${(err as Error).message}`;
  }
  if (!sizes.length) return 'compression metadata without compressed_size (incomplete)';
  return { sizes, ppb: region || 1, total, padded: false };
}

/** The entry's metadata read as G2 (field 6 = pagemap_blocks); see parseG1. */
export function parseG2(e: Msg): BlockMeta | string | undefined {
  const fs = rawFields(e);
  if (!fs.length) return undefined;
  const parts: Uint8Array[] = [];
  for (const f of fs) {
    if (f.no !== 6) return `field ${f.no} does not exist in the G2 schema`;
    if (f.wt !== 2) return `blocks (field 6) has wire type ${f.wt}, not a message`;
    parts.push(f.payload!);
  }
  // repeated occurrences of a message field merge, as protobuf does
  const buf = parts.length === 1 ? parts[0] : Buffer.concat(parts);
  const sizes: number[] = [];
  let total: number | undefined;
  let ppb: number | undefined;
  let padded = false;
  const r = new Reader(buf);
  try {
    while (r.pos < r.end) {
      const tag = r.u32();
      const no = tag >>> 3;
      const wt = tag & 7;
      if (no === 1 && wt === 2) {
        const n = r.len();
        packedU32(buf.subarray(r.pos, r.pos + n), sizes);
        r.pos += n;
      } else if (no === 1 && wt === 0) sizes.push(r.u32());
      else if (no === 2 && wt === 0) total = num(r.u64());
      else if (no === 3 && wt === 0) ppb = r.u32();
      else if (no === 4 && wt === 0) padded = r.bool();
      else if (no >= 1 && no <= 4) return `pagemap_blocks field ${no} has wire type ${wt}`;
      else if (no === 0) return 'pagemap_blocks has a field number 0';
      else r.skip(wt);
    }
  } catch (err) {
    return `blocks (field 6) is not a pagemap_blocks message: ${err instanceof WireError ? err.message : String(err)}`;
  }
  if (total === undefined) return 'pagemap_blocks is missing required field total_payload_size';
  if (ppb === undefined) return 'pagemap_blocks is missing required field pages_per_block';
  return { sizes, ppb, total, padded };
}

export function parseMeta(e: Msg, schema: Schema): BlockMeta | string | undefined {
  return schema === 'g1' ? parseG1(e) : parseG2(e);
}

const roundUp = (v: number, ps: number) => Math.ceil(v / ps) * ps;

/** Bytes an entry's blocks occupy in the pages file (after the entry's alignment padding). */
export function storedExtent(m: BlockMeta, ps: number): number {
  let t = 0;
  for (const s of m.sizes) t += m.padded ? (s ? roundUp(s, ps) : 0) : s;
  return t;
}

/** Checks one entry's metadata against its page count and flags (§6, §3, §4). */
export function checkMeta(m: BlockMeta, pages: number, flags: number, ps: number, schema: Schema): string | undefined {
  const gran = schema === 'g1' ? 'region_pages' : 'pages_per_block';
  const maxPages = Math.floor(MAX_BLOCK_BYTES / ps);
  if (!(flags & PE.PRESENT)) return 'compression metadata on an entry without PE_PRESENT (it owns no bytes)';
  if (m.ppb < 1 || m.ppb > maxPages) return `${gran} ${m.ppb} is outside 1..${maxPages} (4 MiB of ${ps}-byte pages)`;
  const count = Math.ceil(pages / m.ppb);
  if (m.sizes.length !== count) return `${m.sizes.length} block sizes for ${pages} pages in blocks of ${m.ppb} (needs ${count})`;
  for (let i = 0; i < count; i++) {
    const d = Math.min(m.ppb, pages - i * m.ppb) * ps;
    if (m.sizes[i] > d) return `block ${i} has stored size ${m.sizes[i]}, more than its ${d} decoded bytes`;
  }
  const sum = storedExtent(m, ps);
  if (m.total !== undefined && m.total !== sum) return `${schema === 'g1' ? 'total_compressed_size' : 'total_payload_size'} is ${m.total} but the blocks take ${sum} bytes`;
  if (m.padded && sum > 0 && !(flags & PE.PAYLOAD_ALIGNED)) return 'payload_padded entry with payload but without PE_PAYLOAD_ALIGNED';
  return undefined;
}

/**
 * Where the bytes of one pages file are: extents in file order, each a zero block, a raw run or
 * an LZ4 block, with its offset in the uncompressed ("logical") order CRIU's legacy layout and
 * the memory reader use, and its offset and stored size in the file.
 */
export class PagesLayout {
  readonly count: number;
  readonly logical: Float64Array;
  readonly decoded: Float64Array;
  readonly phys: Float64Array;
  readonly stored: Float64Array;
  readonly kind: Uint8Array;
  /** pagemap entry (0 = head) */
  readonly entry: Uint32Array;
  /** block index in its entry; -1 for an entry without metadata */
  readonly block: Int32Array;
  /** bytes of the uncompressed pages (sum of decoded) */
  readonly logicalSize: number;
  /** end of the last payload in the file: the file's size when the set is intact */
  readonly physSize: number;
  /** blocks with metadata, and how many are LZ4 */
  readonly blocks: number;
  readonly lz4Blocks: number;

  constructor(x: { logical: number[]; decoded: number[]; phys: number[]; stored: number[]; kind: number[]; entry: number[]; block: number[]; physSize: number; blocks: number; lz4Blocks: number }) {
    this.count = x.logical.length;
    this.logical = Float64Array.from(x.logical);
    this.decoded = Float64Array.from(x.decoded);
    this.phys = Float64Array.from(x.phys);
    this.stored = Float64Array.from(x.stored);
    this.kind = Uint8Array.from(x.kind);
    this.entry = Uint32Array.from(x.entry);
    this.block = Int32Array.from(x.block);
    this.logicalSize = this.count ? this.logical[this.count - 1] + this.decoded[this.count - 1] : 0;
    this.physSize = x.physSize;
    this.blocks = x.blocks;
    this.lz4Blocks = x.lz4Blocks;
  }

  /** The extent holding logical byte `off` (binary search). */
  find(off: number): number {
    let lo = 0;
    let hi = this.count - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >>> 1;
      if (this.logical[mid] <= off) lo = mid;
      else hi = mid - 1;
    }
    return lo;
  }
}

/**
 * Lays out a pagemap's entries (head excluded; entry k of the file is entries[k - 1]) over its
 * pages file, reading metadata as `schema` (§7.1). Any problem means the layout is not usable.
 */
export function buildLayout(entries: Msg[], ps: number, schema: Schema | undefined): { layout?: PagesLayout; problems: LayoutProblem[] } {
  const problems: LayoutProblem[] = [];
  const x = { logical: [] as number[], decoded: [] as number[], phys: [] as number[], stored: [] as number[], kind: [] as number[], entry: [] as number[], block: [] as number[], physSize: 0, blocks: 0, lz4Blocks: 0 };
  let off = 0;
  let logical = 0;
  const push = (kind: number, d: number, p: number, s: number, entry: number, block: number) => {
    const n = x.logical.length - 1;
    // runs of raw (or zero) blocks of one entry that touch on both sides read as one extent
    if (n >= 0 && x.entry[n] === entry && x.kind[n] === kind && kind !== KIND_LZ4 && x.phys[n] + x.stored[n] === p && x.logical[n] + x.decoded[n] === logical) {
      x.decoded[n] += d;
      x.stored[n] += s;
    } else {
      x.logical.push(logical); x.decoded.push(d); x.phys.push(p); x.stored.push(s); x.kind.push(kind); x.entry.push(entry); x.block.push(block);
    }
    logical += d;
  };
  entries.forEach((e, i) => {
    const k = i + 1;
    const flags = entryFlags(e);
    const pages = entryPages(e);
    const meta = hasMeta(e);
    if (!(flags & PE.PRESENT)) {
      if (meta) problems.push({ entry: k, what: 'compression metadata on an entry without PE_PRESENT (it owns no bytes)' });
      if (flags & PE.PAYLOAD_ALIGNED) problems.push({ entry: k, what: 'PE_PAYLOAD_ALIGNED on an entry without PE_PRESENT' });
      return;
    }
    if (flags & PE.PARENT) problems.push({ entry: k, what: 'PE_PRESENT and PE_PARENT together' });
    if (flags & PE.PAYLOAD_ALIGNED) off = roundUp(off, ps);
    let m: BlockMeta | undefined;
    if (meta) {
      const r = schema ? parseMeta(e, schema) : 'compression metadata of an unknown schema';
      const bad = typeof r === 'string' ? r : checkMeta(r!, pages, flags, ps, schema!);
      if (bad !== undefined) {
        problems.push({ entry: k, what: bad });
        return;
      }
      m = r as BlockMeta;
    }
    if (!m) {
      push(KIND_RAW, pages * ps, off, pages * ps, k, -1);
      off += pages * ps;
      return;
    }
    let p = off;
    for (let b = 0; b < m.sizes.length; b++) {
      const d = Math.min(m.ppb, pages - b * m.ppb) * ps;
      const s = m.sizes[b];
      const kind = s === 0 ? KIND_ZERO : s === d ? KIND_RAW : KIND_LZ4;
      push(kind, d, p, s, k, b);
      x.blocks++;
      if (kind === KIND_LZ4) x.lz4Blocks++;
      if (m.padded && s) {
        // the padding after a padded block is not part of the block: a gap in the extents
        p += roundUp(s, ps);
      } else p += s;
    }
    off = p;
  });
  x.physSize = off;
  if (problems.length) return { problems };
  return { layout: new PagesLayout(x), problems };
}

export interface PagemapAnalysis {
  /** entries with metadata or PE_PAYLOAD_ALIGNED: the legacy contiguous layout does not apply */
  compressed: boolean;
  /** the schema the metadata was read as (none: only aligned entries, or nothing fits) */
  schema?: Schema;
  layout?: PagesLayout;
  /** problems under the chosen schema (a usable layout has none) */
  problems: LayoutProblem[];
  /** the other schema, and its first problem, when it was tried and rejected */
  rejected?: { schema: Schema; problem: LayoutProblem };
  /** both schemas validate and the pages-file size did not decide */
  ambiguous?: boolean;
}

/** A pagemap uses the compressed layout (metadata, or alignment padding). */
export function isCompressedPagemap(entries: Msg[]): boolean {
  return entries.some((e) => hasMeta(e) || entryFlags(e) & PE.PAYLOAD_ALIGNED);
}

/**
 * Recognises the schema of one pagemap's metadata (§10): G1 when an entry has field 7 or 8 (or
 * the inventory says region mode, compress = 2, which only G1 has); otherwise both readings are
 * validated in full and the one that holds is kept; if both hold, the one whose layout ends
 * exactly at the pages file's size.
 */
export function analysePagemap(entries: Msg[], ps: number, opts: { pagesSize?: number; inventoryCompress?: number; schema?: Schema } = {}): PagemapAnalysis {
  if (!isCompressedPagemap(entries)) return { compressed: false, problems: [] };
  if (!entries.some(hasMeta)) {
    const r = buildLayout(entries, ps, undefined);
    return { compressed: true, ...r };
  }
  let candidates: Schema[];
  if (opts.schema) candidates = [opts.schema];
  else if (opts.inventoryCompress === 2 || entries.some((e) => hasMeta(e) && g1Only(e))) candidates = ['g1'];
  else candidates = ['g2', 'g1'];
  const tried = candidates.map((schema) => ({ schema, ...buildLayout(entries, ps, schema) }));
  const ok = tried.filter((t) => t.layout);
  const pick = (t: (typeof tried)[number], other?: (typeof tried)[number], ambiguous?: boolean): PagemapAnalysis => ({
    compressed: true, schema: t.schema, layout: t.layout, problems: t.problems,
    rejected: other && other.problems.length ? { schema: other.schema, problem: other.problems[0] } : undefined,
    ambiguous,
  });
  if (ok.length === 1) return pick(ok[0], tried.find((t) => t !== ok[0]));
  if (ok.length === 2) {
    const fits = ok.filter((t) => t.layout!.physSize === opts.pagesSize);
    if (fits.length === 1) return pick(fits[0]);
    return pick(ok[0], undefined, true);
  }
  if (tried.length === 1) return pick(tried[0]);
  // neither holds: report the reading that gets further (its first problem is later)
  const [a, b] = tried;
  const best = b.problems[0].entry > a.problems[0].entry ? b : a;
  return pick(best, best === a ? b : a);
}

/** Copies an entry without its compression metadata and without PE_PAYLOAD_ALIGNED. */
export function withoutMeta(e: Msg): Msg {
  const o: Msg = { ...e };
  const u: UnknownField[] | undefined = e[UNKNOWN];
  if (u) {
    const rest = u.filter((f) => !META_FIELDS.has(f.no));
    if (rest.length) o[UNKNOWN] = rest;
    else delete o[UNKNOWN];
  }
  if (o.flags !== undefined && Number(o.flags) & PE.PAYLOAD_ALIGNED) o.flags = Number(o.flags) & ~PE.PAYLOAD_ALIGNED;
  return o;
}

function field(no: number, body: (w: Writer) => void, wt: number): UnknownField {
  const w = new Writer(64);
  w.u32((no << 3) | wt);
  if (wt === 2) {
    const mk = w.beginSub();
    body(w);
    w.endSub(mk);
  } else body(w);
  return { no, bytes: w.finish().slice() };
}

/**
 * Adds metadata to an entry (which must have none) as `schema` writes it: G1 compressed_size
 * packed, total_compressed_size always, region_pages when blocks are not single pages; G2 a
 * pagemap_blocks with every field, payload_padded included (CRIU's G2 writer always emits it).
 */
export function withMeta(e: Msg, m: BlockMeta, schema: Schema, ps: number, regionField: boolean): Msg {
  const o: Msg = { ...e };
  const u: UnknownField[] = [...(e[UNKNOWN] ?? [])];
  const total = storedExtent(m, ps);
  const packed = (w: Writer) => { for (const s of m.sizes) w.u32(s); };
  if (schema === 'g1') {
    u.push(field(6, packed, 2));
    u.push(field(7, (w) => w.u64(total), 0));
    if (regionField) u.push(field(8, (w) => w.u32(m.ppb), 0));
  } else {
    u.push(field(6, (w) => {
      w.u32((1 << 3) | 2);
      const mk = w.beginSub();
      packed(w);
      w.endSub(mk);
      w.u32(2 << 3); w.u64(total);
      w.u32(3 << 3); w.u32(m.ppb);
      w.u32(4 << 3); w.bool(m.padded);
    }, 2));
  }
  o[UNKNOWN] = u.sort((a, b) => a.no - b.no);
  return o;
}
