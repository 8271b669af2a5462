// The audit loginuid of a process, in CRIU's task_core.loginuid (one per task: threads with
// another value are refused at dump). Only the task itself may write /proc/self/loginuid, so
// restore injects open/write/close in the leader while it is still privileged and before its
// threads exist (they inherit it). Writing a loginuid starts a new audit session id, which no
// image keeps.
import * as fs from 'fs';
import type { Msg } from '../../images/codec';
import { readProc } from '../proc/read';
import { EngineError, UnsupportedError } from '../errors';
import type { Proc } from '../restore/context';
import { ImageError, num } from '../restore/imageset';
import { NR, AT_FDCWD } from '../restore/sys';

const O_WRONLY = 1;
export const LOGINUID_UNSET = 4294967295;

/** Dump half: undefined when the kernel has no audit loginuid (CONFIG_AUDIT off). */
export function readLoginuid(pid: number, tids: number[]): number | undefined {
  if (!fs.existsSync(`/proc/${pid}/loginuid`)) return undefined;
  const leader = Number(readProc(pid, 'loginuid').trim());
  for (const tid of tids) {
    if (tid === pid) continue;
    const v = Number(readProc(pid, 'task', String(tid), 'loginuid').trim());
    if (v !== leader) throw new UnsupportedError(`task ${pid} thread ${tid}: loginuid ${v} differs from the leader's ${leader}; the image keeps one per task`);
  }
  return leader;
}

/** Before any process exists: a set loginuid needs a kernel that has them. */
export function checkLoginuid(image: string, tc: Msg): void {
  if (tc.loginuid === undefined || num(tc.loginuid) === LOGINUID_UNSET) return;
  if (!fs.existsSync('/proc/self/loginuid')) throw new ImageError(image, 'tc.loginuid', `${tc.loginuid}: this kernel has no audit loginuid`);
}

/** Restore half, in the leader before its threads are created and before any chroot. */
export function restoreLoginuid(p: Proc): void {
  const tc = p.img.leader.tc;
  if (tc.loginuid === undefined) return;
  const want = num(tc.loginuid);
  const file = `/proc/${p.host}/loginuid`;
  if (!fs.existsSync(file)) return; // checked: only an unset loginuid gets here
  if (Number(fs.readFileSync(file, 'utf8').trim()) === want) return;
  const r = p.remote;
  r.reset();
  const text = Buffer.from(String(want));
  const fd = r.one(p.host, 'open(/proc/self/loginuid)', NR.openat, AT_FDCWD, r.cstr('/proc/self/loginuid'), O_WRONLY);
  try {
    r.one(p.host, `write(/proc/self/loginuid, ${want})`, NR.write, fd, r.put(text), text.length);
  } finally {
    r.one(p.host, 'close(/proc/self/loginuid)', NR.close, fd);
  }
  const got = Number(fs.readFileSync(file, 'utf8').trim());
  if (got !== want) throw new EngineError(`task ${p.img.pid}: loginuid came back as ${got}, not ${want}`);
}
