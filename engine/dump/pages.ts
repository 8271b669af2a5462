// pagemap-<pid>.img + pages-<id>.img: which pages to save (from /proc/PID/pagemap) and the
// copy itself (process_vm_readv straight into the image file, /proc/PID/mem for unreadable VMAs).
import * as fs from 'fs';
import type { Msg } from '../../images/codec';
import { native } from '../../native';
import type { PlannedVma } from './mm';
import { EngineError } from '../errors';
import { isNativeError } from '../../native';

export const PAGE_SIZE = 4096n;
const PM_PRESENT = 1n << 63n;
const PM_SWAPPED = 1n << 62n;
const PM_FILE = 1n << 61n;
const PE_LAZY = 2, PE_PRESENT = 4;
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

function wanted(policy: PlannedVma['policy'], pme: bigint): boolean {
  if (policy === 'none' || policy === 'shmem') return false;
  if (pme & PM_SWAPPED) return true;
  if (!(pme & PM_PRESENT)) return false;
  // a private file page still backed by the file comes back from the file itself
  if (policy === 'file-private') return (pme & PM_FILE) === 0n;
  return true;
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
      const flags = v.lazy ? PE_LAZY | PE_PRESENT : PE_PRESENT;
      for (let i = 0; i < npages; i++) {
        if (!wanted(v.policy, pm[i])) continue;
        const addr = v.start + BigInt(i) * PAGE_SIZE;
        const last = plan.runs[plan.runs.length - 1];
        const viaProcMem = !v.readable;
        if (last && last.vaddr + last.nrPages * PAGE_SIZE === addr && last.flags === flags && last.viaProcMem === viaProcMem && last.nrPages < MAX_ENTRY_PAGES) {
          last.nrPages++;
        } else {
          plan.runs.push({ vaddr: addr, nrPages: 1n, flags, viaProcMem });
        }
        plan.pagesToWrite++;
        if (v.lazy) plan.pagesLazy++;
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
export function writePages(pid: number, plan: PagePlan, file: string): number {
  const out = fs.openSync(file, 'w', 0o600);
  let total = 0;
  try {
    let batch: bigint[] = [];
    const flush = () => {
      if (!batch.length) return;
      total += native().copyMemoryToFd(pid, BigUint64Array.from(batch), out);
      batch = [];
    };
    for (const r of plan.runs) {
      const len = r.nrPages * PAGE_SIZE;
      if (!r.viaProcMem) {
        batch.push(r.vaddr, len);
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
