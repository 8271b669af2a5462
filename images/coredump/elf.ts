// The pieces of a 64-bit little-endian ELF core file that do not depend on the architecture:
// the file header, program headers, notes, and the extended numbering the kernel falls back to
// when there are more segments than e_phnum can count.

export const EHDR_SIZE = 64;
export const PHDR_SIZE = 56;
export const SHDR_SIZE = 64;

export const ET_CORE = 4;
export const PT_LOAD = 1;
export const PT_NOTE = 4;
export const PF_X = 1;
export const PF_W = 2;
export const PF_R = 4;
/** e_phnum value meaning "the real count is in section header 0's sh_info" */
export const PN_XNUM = 0xffff;

export const EM_X86_64 = 62;
export const EM_AARCH64 = 183;

export const NT_PRSTATUS = 1;
export const NT_FPREGSET = 2;
export const NT_PRPSINFO = 3;
export const NT_AUXV = 6;
export const NT_X86_XSTATE = 0x202;
export const NT_ARM_TLS = 0x401;
export const NT_SIGINFO = 0x53494749;
export const NT_FILE = 0x46494c45;

export interface Note {
  /** "CORE" for the classic notes, "LINUX" for the kernel's own regsets */
  name: 'CORE' | 'LINUX';
  type: number;
  desc: Buffer;
}

const pad4 = (n: number) => (n + 3) & ~3;

/** Bytes a note takes in the PT_NOTE segment: header, name and descriptor, each 4-aligned. */
export function noteSize(n: Note): number {
  return 12 + pad4(n.name.length + 1) + pad4(n.desc.length);
}

export function encodeNote(n: Note): Buffer {
  const b = Buffer.alloc(noteSize(n));
  b.writeUInt32LE(n.name.length + 1, 0);
  b.writeUInt32LE(n.desc.length, 4);
  b.writeUInt32LE(n.type >>> 0, 8);
  b.write(n.name, 12, 'latin1');
  n.desc.copy(b, 12 + pad4(n.name.length + 1));
  return b;
}

export function elfHeader(machine: number, phnum: number, shoff: number): Buffer {
  const b = Buffer.alloc(EHDR_SIZE);
  b.set([0x7f, 0x45, 0x4c, 0x46, 2 /* 64-bit */, 1 /* little-endian */, 1 /* EV_CURRENT */, 0 /* SYSV ABI */], 0);
  b.writeUInt16LE(ET_CORE, 16);
  b.writeUInt16LE(machine, 18);
  b.writeUInt32LE(1, 20);
  b.writeBigUInt64LE(0n, 24); // e_entry
  b.writeBigUInt64LE(BigInt(EHDR_SIZE), 32); // e_phoff: right after this header
  const ext = phnum >= PN_XNUM;
  b.writeBigUInt64LE(ext ? BigInt(shoff) : 0n, 40);
  b.writeUInt32LE(0, 48); // e_flags
  b.writeUInt16LE(EHDR_SIZE, 52);
  b.writeUInt16LE(PHDR_SIZE, 54);
  b.writeUInt16LE(ext ? PN_XNUM : phnum, 56);
  b.writeUInt16LE(ext ? SHDR_SIZE : 0, 58);
  b.writeUInt16LE(ext ? 1 : 0, 60);
  b.writeUInt16LE(0, 62); // e_shstrndx: SHN_UNDEF
  return b;
}

export interface Phdr {
  type: number;
  flags: number;
  offset: number;
  vaddr: bigint;
  filesz: number;
  memsz: bigint;
  align: number;
}

export function encodePhdr(p: Phdr, b: Buffer, at: number): void {
  b.writeUInt32LE(p.type, at);
  b.writeUInt32LE(p.flags, at + 4);
  b.writeBigUInt64LE(BigInt(p.offset), at + 8);
  b.writeBigUInt64LE(p.vaddr, at + 16);
  b.writeBigUInt64LE(0n, at + 24); // p_paddr
  b.writeBigUInt64LE(BigInt(p.filesz), at + 32);
  b.writeBigUInt64LE(p.memsz, at + 40);
  b.writeBigUInt64LE(BigInt(p.align), at + 48);
}

/** The single section header of extended numbering: SHT_NULL with the segment count in sh_info. */
export function extnumShdr(phnum: number): Buffer {
  const b = Buffer.alloc(SHDR_SIZE);
  b.writeBigUInt64LE(1n, 32); // sh_size: e_shnum
  b.writeUInt32LE(phnum, 44); // sh_info
  return b;
}
