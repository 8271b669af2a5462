// Credentials of each thread (CRIU's thread_core.creds): uids, gids, groups, the effective,
// permitted, inheritable, ambient and bounding capability sets and the securebits (no_new_privs
// goes with seccomp, in restore/task.ts).
// Restore runs in each thread, which starts with the engine's own creds, in an order where every
// step still has the privilege it needs:
//   groups and gids; the inheritable set (it may hold caps the bounding set will not); bounding
//   drops; setresuid under keep-caps (which keeps the permitted set, the effective one is emptied);
//   the engine's permitted set made effective again for setfsuid/setfsgid, the ambient raises and
//   the securebits; last the dumped effective/permitted/inheritable sets.
// Then /proc and PR_GET_SECUREBITS must show exactly the dumped creds.
import * as fs from 'fs';
import type { Msg } from '../../images/codec';
import { hexField, numsField, numField, parseStatus, Status } from '../proc/status';
import { EngineError } from '../errors';
import type { Proc } from '../restore/context';
import type { Call } from '../restore/remote';
import { num } from '../restore/imageset';
import { NR, PR_SET_SECUREBITS } from '../restore/sys';

const PR_SET_KEEPCAPS = 8, PR_GET_SECUREBITS = 27, PR_CAPBSET_DROP = 24;
const PR_CAP_AMBIENT = 47, PR_CAP_AMBIENT_RAISE = 2, PR_CAP_AMBIENT_CLEAR_ALL = 4;
const NR_SETFSUID = 122, NR_SETFSGID = 123;
const LINUX_CAPABILITY_VERSION_3 = 0x20080522;
const CAP_SETS = ['cap_inh', 'cap_prm', 'cap_eff', 'cap_bnd', 'cap_amb'] as const;
const ID_FIELDS = ['uid', 'gid', 'euid', 'egid', 'suid', 'sgid', 'fsuid', 'fsgid'] as const;

function capWords(v: bigint): number[] {
  return [Number(v & 0xffffffffn), Number(v >> 32n)];
}

/** Dump half: the creds of one thread from its /proc status (securebits come from prctl). */
export function credsEntry(status: Status, secureBits: number): Msg {
  const uid = numsField(status, 'Uid');
  const gid = numsField(status, 'Gid');
  const c: Msg = {
    uid: uid[0], gid: gid[0], euid: uid[1], egid: gid[1], suid: uid[2], sgid: gid[2], fsuid: uid[3], fsgid: gid[3],
    cap_inh: capWords(hexField(status, 'CapInh')), cap_prm: capWords(hexField(status, 'CapPrm')),
    cap_eff: capWords(hexField(status, 'CapEff')), cap_bnd: capWords(hexField(status, 'CapBnd')),
    secbits: secureBits,
  };
  const groups = numsField(status, 'Groups');
  if (groups.length) c.groups = groups;
  if (status.has('CapAmb')) c.cap_amb = capWords(hexField(status, 'CapAmb'));
  // as CRIU: restore needs it to install seccomp filters in an unprivileged task
  if (numField(status, 'NoNewPrivs')) c.no_new_privs = 1;
  return c;
}

/** A capability set of a creds entry as one 64-bit mask (absent: empty). */
function capMask(c: Msg, k: string): bigint {
  const w = ((c[k] ?? [0, 0]) as unknown[]).map(num);
  return BigInt(w[0] >>> 0) | (BigInt((w[1] ?? 0) >>> 0) << 32n);
}

const groupsOf = (c: Msg) => ((c.groups ?? []) as unknown[]).map(num).join();

/** The fields of `want` that `got` does not have. */
function credsDiff(want: Msg, got: Msg): string[] {
  const out: string[] = [];
  for (const k of ID_FIELDS) if (num(want[k]) !== num(got[k])) out.push(`${k} ${got[k]} (not ${want[k]})`);
  if (groupsOf(want) !== groupsOf(got)) out.push(`groups [${groupsOf(got)}] (not [${groupsOf(want)}])`);
  for (const k of CAP_SETS) {
    if (k === 'cap_amb' && want.cap_amb === undefined) continue; // an image from a kernel without ambient caps
    if (capMask(want, k) !== capMask(got, k)) out.push(`${k} 0x${capMask(got, k).toString(16)} (not 0x${capMask(want, k).toString(16)})`);
  }
  if (num(want.secbits) !== num(got.secbits)) out.push(`secbits 0x${num(got.secbits).toString(16)} (not 0x${num(want.secbits).toString(16)})`);
  return out;
}

/** struct __user_cap_data_struct[2] */
function capData(eff: bigint, prm: bigint, inh: bigint): Buffer {
  const b = Buffer.alloc(24);
  for (let i = 0; i < 2; i++) {
    const word = (v: bigint) => Number((v >> BigInt(32 * i)) & 0xffffffffn);
    b.writeUInt32LE(word(eff), i * 12);
    b.writeUInt32LE(word(prm), i * 12 + 4);
    b.writeUInt32LE(word(inh), i * 12 + 8);
  }
  return b;
}

const bits = (m: bigint, last: number) => Array.from({ length: last + 1 }, (_, i) => i).filter((i) => (m >> BigInt(i)) & 1n);

/**
 * Restore half, per thread; `mine` is the engine's own creds (what each thread starts with).
 * A thread whose dumped creds are the engine's needs nothing.
 */
export function restoreCreds(p: Proc, mine: Msg): void {
  const r = p.remote;
  const lastCap = Number(fs.readFileSync('/proc/sys/kernel/cap_last_cap', 'utf8').trim());
  const all = (1n << BigInt(lastCap + 1)) - 1n;
  for (const [vtid, host] of p.tids) {
    const c = p.img.cores.get(vtid)!.thread_core?.creds as Msg | undefined;
    if (!c || !credsDiff(c, mine).length) continue;
    r.reset();
    const groups = ((c.groups ?? []) as unknown[]).map(num);
    const gbuf = Buffer.alloc(Math.max(4, groups.length * 4));
    groups.forEach((g, i) => gbuf.writeUInt32LE(g, i * 4));
    const hdr = r.put(Buffer.from(Uint32Array.of(LINUX_CAPABILITY_VERSION_3, 0).buffer));
    const [eff, prm, inh, bnd, amb] = (['cap_eff', 'cap_prm', 'cap_inh', 'cap_bnd', 'cap_amb'] as const).map((k) => capMask(c, k));
    const myPrm = capMask(mine, 'cap_prm'), myEff = capMask(mine, 'cap_eff');
    const capset = (e: bigint, pm: bigint, what: string): Call => ({ nr: NR.capset, args: [hdr, r.put(capData(e, pm, inh))], what: `capset (${what}) of thread ${vtid}` });
    const calls: Call[] = [
      { nr: NR.setgroups, args: [groups.length, r.put(gbuf)], what: 'setgroups' },
      { nr: NR.setresgid, args: [num(c.gid), num(c.egid), num(c.sgid)], what: 'setresgid' },
      capset(myEff, myPrm, 'inheritable set'),
      ...bits(all & ~bnd, lastCap).map((cap): Call => ({ nr: NR.prctl, args: [PR_CAPBSET_DROP, cap, 0, 0, 0], what: `prctl(PR_CAPBSET_DROP, ${cap})` })),
      { nr: NR.prctl, args: [PR_SET_KEEPCAPS, 1, 0, 0, 0], what: 'prctl(PR_SET_KEEPCAPS)' },
      { nr: NR.setresuid, args: [num(c.uid), num(c.euid), num(c.suid)], what: 'setresuid' },
      capset(myPrm, myPrm, 'the engine\'s permitted set effective again'),
      { nr: NR_SETFSUID, args: [num(c.fsuid)], what: 'setfsuid', mayFail: true /* returns the old fsuid; checked below */ },
      { nr: NR_SETFSGID, args: [num(c.fsgid)], what: 'setfsgid', mayFail: true },
      { nr: NR.prctl, args: [PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0], what: 'prctl(PR_CAP_AMBIENT_CLEAR_ALL)' },
      ...bits(amb, lastCap).map((cap): Call => ({ nr: NR.prctl, args: [PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, cap, 0, 0], what: `prctl(PR_CAP_AMBIENT_RAISE, ${cap})` })),
      { nr: NR.prctl, args: [PR_SET_SECUREBITS, num(c.secbits), 0, 0, 0], what: `prctl(PR_SET_SECUREBITS, 0x${num(c.secbits).toString(16)})` },
      capset(eff, prm, 'dumped sets'),
      { nr: NR.prctl, args: [PR_GET_SECUREBITS, 0, 0, 0, 0], what: 'prctl(PR_GET_SECUREBITS)' },
    ];
    const res = r.run(host, calls);
    const got = credsEntry(parseStatus(fs.readFileSync(`/proc/${p.host}/task/${host}/status`, 'utf8')), Number(res[res.length - 1]));
    const diff = credsDiff(c, got);
    if (diff.length) throw new EngineError(`task ${p.img.pid} thread ${vtid}: creds came back different: ${diff.join(', ')}`);
  }
}
