// membarrier(2) registrations of a process (they belong to its mm): read at dump with
// MEMBARRIER_CMD_GET_REGISTRATIONS injected in the task, kept in CRIU's
// task_core.membarrier_registration_mask (the MEMBARRIER_CMD_REGISTER_* bits), and registered
// again at restore by the task itself.
import type { Msg } from '../../images/codec';
import type { RemoteSyscalls } from '../inject';
import { isErr } from '../inject';
import { EngineError } from '../errors';
import type { Proc } from '../restore/context';
import { ImageError, num } from '../restore/imageset';

const NR_MEMBARRIER = 324;
const GET_REGISTRATIONS = 1 << 9;
const ENOSYS = 38, EINVAL = 22, EPERM = 1;

/** MEMBARRIER_CMD_REGISTER_* and the barrier each one allows */
const REGISTRATIONS: { register: number; barrier: number; name: string }[] = [
  { register: 1 << 2, barrier: 1 << 1, name: 'GLOBAL_EXPEDITED' },
  { register: 1 << 4, barrier: 1 << 3, name: 'PRIVATE_EXPEDITED' },
  { register: 1 << 6, barrier: 1 << 5, name: 'PRIVATE_EXPEDITED_SYNC_CORE' },
  { register: 1 << 8, barrier: 1 << 7, name: 'PRIVATE_EXPEDITED_RSEQ' },
];
const KNOWN = REGISTRATIONS.reduce((m, r) => m | r.register, 0);

/**
 * Dump half. Kernels before 6.3 lack GET_REGISTRATIONS: there a private barrier tells (it
 * fails with EPERM unless registered), but a global-expedited registration cannot be seen.
 */
export function readMembarrierMask(remote: RemoteSyscalls, pid: number, note: (m: string) => void): number {
  const res = remote.one(pid, NR_MEMBARRIER, GET_REGISTRATIONS, 0, 0);
  if (!isErr(res)) return Number(res);
  if (res === BigInt(-ENOSYS)) return 0; // no membarrier in this kernel: nothing can be registered
  if (res !== BigInt(-EINVAL)) throw new EngineError(`task ${pid}: injected membarrier(MEMBARRIER_CMD_GET_REGISTRATIONS) failed (errno ${-res})`);
  let mask = 0;
  for (const r of REGISTRATIONS.slice(1)) {
    const got = remote.one(pid, NR_MEMBARRIER, r.barrier, 0, 0);
    if (got === 0n) mask |= r.register;
    else if (got !== BigInt(-EPERM) && got !== BigInt(-EINVAL)) throw new EngineError(`task ${pid}: injected membarrier(${r.name}) failed (errno ${-got})`);
  }
  note(`task ${pid}: this kernel cannot report a membarrier GLOBAL_EXPEDITED registration (no MEMBARRIER_CMD_GET_REGISTRATIONS); private ones: 0x${mask.toString(16)}`);
  return mask;
}

/** The task_core field, written only when something is registered (as CRIU). */
export function membarrierTaskCore(mask: number): Msg {
  return mask ? { membarrier_registration_mask: mask } : {};
}

/** Before any process exists: only registrations this engine knows how to make. */
export function checkMembarrier(image: string, tc: Msg): void {
  const mask = num(tc.membarrier_registration_mask);
  if (mask & ~KNOWN) throw new ImageError(image, 'tc.membarrier_registration_mask', `0x${mask.toString(16)} has registrations this engine does not know (0x${(mask & ~KNOWN).toString(16)})`);
}

/** Restore half: each registration made again by the task, then read back where the kernel can. */
export function restoreMembarrier(p: Proc): void {
  const mask = num(p.img.leader.tc.membarrier_registration_mask);
  if (!mask) return;
  const r = p.remote;
  r.run(p.host, REGISTRATIONS.filter((x) => mask & x.register).map((x) => ({
    nr: NR_MEMBARRIER, args: [x.register, 0, 0], what: `membarrier(MEMBARRIER_CMD_REGISTER_${x.name})`,
  })));
  const [got] = r.run(p.host, [{ nr: NR_MEMBARRIER, args: [GET_REGISTRATIONS, 0, 0], what: 'membarrier(MEMBARRIER_CMD_GET_REGISTRATIONS)', mayFail: true }]);
  if (!isErr(got) && Number(got) !== mask)
    throw new EngineError(`task ${p.img.pid}: membarrier registrations came back as 0x${Number(got).toString(16)}, not 0x${mask.toString(16)}`);
}
