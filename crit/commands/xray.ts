// crit xray DIR --pid PID: memory of a dumped task as a hexdump annotated with VMAs, files and
// absent pages; raw bytes out; search (text, hex, regex) and strings; amdgpu buffer contents.
import * as fs from 'fs';
import { ImageSet } from '../../images/imageset';
import { MemoryReader, Span } from '../../images/memory/reader';
import { hexRows } from '../../images/query/hexdump';
import { searchMemory, memoryStrings, Pattern } from '../../images/query/search';
import { gpuRows } from '../../images/query/explore-more';
import { vmaLabel } from '../../images/query/vma';
import { parseVmaFilter, filterVmas, filteredRanges, vmaKinds, VmaFilter, VmaFilterError } from '../../images/query/vmafilter';
import { pyJson } from '../../images/json/pytext';
import { TextSink } from '../../images/json/document';
import { writeAll } from '../../images/image';
import { renderRows, useColor } from '../render/hexdump';
import { stdoutFd } from '../io';

export class XrayError extends Error {}
export { VmaFilterError };

export interface XrayOpts {
  pid?: string;
  addr?: string;
  len?: string;
  vma?: string;
  raw?: boolean;
  zeroFill?: boolean;
  search?: string;
  hex?: string;
  regex?: string;
  context?: string;
  strings?: boolean;
  min?: string;
  gpu?: boolean;
  bo?: string;
  json?: boolean;
  color?: string;
  pageSize?: string;
  patch?: string;
  out?: string;
  prot?: string;
  range?: string;
  kind?: string;
}

export function parseAddr(s: string, what: string): bigint {
  const t = s.trim().replace(/_/g, '');
  if (!/^(0[xX][0-9a-fA-F]+|\d+)$/.test(t)) throw new XrayError(`${what}: '${s}' is not a number (use 0x... for hex)`);
  return BigInt(t.toLowerCase());
}

function parseHexBytes(s: string): Uint8Array {
  const t = s.replace(/0x/gi, '').replace(/[\s:,]/g, '');
  if (!/^([0-9a-fA-F]{2})+$/.test(t)) throw new XrayError(`--hex/--patch: '${s}' is not a sequence of hex bytes (e.g. "de ad be ef")`);
  return Uint8Array.from(Buffer.from(t, 'hex'));
}

function selectRange(mem: MemoryReader, o: XrayOpts): { addr: bigint; len: number } | undefined {
  if (o.vma !== undefined) {
    const i = Number(o.vma);
    const v = mem.vmas[i];
    if (!Number.isInteger(i) || !v) throw new XrayError(`--vma ${o.vma}: the task has VMAs 0..${mem.vmas.length - 1}`);
    return { addr: v.start, len: Number(v.end - v.start) };
  }
  if (o.addr !== undefined) {
    const addr = parseAddr(o.addr, '--addr');
    const len = o.len !== undefined ? Number(parseAddr(o.len, '--len')) : 256;
    return { addr, len };
  }
  return undefined;
}

export function xray(dir: string, o: XrayOpts): void {
  let set: ImageSet;
  try {
    set = new ImageSet(dir, { pageSize: o.pageSize ? Number(o.pageSize) : undefined });
  } catch (e) {
    throw new XrayError((e as Error).message);
  }
  const out = new TextSink(stdoutFd(), 'utf8');
  const line = (s: string) => out.write(s + '\n');
  const color = useColor(o.color);
  try {
    if (o.gpu) return gpuXray(set, o, line, color);
    if (o.pid === undefined) throw new XrayError('--pid PID is required (see crit x DIR ps)');
    const pid = Number(o.pid);
    if (!set.task(pid)) throw new XrayError(`pid ${o.pid} is not in ${dir}/pstree.img`);
    if (!set.has(`mm-${pid}.img`)) throw new XrayError(`pid ${pid} has no mm-${pid}.img (a zombie has no memory)`);
    const mem = set.memory(pid);
    const ctx = o.context !== undefined ? Number(o.context) : 16;
    const filter: VmaFilter | undefined = parseVmaFilter({ prot: o.prot, range: o.range, kind: o.kind });
    if (filter && (o.addr !== undefined || o.vma !== undefined || o.patch !== undefined))
      throw new XrayError(`${filter.text}: the VMA filters choose VMAs for the list, --search/--hex/--regex and --strings; --addr and --vma already name the bytes`);

    if (o.patch !== undefined) {
      const range = selectRange(mem, o);
      if (!range) throw new XrayError('--patch needs --addr ADDR');
      let patchMemory: (set: ImageSet, pid: number, addr: bigint, bytes: Uint8Array, opts?: { out?: string }) => unknown;
      try {
        patchMemory = require('../../images/memory/patch').patchMemory;
      } catch {
        throw new XrayError('--patch is not available in this build');
      }
      patchMemory(set, pid, range.addr, parseHexBytes(o.patch), { out: o.out });
      line(`patched ${parseHexBytes(o.patch).length} bytes at 0x${range.addr.toString(16)}`);
      return;
    }

    if (o.search !== undefined || o.hex !== undefined || o.regex !== undefined) {
      let pat: Pattern;
      if (o.regex !== undefined) {
        try {
          pat = { kind: 'regex', re: new RegExp(o.regex, 'g') };
        } catch (e) {
          throw new XrayError(`--regex: ${(e as Error).message}`);
        }
      } else pat = { kind: 'bytes', bytes: o.hex !== undefined ? parseHexBytes(o.hex) : Buffer.from(o.search!, 'utf8') };
      const hits = [];
      for (const m of searchMemory(mem, pat, ctx, 4096, filteredRanges(mem, filter))) {
        const v = mem.vmaAt(m.addr);
        if (o.json) hits.push({ addr: m.addr, length: m.length, vma: v?.index, context_start: m.contextStart, context: Buffer.from(m.context).toString('base64') });
        else {
          line(`0x${m.addr.toString(16)} (${m.length} bytes) in ${v ? vmaLabel(v) : 'no VMA'}`);
          if (ctx > 0) for (const r of renderRows(hexRows([{ addr: m.contextStart, len: m.context.length, data: m.context }], 16, false), color)) line('  ' + r);
        }
      }
      if (o.json) line(pyJson(hits, true));
      return;
    }

    if (o.strings) {
      const min = o.min !== undefined ? Number(o.min) : 6;
      if (o.json) {
        const all = [];
        for (const s of memoryStrings(mem, min, filteredRanges(mem, filter))) all.push({ addr: s.addr, text: s.text });
        line(pyJson(all, true));
      } else for (const s of memoryStrings(mem, min, filteredRanges(mem, filter))) line(`${s.addr.toString(16).padStart(16, '0')}  ${s.text}`);
      return;
    }

    const range = selectRange(mem, o);
    if (!range) {
      // no range chosen: the map of the task's memory and what the image holds of it
      const rows = filterVmas(mem.vmas, filter).map((v) => {
        let present = 0;
        for (const s of mem.layout(v.start, Number(v.end - v.start))) if (s.present) present += s.len;
        return { v, present };
      });
      if (o.json) return line(pyJson(rows.map(({ v, present }) => ({ vma: v.index, start: v.start, end: v.end, label: vmaLabel(v), kinds: [...vmaKinds(v)], bytes_in_image: present })), true));
      if (filter) line(`pid ${pid}: ${rows.length} of ${mem.vmas.length} VMAs match ${filter.text}`);
      else line(`pid ${pid}: ${mem.vmas.length} VMAs (choose one with --vma I, or --addr A [--len N])`);
      for (const { v, present } of rows) line(`  ${vmaLabel(v).padEnd(70)} ${present ? `${present / 1024} KiB in image` : 'nothing in image'}`);
      return;
    }

    if (o.raw) {
      let bytes: Uint8Array;
      try {
        bytes = mem.readBytes(range.addr, range.len, !!o.zeroFill);
      } catch (e) {
        throw new XrayError(`${(e as Error).message} (use --zero-fill to write zeros for bytes the image does not hold)`);
      }
      writeAll(stdoutFd(), bytes);
      return;
    }

    const spans = mem.read(range.addr, range.len);
    if (o.json) {
      return line(pyJson(spans.map((s) => ({ addr: s.addr, len: s.len, vma: mem.vmaAt(s.addr)?.index, origin: s.origin, absent: s.absent, data: s.data ? Buffer.from(s.data).toString('base64') : undefined })), true));
    }
    let lastVma = -1;
    for (const s of groupSpans(spans)) {
      const v = mem.vmaAt(s.addr);
      if (v && v.index !== lastVma) {
        line((color ? '\x1b[1m' : '') + `── ${vmaLabel(v)} ──` + (color ? '\x1b[0m' : ''));
        lastVma = v.index;
      }
      const end = s.addr + BigInt(s.len);
      if (!s.data) {
        line((color ? '\x1b[31m' : '') + `   ${s.addr.toString(16)}-${end.toString(16)} (${s.len} bytes) not in the image: ${s.absent}` + (color ? '\x1b[0m' : ''));
        continue;
      }
      for (const r of renderRows(hexRows([s]), color)) line(r);
    }
  } finally {
    out.flush();
    set.close();
  }
}

/** Merge neighbouring spans of the same kind so a long run prints as one block. */
function groupSpans(spans: Span[]): Span[] {
  const out: Span[] = [];
  for (const s of spans) {
    const p = out[out.length - 1];
    if (p && p.addr + BigInt(p.len) === s.addr && !!p.data === !!s.data && (p.data || p.absent === s.absent)) {
      if (p.data && s.data) p.data = Buffer.concat([p.data, s.data]);
      p.len += s.len;
    } else out.push({ ...s });
  }
  return out;
}

function gpuXray(set: ImageSet, o: XrayOpts, line: (s: string) => void, color: boolean): void {
  const files = gpuRows(set);
  const bos = files.flatMap((f) => f.bos.map((b) => ({ f, b })));
  if (!bos.length) throw new XrayError(`${set.dir}: no amdgpu buffer objects in this image set`);
  const pick = o.bo !== undefined ? bos.filter((_, i) => String(i) === o.bo) : bos;
  if (!pick.length) throw new XrayError(`--bo ${o.bo}: buffer objects are numbered 0..${bos.length - 1} (see crit x DIR gpu)`);
  for (const { f, b } of pick) {
    if (o.raw && !b.contentFile) throw new XrayError(`${f.file} BO #${b.index}: no contents in the image (${b.contents})`);
    // with --raw, stdout carries the bytes and nothing else
    if (!o.raw) line(`── ${f.file} BO #${b.index} handle ${b.handle} size ${b.size} ${b.domains} ──`);
    if (!b.contentFile) { line(`   contents: ${b.contents}`); continue; }
    const fd = fs.openSync(set.path(b.contentFile), 'r');
    try {
      const size = Number(b.size);
      const len = o.len !== undefined ? Math.min(size, Number(parseAddr(o.len, '--len'))) : Math.min(size, 4096);
      const buf = Buffer.alloc(len);
      const got = fs.readSync(fd, buf, 0, len, b.contentOffset ?? 8);
      if (o.raw) { writeAll(stdoutFd(), buf.subarray(0, got)); continue; }
      for (const r of renderRows(hexRows([{ addr: 0n, len: got, data: buf.subarray(0, got) }]), color)) line(r);
      if (got < len) line(`   (file ends after ${got} of ${len} bytes)`);
    } finally {
      fs.closeSync(fd);
    }
  }
}
