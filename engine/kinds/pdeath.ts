// The parent-death signal of each thread (CRIU's thread_core.pdeath_sig; the dump half is the
// PR_GET_PDEATHSIG in dump/thread.ts). The kernel clears it on every credential change, so
// restore sets it after the creds; by then the thread has its final parent (every child is
// forked by its restored parent).
import type { Msg } from '../../images/codec';
import type { Proc } from '../restore/context';
import { ImageError, num } from '../restore/imageset';
import { NR, PR_SET_PDEATHSIG } from '../restore/sys';

/** Before any process exists. */
export function checkPdeathSig(image: string, tc: Msg | undefined): void {
  const sig = num(tc?.pdeath_sig);
  if (sig < 0 || sig > 64) throw new ImageError(image, 'thread_core.pdeath_sig', `${sig} is not a signal`);
}

/** Restore half: each thread for itself, after the creds. */
export function restorePdeathSig(p: Proc): void {
  for (const [vtid, host] of p.tids) {
    const sig = num(p.img.cores.get(vtid)!.thread_core?.pdeath_sig);
    if (sig) p.remote.one(host, `prctl(PR_SET_PDEATHSIG, ${sig}) of thread ${vtid}`, NR.prctl, PR_SET_PDEATHSIG, sig, 0, 0, 0);
  }
}
