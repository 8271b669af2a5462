// `criu check`: answers for this engine, not for CRIU. A feature is reported as supported only
// when the kernel has what it takes here AND the engine dumps and restores the state it is
// about; every name of CRIU 4.2's list is answered, with the reason when the answer is no.
import * as fs from 'fs';
import { spawnSync } from 'child_process';
import * as os from 'os';
import * as path from 'path';
import { native } from '../../native';
import { internalDevs } from '../kinds/hugetlb';

export interface FeatureAnswer {
  ok: boolean;
  why: string;
}

const no = (why: string): FeatureAnswer => ({ ok: false, why });
const yes = (why: string): FeatureAnswer => ({ ok: true, why });

function kernelAtLeast(major: number, minor: number): boolean {
  const m = /^(\d+)\.(\d+)/.exec(os.release());
  if (!m) return false;
  return Number(m[1]) > major || (Number(m[1]) === major && Number(m[2]) >= minor);
}

/** IPV6_FREEBIND can be set on an IPv6 socket (kernel 4.15+) */
function ipv6Freebind(): boolean {
  const n = native();
  let s = -1;
  try {
    s = n.socket(10 /* AF_INET6 */, 2 /* SOCK_DGRAM */ | 0o2000000, 0);
    n.setsockopt(s, 41 /* SOL_IPV6 */, 78 /* IPV6_FREEBIND */, 1);
    return true;
  } catch {
    return false;
  } finally {
    if (s >= 0) n.close(s);
  }
}

/** fdinfo of a file of ours shows `key:` */
function fdinfoShows(key: RegExp): boolean {
  const file = path.join(os.tmpdir(), `.criu-check-${process.pid}`);
  const fd = fs.openSync(file, 'w+');
  try {
    return key.test(fs.readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8'));
  } catch {
    return false;
  } finally {
    fs.closeSync(fd);
    fs.rmSync(file, { force: true });
  }
}

/**
 * CRIU's aio_remap probe: a ring of the engine's own moved with mremap must still be its context
 * (the restore makes each context anew and moves its ring to the dumped address).
 */
function aioRemap(): FeatureAnswer {
  const n = native();
  let ctx: bigint;
  try {
    ctx = n.ioSetup(16);
  } catch (e) {
    return no(`no AIO contexts here (${(e as Error).message})`);
  }
  try {
    const at = ctx.toString(16) + '-';
    const line = fs.readFileSync('/proc/self/maps', 'utf8').split('\n').find((l) => l.startsWith(at));
    if (!line || !line.includes('/[aio]')) return no('the new context has no ring at its address');
    const [lo, hi] = line.split(' ')[0].split('-').map((x) => BigInt('0x' + x));
    const len = hi - lo;
    const to = n.mmap(0, len, 3 /* PROT_READ | PROT_WRITE */, 0x22 /* MAP_PRIVATE | MAP_ANONYMOUS */, -1, 0);
    try {
      ctx = n.mremap(ctx, len, len, 3 /* MREMAP_MAYMOVE | MREMAP_FIXED */, to);
    } catch (e) {
      n.munmap(to, len);
      return no(`an AIO ring cannot be moved (${(e as Error).message})`);
    }
    n.ioGetevents(ctx, 0, 1);
    return yes('AIO rings are dumped with their completed events and made again at restore (io_setup, then mremap to the dumped address)');
  } catch (e) {
    return no(`a moved AIO ring is no longer its context (${(e as Error).message})`);
  } finally {
    try {
      n.ioDestroy(ctx);
    } catch {
      /* already gone */
    }
  }
}

/**
 * CRIU's probe: TCP repair mode can be turned on for a connection shut down for writing (kernel
 * 4.11+); the engine then dumps and restores connections in every half-closed state.
 */
function tcpHalfClosed(): FeatureAnswer {
  const n = native();
  const fds: number[] = [];
  const sock = () => {
    const fd = n.socket(2 /* AF_INET */, 1 /* SOCK_STREAM */ | 0o2000000, 0);
    fds.push(fd);
    return fd;
  };
  try {
    const srv = sock();
    const any = Buffer.alloc(16);
    any.writeUInt16LE(2, 0);
    any.writeUInt32BE(0x7f000001, 4);
    n.sockBind(srv, any);
    n.listen(srv, 1);
    const cli = sock();
    n.sockConnect(cli, n.sockName(srv));
    n.shutdown(cli, 1 /* SHUT_WR: FIN_WAIT */);
    n.setsockopt(cli, 6 /* SOL_TCP */, 19 /* TCP_REPAIR */, 1);
    return yes('connections in half-closed states (FIN_WAIT, CLOSE_WAIT, LAST_ACK, CLOSING), closed ones and ones still connecting are dumped and restored with TCP repair');
  } catch (e) {
    return no(`TCP_REPAIR cannot be turned on for a half-closed connection here (${(e as Error).message})`);
  } finally {
    for (const fd of fds) n.close(fd);
  }
}

/** CRIU's answer: an iptables-save of the legacy (x_tables) kind runs here, for IPv4 and IPv6. */
function iptLegacy(): FeatureAnswer {
  const legacy = (cmd: string) => {
    const r = spawnSync(cmd, ['--version'], { encoding: 'utf8' });
    return !r.error && r.status === 0 && !/nf_tables/.test(r.stdout);
  };
  for (const [plain, old] of [['iptables-save', 'iptables-legacy-save'], ['ip6tables-save', 'ip6tables-legacy-save']])
    if (!legacy(plain) && !legacy(old)) return no(`neither ${plain} nor ${old} uses the legacy iptables API here`);
  return yes('legacy iptables is here; connections are locked with iptables rules with --network-lock iptables');
}

const NS = 'namespaces are not handled by this engine';
const NET = 'network namespaces, TCP repair and network locking are not handled by this engine';

const FEATURES: [string, () => FeatureAnswer][] = [
  ['mnt_id', () => (fdinfoShows(/^mnt_id:/m) ? yes('fdinfo shows mnt_id') : no('fdinfo has no mnt_id'))],
  ['mem_dirty_track', () => no('pre-dump and --track-mem are not implemented (this kernel has no soft-dirty bits)')],
  ['aio_remap', aioRemap],
  ['timerfd', () => yes('timerfds are dumped and restored with their ticks')],
  ['tun', () => no(NET)],
  ['tun_ns', () => no(NET)],
  ['userns', () => no(NS)],
  ['fdinfo_lock', () => (kernelAtLeast(4, 1) ? yes('file locks are read from fdinfo and restored') : no('the kernel is older than 4.1'))],
  ['seccomp_suspend', () => yes('PTRACE_O_SUSPEND_SECCOMP is used while the tree is traced')],
  ['seccomp_filters', () => yes('seccomp filters are read with PTRACE_SECCOMP_GET_FILTER and restored last')],
  ['loginuid', () => (fs.existsSync('/proc/self/loginuid') ? yes('loginuid is dumped and restored') : no('no /proc/PID/loginuid (no audit)'))],
  ['cgroupns', () => no(NS)],
  ['autofs', () => no('autofs mounts are not handled')],
  ['tcp_half_closed', tcpHalfClosed],
  ['compat_cr', () => no('32-bit (compat) tasks are not handled')],
  ['uffd', () => no('lazy pages are not implemented')],
  ['uffd-noncoop', () => no('lazy pages are not implemented')],
  ['can_map_vdso', () => yes('the vDSO block is moved to its dumped place at restore')],
  ['sk_ns', () => no(NET)],
  ['sk_unix_file', () => yes('a bound unix socket\'s file is found with SIOCUNIXFILE')],
  ['net_diag_raw', () => yes('raw sockets are dumped (their state read from /proc/net/raw and raw6)')],
  ['nsid', () => no(NS)],
  ['link_nsid', () => no(NS)],
  ['kcmp_epoll', () => yes('epoll watches are matched to their files with KCMP_EPOLL_TFD, also when the fd number they were added with holds another file now')],
  ['timens', () => no(NS)],
  ['external_net_ns', () => no(NS)],
  ['clone3_set_tid', () => (kernelAtLeast(5, 5) ? yes('tasks are restored with their PIDs through clone3(set_tid)') : no('the kernel is older than 5.5'))],
  ['newifindex', () => no(NET)],
  ['nftables', () => no(NET)],
  ['has_ipt_legacy', iptLegacy],
  ['pidfd_store', () => no('the pidfd store is not implemented')],
  ['ns_pid', () => no(NS)],
  ['apparmor_stacking', () => no('LSM profiles are not handled')],
  ['network_lock_nftables', () => (hasNft() ? yes('established connections are locked with an nftables table during the dump, and until the restore when a peer is outside the tree') : no('no nft command'))],
  ['sockopt_buf_lock', () => yes('socket buffer locks (SO_BUF_LOCK) are dumped and restored on inet and unix sockets')],
  ['memfd_hugetlb', () => (internalDevs().size ? yes('hugetlb memfds and MAP_HUGETLB memory are dumped and restored with their page size') : no('no hugetlb memfd can be made here'))],
  ['move_mount_set_group', () => no(NS)],
  ['openat2', () => no('not used by this engine')],
  ['get_rseq_conf', () => yes('rseq registrations are read with PTRACE_GET_RSEQ_CONFIGURATION')],
  ['ipv6_freebind', () => (ipv6Freebind() ? yes('IPV6_FREEBIND is dumped and restored on IPv6 sockets') : no('the kernel has no IPV6_FREEBIND'))],
  ['pagemap_scan', () => (kernelAtLeast(6, 7) ? yes('the kernel has PAGEMAP_SCAN') : no('the kernel is older than 6.7'))],
  ['timer_cr_ids', () => (kernelAtLeast(6, 10) ? yes('POSIX timers are restored with their ids (PR_TIMER_CREATE_RESTORE_IDS)') : no('the kernel is older than 6.10'))],
  ['overlayfs_maps', () => no(NS)],
  ['breakpoints', () => no('hardware breakpoints (debug registers) are not dumped')],
  ['pagemap_scan_guard_pages', () => no('guard regions (MADV_GUARD_INSTALL) are not dumped')],
];

function hasNft(): boolean {
  return spawnSync('nft', ['--version'], { encoding: 'utf8' }).status === 0;
}

export function featureNames(): string[] {
  return FEATURES.map(([n]) => n);
}

export function checkFeature(name: string): FeatureAnswer | undefined {
  const f = FEATURES.find(([n]) => n === name);
  if (!f) return undefined;
  try {
    return f[1]();
  } catch (e) {
    return no(`probe failed: ${(e as Error).message}`);
  }
}

/** `criu check` without --feature: what this engine needs from the machine. */
export function basicChecks(): string[] {
  const problems: string[] = [];
  if (process.getuid?.() !== 0) problems.push('must run as root (ptrace, process_vm_readv, clone3 with set_tid)');
  if (os.arch() !== 'x64') problems.push(`architecture ${os.arch()}: only x86_64 is supported`);
  try {
    native();
  } catch (e) {
    problems.push(`the native addon does not load: ${(e as Error).message}`);
  }
  try {
    const scope = Number(fs.readFileSync('/proc/sys/kernel/yama/ptrace_scope', 'utf8'));
    if (scope >= 3) problems.push('ptrace is disabled (kernel.yama.ptrace_scope = 3)');
  } catch {
    /* no Yama */
  }
  if (!kernelAtLeast(5, 5)) problems.push('the kernel is older than 5.5 (no clone3 set_tid)');
  return problems;
}
