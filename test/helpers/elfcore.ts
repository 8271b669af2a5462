// Reading an ELF core file back, written independently of images/coredump/ so that the tests
// check the file against the ELF format rather than against the writer's own tables.
import * as fs from 'fs';

export interface CoreNote {
  name: string;
  type: number;
  desc: Buffer;
}

export interface CoreSegment {
  type: number;
  flags: number;
  offset: number;
  vaddr: bigint;
  filesz: number;
  memsz: bigint;
  align: number;
}

export interface ParsedCore {
  machine: number;
  type: number;
  phnum: number;
  segments: CoreSegment[];
  notes: CoreNote[];
  size: number;
  /** bytes of memory at vaddr from the PT_LOAD holding them (undefined if not in the file) */
  read(vaddr: bigint, len: number): Buffer | undefined;
  close(): void;
}

function pread(fd: number, len: number, pos: number): Buffer {
  const b = Buffer.alloc(len);
  let got = 0;
  while (got < len) {
    const n = fs.readSync(fd, b, got, len - got, pos + got);
    if (n <= 0) throw new Error(`core file ends at ${pos + got}, wanted ${pos + len}`);
    got += n;
  }
  return b;
}

export function parseCore(file: string): ParsedCore {
  const fd = fs.openSync(file, 'r');
  const size = fs.fstatSync(fd).size;
  const eh = pread(fd, 64, 0);
  if (eh.readUInt32BE(0) !== 0x7f454c46) throw new Error(`${file}: not ELF`);
  if (eh[4] !== 2 || eh[5] !== 1) throw new Error(`${file}: not ELF64 little-endian`);
  const phoff = Number(eh.readBigUInt64LE(32));
  let phnum = eh.readUInt16LE(56);
  if (phnum === 0xffff) {
    const shoff = Number(eh.readBigUInt64LE(40));
    phnum = pread(fd, 64, shoff).readUInt32LE(44);
  }
  const ph = pread(fd, phnum * 56, phoff);
  const segments: CoreSegment[] = [];
  for (let i = 0; i < phnum; i++) {
    const o = i * 56;
    segments.push({
      type: ph.readUInt32LE(o), flags: ph.readUInt32LE(o + 4), offset: Number(ph.readBigUInt64LE(o + 8)), vaddr: ph.readBigUInt64LE(o + 16),
      filesz: Number(ph.readBigUInt64LE(o + 32)), memsz: ph.readBigUInt64LE(o + 40), align: Number(ph.readBigUInt64LE(o + 48)),
    });
  }
  const notes: CoreNote[] = [];
  for (const s of segments.filter((x) => x.type === 4)) {
    const b = pread(fd, s.filesz, s.offset);
    let o = 0;
    while (o + 12 <= b.length) {
      const namesz = b.readUInt32LE(o);
      const descsz = b.readUInt32LE(o + 4);
      const type = b.readUInt32LE(o + 8);
      const name = b.toString('latin1', o + 12, o + 12 + namesz).replace(/\0+$/, '');
      const d = o + 12 + ((namesz + 3) & ~3);
      notes.push({ name, type, desc: b.subarray(d, d + descsz) });
      o = d + ((descsz + 3) & ~3);
    }
    if (o !== b.length) throw new Error(`${file}: notes end at ${o}, segment has ${b.length}`);
  }
  return {
    machine: eh.readUInt16LE(18),
    type: eh.readUInt16LE(16),
    phnum,
    segments,
    notes,
    size,
    read(vaddr, len) {
      const s = segments.find((x) => x.type === 1 && x.vaddr <= vaddr && vaddr + BigInt(len) <= x.vaddr + BigInt(x.filesz));
      return s ? pread(fd, len, s.offset + Number(vaddr - s.vaddr)) : undefined;
    },
    close: () => fs.closeSync(fd),
  };
}

/** The NT_PRSTATUS notes by pr_pid, with pr_reg as 64-bit words. */
export function prstatusByTid(core: ParsedCore, nregs: number): Map<number, bigint[]> {
  const out = new Map<number, bigint[]>();
  for (const n of core.notes.filter((x) => x.name === 'CORE' && x.type === 1)) {
    const regs: bigint[] = [];
    for (let i = 0; i < nregs; i++) regs.push(n.desc.readBigUInt64LE(112 + i * 8));
    out.set(n.desc.readInt32LE(32), regs);
  }
  return out;
}
