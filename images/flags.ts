// CRIU's bit values that several layers test: VMA status bits (vma_entry.status) and pagemap
// entry flags. One table, so nothing spells 0x4000 by hand.

/** vma_entry.status bits (CRIU's VMA_AREA_* / VMA_* values). */
export const VMA = {
  REGULAR: 0x1, STACK: 0x2, VSYSCALL: 0x4, VDSO: 0x8, HEAP: 0x20, FILE_PRIVATE: 0x40, FILE_SHARED: 0x80,
  ANON_SHARED: 0x100, ANON_PRIVATE: 0x200, SYSVIPC: 0x400, SOCKET: 0x800, VVAR: 0x1000, AIORING: 0x2000,
  MEMFD: 0x4000, SHSTK: 0x8000, GUARD: 0x10000, UPROBES: 0x20000,
  /** a device plugin's mapping: restored through the file UPDATE_VMA_MAP gives, never by path */
  EXT_PLUGIN: 0x8000000, CLOSE: 0x10000000, NO_PROT_WRITE: 0x20000000, PREMMAPED: 0x40000000, UNSUPP: 0x80000000,
} as const;

/** any file-backed mapping */
export const VMA_FILE = VMA.FILE_PRIVATE | VMA.FILE_SHARED;

/** pagemap_entry.flags; PAYLOAD_ALIGNED (CRIU 2026, compressed sets): payload starts at a page boundary of the pages file */
export const PE = { PARENT: 1, LAZY: 2, PRESENT: 4, PAYLOAD_ALIGNED: 8 } as const;
