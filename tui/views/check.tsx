// crit check's problems (images/query/check.ts): Enter opens the image at the damaged entry.
import * as React from 'react';
import { ListScreen, ListState, ViewProps, Row } from '../ui';
import { checkReport } from '../data';

export function CheckView(p: ViewProps<ListState>): React.ReactElement {
  const r = checkReport(p.ctx.set);
  const problems = r && !(r instanceof Error) ? r.problems : [];
  const row = (i: number): Row => {
    const x = problems[i];
    const where = [x.offset !== undefined ? `byte ${x.offset}` : '', x.entry !== undefined ? `entry ${x.entry}` : ''].filter(Boolean).join(', ');
    return { text: `${x.severity === 'note' ? 'note ' : 'ERROR'} ${x.file || '.'}${where ? ` (${where})` : ''}: ${x.what}`, tone: x.severity === 'note' ? 'warn' : 'error' };
  };
  return (
    <ListScreen
      {...p}
      header={r instanceof Error ? undefined : `crit check: ${r?.files ?? 0} files read, ${problems.length} findings`}
      count={problems.length}
      rowsKey={problems}
      row={row}
      empty={r instanceof Error ? `check failed: ${r.message}` : 'no problems'}
      open={(i) => {
        const x = problems[i];
        if (x.file && p.ctx.set.has(x.file)) p.ctx.open({ v: 'image', name: x.file, entry: x.entry });
      }}
    />
  );
}
