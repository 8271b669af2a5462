// Diff mode (crit tui A B): the differences between two checkpoints by section (diffSets, the
// same data as crit diff); Enter on a changed memory range shows both sides' bytes, on a field
// the image entry it is in.
import * as React from 'react';
import { Box, Text } from '../ink';
import { ListScreen, ListState, ViewProps, Row, tone, pad, clip, size } from '../ui';
import { diffSets, SetDiff, Change, SECTIONS } from '../../images/query/diff';
import type { ImageSet } from '../../images/imageset';
import { memorySource, HexSource, WIDTH } from '../hexmodel';
import { byteClass } from '../../images/query/hexdump';

export interface DiffState extends ListState {
  closed?: string[];
}

const diffs = new WeakMap<ImageSet, SetDiff | Error>();

export function setDiff(a: ImageSet, b: ImageSet): SetDiff | Error {
  let d = diffs.get(a);
  if (!d) {
    try {
      d = diffSets(a.dir, b.dir, { pageSize: a.pageSize });
    } catch (e) {
      d = e as Error;
    }
    diffs.set(a, d);
  }
  return d;
}

type Item = { section: string; count: number } | { change: Change };

function changeText(c: Change): string {
  const what = c.run
    ? `${c.run.kind === 'differ' ? `${c.run.pages} page${c.run.pages === 1 ? '' : 's'} differ${c.run.bytes !== undefined ? ` (${c.run.bytes} bytes)` : ''}` : `${c.run.kind}: ${c.run.pages} pages${c.run.reason ? ` (${c.run.reason})` : ''}`} at ${c.run.start.toString(16)}..${c.run.end.toString(16)}${c.run.where ? ' ' + c.run.where : ''}`
    : c.op === 'changed' ? `${c.oldText ?? ''} -> ${c.newText ?? ''}` : c.op === 'added' ? `+ ${c.newText ?? ''}` : `- ${c.oldText ?? ''}`;
  const sign = c.op === 'added' ? '+' : c.op === 'removed' ? '-' : '~';
  return `  ${sign} ${c.run ? `task ${c.run.pid}` : c.path}${c.label && !c.run ? `  [${c.label}]` : ''}  ${what}`;
}

export function DiffView(p: ViewProps<DiffState>): React.ReactElement {
  const { ctx } = p;
  if (!ctx.setB) {
    p.api.current = { context: 'list', onAction: () => false };
    return <Text {...tone('dim', ctx.color)}>Not in diff mode: start with crit tui A B to compare two checkpoints.</Text>;
  }
  const d = setDiff(ctx.set, ctx.setB);
  if (d instanceof Error) {
    p.api.current = { context: 'list', onAction: () => false };
    return <Text {...tone('error', ctx.color)}>{`diff failed: ${d.message}`}</Text>;
  }
  const closed = new Set(p.state.closed ?? []);
  const items: Item[] = [];
  for (const s of SECTIONS) {
    const cs = d.changes.filter((c) => c.section === s);
    if (!cs.length) continue;
    items.push({ section: s, count: cs.length });
    if (!closed.has(s)) for (const c of cs) items.push({ change: c });
  }
  const row = (i: number): Row => {
    const it = items[i];
    if ('section' in it) return { text: `${closed.has(it.section) ? '▸' : '▾'} ${it.section} (${it.count})`, tone: 'header' };
    const c = it.change;
    return { text: changeText(c), tone: c.op === 'added' ? 'ok' : c.op === 'removed' ? 'error' : c.run ? 'warn' : undefined };
  };
  const toggle = (s: string, close?: boolean) => {
    const now = close ?? !closed.has(s);
    const next = new Set(closed);
    if (now) next.add(s);
    else next.delete(s);
    p.setState({ closed: [...next] });
  };
  const above = (
    <Text wrap="truncate" {...tone('accent', ctx.color)}>
      {clip(`${d.changes.length} differences, ${d.comparedPages} pages compared  A ${d.a}  B ${d.b}`, p.width)}
    </Text>
  );
  return (
    <ListScreen
      {...p}
      count={items.length}
      rowsKey={items}
      row={row}
      above={above}
      aboveHeight={1}
      empty="the two checkpoints are the same"
      open={(i) => {
        const it = items[i];
        if ('section' in it) return toggle(it.section);
        const c = it.change;
        if (c.run) return ctx.open({ v: 'memdiff', pid: c.run.pid, addr: c.run.first ?? c.run.start });
        const m = /^([^[\s]+)\[(\d+)\]/.exec(c.path);
        if (m && ctx.set.has(m[1])) ctx.open({ v: 'image', name: m[1], entry: Number(m[2]) });
        else ctx.status(c.path);
      }}
      onKey={(a, i) => {
        const it = items[i];
        if (!it || !('section' in it)) return false;
        if (a === 'left' || a === 'right') {
          toggle(it.section, a === 'left');
          return true;
        }
        return false;
      }}
    />
  );
}

export interface MemDiffState {
  addr?: bigint;
}

function sourceOf(set: ImageSet, pid: number): HexSource | Error {
  try {
    return memorySource(() => set.memory(pid), pid);
  } catch (e) {
    return e as Error;
  }
}

/** Both sides' bytes of one task from the same address; bytes that differ are marked. */
export function MemDiffView(p: ViewProps<MemDiffState> & { pid: number; addr: bigint }): React.ReactElement {
  const { ctx, pid } = p;
  const W = BigInt(WIDTH);
  const a0 = p.state.addr ?? p.addr - (p.addr % W);
  const rowsEach = Math.max(2, Math.floor((p.height - 3) / 2));
  const A = sourceOf(ctx.set, pid);
  const B = ctx.setB ? sourceOf(ctx.setB, pid) : new Error('not in diff mode');
  const len = rowsEach * WIDTH;
  const bytesOf = (s: HexSource | Error): (number | undefined)[] => {
    const out: (number | undefined)[] = new Array(len).fill(undefined);
    if (s instanceof Error) return out;
    for (const sp of s.read(a0, len)) if (sp.data) for (let i = 0; i < sp.len; i++) out[Number(sp.addr - a0) + i] = sp.data[i];
    return out;
  };
  const ba = bytesOf(A);
  const bb = bytesOf(B);
  p.api.current = {
    context: 'memory',
    onAction(a) {
      const step = a === 'down' ? W : a === 'up' ? -W : a === 'pageDown' ? BigInt(len) : a === 'pageUp' ? -BigInt(len) : undefined;
      if (step !== undefined) {
        const n = a0 + step;
        p.setState({ addr: n < 0n ? 0n : n });
        return true;
      }
      return false;
    },
  };
  const pane = (label: string, mine: (number | undefined)[], other: (number | undefined)[], src: HexSource | Error) => {
    const lines: React.ReactElement[] = [<Text key="t" bold wrap="truncate">{clip(`${label}: ${src instanceof Error ? src.message : src.regionAt(a0)?.label ?? 'unmapped'}`, p.width)}</Text>];
    for (let r = 0; r < rowsEach; r++) {
      const segs: React.ReactElement[] = [];
      for (let i = 0; i < WIDTH; i++) {
        const k = r * WIDTH + i;
        const b = mine[k];
        const differs = b !== other[k];
        segs.push(
          <Text key={i} inverse={differs && b !== undefined} {...tone(b === undefined ? 'absent' : differs ? 'match' : byteClass(b), ctx.color)}>
            {(b === undefined ? '--' : b.toString(16).padStart(2, '0')) + (i === 7 ? '  ' : ' ')}
          </Text>,
        );
      }
      lines.push(<Text key={r} wrap="truncate"><Text {...tone('dim', ctx.color)}>{(a0 + BigInt(r * WIDTH)).toString(16).padStart(12, '0') + ' '}</Text>{segs}</Text>);
    }
    return lines;
  };
  const nd = ba.reduce((n: number, b, i) => n + (b !== bb[i] ? 1 : 0), 0);
  return (
    <Box flexDirection="column" width={p.width} height={p.height}>
      <Text wrap="truncate" {...tone('accent', ctx.color)}>{pad(`task ${pid} @${a0.toString(16)}: ${nd} of ${len} bytes differ here (${size(len)} shown; j/k, PgUp/PgDn)`, p.width)}</Text>
      {pane('A', ba, bb, A)}
      {pane('B', bb, ba, B)}
    </Box>
  );
}
