// One task: core (registers, signals, creds, timers), fds and files, sockets, VMAs with
// resident pages. Tab switches; Enter on a register, fd or VMA follows it.
import * as React from 'react';
import { Box, Text } from '../ink';
import { ListScreen, ListState, ViewProps, Row, TaskTab, pad, tone, size } from '../ui';
import { taskFds, taskVmas, taskSockets, residentPages, processes, stateName } from '../data';
import { memorySource } from '../hexmodel';
import type { ImageSet } from '../../images/imageset';
import type { Msg } from '../../images/codec';

const TABS: TaskTab[] = ['core', 'fds', 'sockets', 'vmas'];

export interface TaskState {
  tab?: TaskTab;
  lists?: Partial<Record<TaskTab, ListState>>;
}

interface CoreRow extends Row {
  addr?: bigint;
}

const hx = (v: unknown): string => '0x' + BigInt((v as number | bigint) ?? 0).toString(16);

function caps(words: unknown): string {
  const w = (words as number[] | undefined) ?? [];
  let v = 0n;
  for (let i = w.length - 1; i >= 0; i--) v = (v << 32n) | BigInt(w[i] >>> 0);
  return '0x' + v.toString(16);
}

const SIGNALS = ['', 'HUP', 'INT', 'QUIT', 'ILL', 'TRAP', 'ABRT', 'BUS', 'FPE', 'KILL', 'USR1', 'SEGV', 'USR2', 'PIPE', 'ALRM', 'TERM', 'STKFLT', 'CHLD', 'CONT', 'STOP', 'TSTP', 'TTIN', 'TTOU', 'URG', 'XCPU', 'XFSZ', 'VTALRM', 'PROF', 'WINCH', 'IO', 'PWR', 'SYS'];

function itimer(t: Msg | undefined): string {
  if (!t) return '-';
  const v = Number(t.vsec) + Number(t.vusec) / 1e6;
  const i = Number(t.isec) + Number(t.iusec) / 1e6;
  return v || i ? `${v}s every ${i}s` : 'off';
}

/** The core tab's lines; registers that point into a mapping can be followed. */
export function coreLines(set: ImageSet, pid: number): CoreRow[] {
  const out: CoreRow[] = [];
  let core: Msg;
  try {
    core = set.core(pid);
  } catch (e) {
    return [{ text: (e as Error).message, tone: 'error' }];
  }
  const tc: Msg = core.tc ?? {};
  const th: Msg = core.thread_core ?? {};
  let where: ((a: bigint) => string) | undefined;
  try {
    const src = memorySource(() => set.memory(pid), pid);
    where = (a) => src.regionAt(a)?.label ?? '';
  } catch { /* no mm: registers are not followed */ }
  out.push({ text: `task ${pid}  ${tc.comm ?? ''}  ${core.mtype ?? ''}  state ${stateName(tc.task_state !== undefined ? Number(tc.task_state) : undefined)}  exit ${tc.exit_code ?? '-'}`, tone: 'header' });
  out.push({ text: `  personality ${hx(tc.personality)}  flags ${hx(tc.flags)}  oom_score_adj ${tc.oom_score_adj ?? '-'}  loginuid ${tc.loginuid ?? '-'}` });
  out.push({ text: `  sched nice ${th.sched_nice ?? '-'} policy ${th.sched_policy ?? '-'}  child_subreaper ${tc.child_subreaper ?? false}` });
  const cr: Msg | undefined = th.creds;
  out.push({ text: 'credentials', tone: 'header' });
  if (cr) {
    out.push({ text: `  uid ${cr.uid} gid ${cr.gid}  euid ${cr.euid} egid ${cr.egid}  suid ${cr.suid} sgid ${cr.sgid}  fsuid ${cr.fsuid} fsgid ${cr.fsgid}` });
    out.push({ text: `  caps eff ${caps(cr.cap_eff)} prm ${caps(cr.cap_prm)} inh ${caps(cr.cap_inh)} bnd ${caps(cr.cap_bnd)} amb ${caps(cr.cap_amb)}  secbits ${cr.secbits}` });
    if (cr.groups?.length) out.push({ text: `  groups ${cr.groups.join(' ')}` });
  } else out.push({ text: '  (no creds in this core image)', tone: 'dim' });
  out.push({ text: 'signals', tone: 'header' });
  const blk = BigInt(tc.blk_sigset ?? th.blk_sigset ?? 0);
  const blocked = SIGNALS.filter((_, i) => i && blk & (1n << BigInt(i - 1)));
  out.push({ text: `  blocked ${hx(blk)}${blocked.length ? ` (${blocked.join(' ')})` : ''}` });
  out.push({ text: `  pending: ${th.signals_p?.signals?.length ?? 0} for the thread, ${tc.signals_s?.signals?.length ?? 0} shared` });
  const handlers = (tc.sigactions ?? []).map((s: Msg, i: number) => ({ s, n: i + 1 })).filter(({ s }: { s: Msg }) => BigInt(s.sigaction) > 1n);
  const ignored = (tc.sigactions ?? []).filter((s: Msg) => BigInt(s.sigaction) === 1n).length;
  out.push({ text: `  handlers: ${handlers.length} set, ${ignored} ignored` });
  for (const { s, n } of handlers) out.push({ text: `    SIG${SIGNALS[n] ?? n} -> ${hx(s.sigaction)} ${where?.(BigInt(s.sigaction)) ?? ''}  flags ${hx(s.flags)}`, addr: BigInt(s.sigaction) });
  out.push({ text: 'timers', tone: 'header' });
  const tm: Msg | undefined = tc.timers;
  out.push({ text: `  itimers real ${itimer(tm?.real)}  virt ${itimer(tm?.virt)}  prof ${itimer(tm?.prof)}` });
  const posix: Msg[] = tm?.posix ?? [];
  out.push({ text: `  posix timers ${posix.length}` });
  for (const t of posix) out.push({ text: `    id ${t.it_id} clock ${t.clock_id} signal ${t.si_signo} value ${t.vsec}.${String(t.vnsec).padStart(9, '0')}s interval ${t.isec}.${String(t.insec).padStart(9, '0')}s overrun ${t.overrun}` });
  const task = set.task(pid);
  const tids = task?.threads.length ? task.threads : [pid];
  for (const tid of tids) {
    let c: Msg;
    try {
      c = tid === pid ? core : set.core(tid);
    } catch (e) {
      out.push({ text: `thread ${tid}: ${(e as Error).message}`, tone: 'error' });
      continue;
    }
    const regs: Msg | undefined = c.thread_info?.gpregs ?? c.ti_aarch64?.gpregs ?? c.ti_arm?.gpregs;
    out.push({ text: `registers of thread ${tid}${tid === pid ? ' (leader)' : ''}`, tone: 'header' });
    if (!regs) {
      out.push({ text: '  (no general registers for this architecture in the TUI yet)', tone: 'dim' });
      continue;
    }
    for (const [k, v] of Object.entries(regs)) {
      if (typeof v !== 'number' && typeof v !== 'bigint') {
        if (Array.isArray(v)) out.push({ text: `  ${pad(k, 8)} [${v.length} values]` });
        continue;
      }
      const a = BigInt(v);
      const w = a ? where?.(a) : '';
      out.push({ text: `  ${pad(k, 8)} 0x${a.toString(16).padStart(16, '0')}${w ? '  -> ' + w : ''}`, addr: w ? a : undefined, tone: w ? 'accent' : undefined });
    }
  }
  return out;
}

const coreCache = new WeakMap<ImageSet, Map<number, CoreRow[]>>();

function cachedCoreLines(set: ImageSet, pid: number): CoreRow[] {
  let m = coreCache.get(set);
  if (!m) coreCache.set(set, (m = new Map()));
  let l = m.get(pid);
  if (!l) m.set(pid, (l = coreLines(set, pid)));
  return l;
}

export function TaskView(p: ViewProps<TaskState> & { pid: number }): React.ReactElement {
  const { ctx, pid } = p;
  const set = ctx.set;
  const tab = p.state.tab ?? 'core';
  const ls = p.state.lists?.[tab] ?? {};
  const setList = (patch: Partial<ListState>) => p.setState({ lists: { ...p.state.lists, [tab]: { ...ls, ...patch } } });
  const ps = processes(set).find((r) => r.pid === pid);
  const tabsLine = (
    <Box>
      <Text wrap="truncate">
        {TABS.map((t) => (t === tab ? `[${t}]` : ` ${t} `)).join(' ')}
        {`   task ${pid} ${ps?.comm ?? ''}`}
      </Text>
    </Box>
  );
  const common = {
    ...p,
    state: ls,
    setState: setList,
    context: 'task' as const,
    above: tabsLine,
    aboveHeight: 1,
    onKey: (a: string, i: number): boolean => {
      if (a === 'tabNext' || a === 'tabPrev') {
        const j = (TABS.indexOf(tab) + (a === 'tabNext' ? 1 : TABS.length - 1)) % TABS.length;
        p.setState({ tab: TABS[j] });
        return true;
      }
      if (a === 'memory') {
        ctx.open({ v: 'mem', pid });
        return true;
      }
      void i;
      return false;
    },
  };
  if (tab === 'core') {
    const lines = cachedCoreLines(set, pid);
    return (
      <ListScreen
        {...common}
        count={lines.length}
        rowsKey={lines}
        row={(i) => lines[i]}
        open={(i) => {
          const a = lines[i].addr;
          if (a !== undefined) ctx.open({ v: 'mem', pid, addr: a });
          else ctx.open({ v: 'image', name: `core-${pid}.img` });
        }}
      />
    );
  }
  if (tab === 'fds') {
    const f = taskFds(set, pid);
    return (
      <ListScreen
        {...common}
        header={`${'FD'.padStart(5)} ${pad('TYPE', 10)} ${'ID'.padStart(6)}  FILE`}
        count={f.fds.length}
        rowsKey={f}
        empty={f.note ?? 'no files'}
        row={(i) => {
          const r = f.fds[i];
          return { text: `${String(r.fd).padStart(5)} ${pad(r.type, 10)} ${String(r.id).padStart(6)}  ${r.desc}` };
        }}
        open={(i) => {
          const r = f.fds[i];
          const files = set.tryImage('files.img');
          const at = files?.entries.findIndex((e) => Number(e.msg.id) === r.id) ?? -1;
          if (at >= 0) ctx.open({ v: 'image', name: 'files.img', entry: at });
          else ctx.status(`file id ${r.id} is not in files.img`);
        }}
      />
    );
  }
  if (tab === 'sockets') {
    const sk = taskSockets(set, pid);
    return (
      <ListScreen
        {...common}
        header={`${'FD'.padStart(5)} ${pad('TYPE', 9)} SOCKET`}
        count={sk.length}
        rowsKey={sk}
        empty="no sockets"
        row={(i) => ({ text: `${String(sk[i].fd).padStart(5)} ${pad(sk[i].type, 9)} ${sk[i].summary}` })}
        open={(i) => {
          const files = set.tryImage('files.img');
          const at = files?.entries.findIndex((e) => Number(e.msg.id) === sk[i].id) ?? -1;
          if (at >= 0) ctx.open({ v: 'image', name: 'files.img', entry: at });
        }}
      />
    );
  }
  const m = taskVmas(set, pid);
  const vm = m.vmas;
  return (
    <ListScreen
      {...common}
      header={`${pad('START', 12)} ${pad('END', 12)} PROT ${'SIZE'.padStart(9)} ${'RSS'.padStart(6)}  MAPPING`}
      count={vm.length}
      rowsKey={vm}
      empty={m.note ?? 'no VMAs'}
      row={(i) => {
        const v = vm[i];
        const rss = residentPages(set, pid, v.start, v.end);
        return {
          text: `${v.start.toString(16).padStart(12, '0')} ${v.end.toString(16).padStart(12, '0')} ${v.prot}  ${size(v.end - v.start).padStart(9)} ${(rss === undefined ? '-' : String(rss)).padStart(6)} ${v.desc}`,
          tone: rss ? undefined : 'dim',
        };
      }}
      open={(i) => ctx.open({ v: 'mem', pid, addr: vm[i].start })}
      below={() => <Text {...tone('dim', ctx.color)} wrap="truncate">{`${vm.length} VMAs  exe ${m.exe ?? '?'}  (RSS: pages the image holds)`}</Text>}
      belowHeight={1}
    />
  );
}
