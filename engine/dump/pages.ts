// pagemap-<pid>.img + pages-<id>.img: which pages to save (from /proc/PID/pagemap) and the
// copy itself (process_vm_readv straight into the image file, /proc/PID/mem for unreadable VMAs).
import { PE } from '../../images/flags';
import * as fs from 'fs';
import type { Msg } from '../../images/codec';
import { native } from '../../native';
import type { PlannedVma } from './mm';
import { EngineError } from '../errors';
import { isNativeError } from '../../native';

export const PAGE_SIZE = 4096n;
/** pagemap bits 63 (present), 62 (swapped), 61 (file page or shared anon), in the high word */
const HI_PRESENT = 0x80000000, HI_SWAPPED = 0x40000000, HI_FILE = 0x20000000;
/** CRIU 4.2 never writes an entry longer than this */
const MAX_ENTRY_PAGES = 256n;

export interface PageRun {
  vaddr: bigint;
  nrPages: bigint;
  flags: number;
  /** read through /proc/PID/mem (PROT_NONE and other unreadable VMAs) */
  viaProcMem: boolean;
}

export interface PagePlan {
  runs: PageRun[];
  pagesScanned: number;
  pagesToWrite: number;
  pagesLazy: number;
}

export function planPages(pid: number, vmas: PlannedVma[]): PagePlan {
  const plan: PagePlan = { runs: [], pagesScanned: 0, pagesToWrite: 0, pagesLazy: 0 };
  let fd: number;
  try {
    fd = fs.openSync(`/proc/${pid}/pagemap`, 'r');
  } catch (e) {
    throw new EngineError(`cannot open /proc/${pid}/pagemap: ${(e as Error).message}`);
  }
  try {
    for (const v of vmas) {
      if (v.policy === 'none' || v.policy === 'shmem') continue;
      const npages = Number((v.end - v.start) / PAGE_SIZE);
      plan.pagesScanned += npages;
      const pm = native().preadU64(fd, (v.start / PAGE_SIZE) * 8n, npages);
      const flags = v.lazy ? PE.LAZY | PE.PRESENT : PE.PRESENT;
      const viaProcMem = !v.readable;
      // the high 32 bits of each entry hold every flag needed: test them as plain numbers
      const hi = new Uint32Array(pm.buffer, pm.byteOffset, npages * 2);
      const filePrivate = v.policy === 'file-private';
      // an AIO ring is saved whole, as CRIU does (the kernel writes it; a page may be unmapped and still hold events)
      const whole = v.policy === 'aio';
      const want = (k: number) => {
        if (whole) return true;
        const h = hi[2 * k + 1];
        if (h & HI_SWAPPED) return true;
        if (!(h & HI_PRESENT)) return false;
        return !filePrivate || (h & HI_FILE) === 0;
      };
      for (let i = 0; i < npages; ) {
        if (!want(i)) {
          i++;
          continue;
        }
        let j = i + 1;
        while (j < npages && want(j)) j++;
        let count = BigInt(j - i);
        let addr = v.start + BigInt(i) * PAGE_SIZE;
        plan.pagesToWrite += j - i;
        if (v.lazy) plan.pagesLazy += j - i;
        while (count > 0n) {
          const last = plan.runs[plan.runs.length - 1];
          let take: bigint;
          if (last && last.vaddr + last.nrPages * PAGE_SIZE === addr && last.flags === flags && last.viaProcMem === viaProcMem && last.nrPages < MAX_ENTRY_PAGES) {
            take = count < MAX_ENTRY_PAGES - last.nrPages ? count : MAX_ENTRY_PAGES - last.nrPages;
            last.nrPages += take;
          } else {
            take = count < MAX_ENTRY_PAGES ? count : MAX_ENTRY_PAGES;
            plan.runs.push({ vaddr: addr, nrPages: take, flags, viaProcMem });
          }
          count -= take;
          addr += take * PAGE_SIZE;
        }
        i = j;
      }
    }
  } finally {
    fs.closeSync(fd);
  }
  return plan;
}

export function pagemapEntries(pagesId: number, plan: PagePlan): { msg: Msg }[] {
  return [
    { msg: { pages_id: pagesId } },
    ...plan.runs.map((r) => ({ msg: { vaddr: r.vaddr, compat_nr_pages: 0, flags: r.flags, nr_pages: r.nrPages } })),
  ];
}

/** Writes the pages of plan, in entry order, into file; returns bytes written. */
/** at most this many bytes per copy call, so that an interruption is noticed quickly */
const BATCH_BYTES = 64n << 20n;
/** the addon's copy buffer for large batches */
const CHUNK = 4n << 20n;

export function writePages(pid: number, plan: PagePlan, file: string, check: () => void = () => {}): number {
  const out = fs.openSync(file, 'w', 0o600);
  let total = 0;
  try {
    let batch: bigint[] = [];
    let batchBytes = 0n;
    const flush = () => {
      check();
      if (!batch.length) return;
      // the addon allocates (and zeroes) its bounce buffer per call: no bigger than the batch
      total += native().copyMemoryToFd(pid, BigUint64Array.from(batch), out, Number(batchBytes < CHUNK ? batchBytes : CHUNK));
      batch = [];
      batchBytes = 0n;
    };
    for (const r of plan.runs) {
      const len = r.nrPages * PAGE_SIZE;
      if (!r.viaProcMem) {
        if (batchBytes + len > BATCH_BYTES) flush();
        batch.push(r.vaddr, len);
        batchBytes += len;
        continue;
      }
      flush();
      total += copyViaProcMem(pid, r.vaddr, Number(len), out);
    }
    flush(); // fsynced later, once the tree runs again
  } catch (e) {
    if (isNativeError(e) && e.code === 'ESRCH') throw new EngineError(`task ${pid} exited during the memory dump`, 'ESRCH');
    if (isNativeError(e) && e.code === 'ENOSPC') throw new EngineError(`no space left on device while writing ${file}`, 'ENOSPC');
    throw e;
  } finally {
    fs.closeSync(out);
  }
  return total;
}

function copyViaProcMem(pid: number, addr: bigint, len: number, out: number): number {
  const mem = fs.openSync(`/proc/${pid}/mem`, 'r');
  try {
    const buf = Buffer.alloc(len);
    let got = 0;
    while (got < len) {
      const n = native().pread(mem, buf.subarray(got), addr + BigInt(got));
      if (n <= 0) throw new EngineError(`short read of /proc/${pid}/mem at 0x${(addr + BigInt(got)).toString(16)}`);
      got += n;
    }
    fs.writeSync(out, buf);
    return len;
  } finally {
    fs.closeSync(mem);
  }
}
