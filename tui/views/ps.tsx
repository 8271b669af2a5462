// The process tree (psRows): Enter opens a task, m its memory.
import * as React from 'react';
import { ListScreen, ListState, ViewProps, Row, pad } from '../ui';
import { processes, stateName } from '../data';

export function PsView(p: ViewProps<ListState>): React.ReactElement {
  const rows = processes(p.ctx.set);
  const row = (i: number): Row => {
    const r = rows[i];
    const st = stateName(r.state);
    return {
      text: `${String(r.pid).padStart(7)} ${String(r.ppid).padStart(7)} ${String(r.pgid).padStart(7)} ${String(r.sid).padStart(7)} ${pad(st, 8)} ${String(r.threads.length || 1).padStart(3)}  ${'  '.repeat(r.depth)}${r.comm}`,
      tone: st === 'zombie' || st === 'dead' ? 'dim' : undefined,
    };
  };
  return (
    <ListScreen
      {...p}
      context="tree"
      header={`${'PID'.padStart(7)} ${'PPID'.padStart(7)} ${'PGID'.padStart(7)} ${'SID'.padStart(7)} ${pad('STATE', 8)} THR  COMM`}
      count={rows.length}
      rowsKey={rows}
      row={row}
      empty="no pstree.img: no tasks"
      open={(i) => p.ctx.open({ v: 'task', pid: rows[i].pid })}
      onKey={(a, i) => {
        if (a === 'memory' && i >= 0) {
          p.ctx.open({ v: 'mem', pid: rows[i].pid });
          return true;
        }
        return false;
      }}
    />
  );
}
