// Shared pieces of the TUI: the view contract, the theme (NO_COLOR aware), a virtualised list
// that renders only the rows on screen, and small formatting helpers.
import * as React from 'react';
import { Box, Text } from './ink';
import type { ImageSet } from '../images/imageset';
import type { Action, Context } from './keys';

export type Spec =
  | { v: 'overview' }
  | { v: 'ps' }
  | { v: 'task'; pid: number; tab?: TaskTab }
  | { v: 'mem'; pid: number; addr?: bigint }
  | { v: 'hexfile'; file: string; offset: number; size: number; title: string }
  | { v: 'gpu' }
  | { v: 'image'; name: string; entry?: number }
  | { v: 'diff' }
  | { v: 'check' }
  | { v: 'memdiff'; pid: number; addr: bigint }
  | { v: 'help'; context: Context };

export type TaskTab = 'core' | 'fds' | 'sockets' | 'vmas';

export interface Ctx {
  set: ImageSet;
  /** the second set in diff mode */
  setB?: ImageSet;
  color: boolean;
  open(spec: Spec): void;
  back(): void;
  status(msg: string, error?: boolean): void;
  /** ask for a line of text (goto address, edit value) */
  ask(label: string, onSubmit: (text: string) => void, initial?: string): void;
}

/** What the active view tells the app: its key context, and how it takes actions. */
export interface ViewApi {
  context: Context;
  /** true when handled */
  onAction(a: Action): boolean;
  /** `/` submitted */
  onSearch?(text: string): void;
  /** what `/` asks for */
  searchLabel?: string;
}

export interface ViewProps<S = Record<string, unknown>> {
  ctx: Ctx;
  state: S;
  setState(patch: Partial<S>): void;
  width: number;
  height: number;
  api: { current: ViewApi | null };
}

export type Tone = 'accent' | 'dim' | 'error' | 'warn' | 'ok' | 'nul' | 'printable' | 'whitespace' | 'other' | 'absent' | 'match' | 'header';

const COLORS: Record<Tone, { color?: string; dim?: boolean; bold?: boolean }> = {
  accent: { color: 'cyan' },
  dim: { dim: true },
  error: { color: 'red', bold: true },
  warn: { color: 'yellow' },
  ok: { color: 'green' },
  // hexyl's byte classes
  nul: { color: 'gray', dim: true },
  printable: { color: 'cyan' },
  whitespace: { color: 'green' },
  other: { color: 'yellow' },
  absent: { color: 'gray', dim: true },
  match: { color: 'magenta', bold: true },
  header: { bold: true },
};

/** Text props for a tone; without colour only weight survives (NO_COLOR). */
export function tone(t: Tone | undefined, color: boolean): { color?: string; dimColor?: boolean; bold?: boolean } {
  if (!t) return {};
  const c = COLORS[t];
  if (!color) return { bold: c.bold };
  return { color: c.color, dimColor: c.dim, bold: c.bold };
}

export function noColor(env: NodeJS.ProcessEnv = process.env): boolean {
  return env.NO_COLOR !== undefined && env.NO_COLOR !== '';
}

export function clip(s: string, w: number): string {
  if (w <= 0) return '';
  return s.length > w ? s.slice(0, Math.max(0, w - 1)) + '…' : s;
}

export function pad(s: string, w: number): string {
  return s.length >= w ? clip(s, w) : s + ' '.repeat(w - s.length);
}

export function size(n: number | bigint): string {
  const v = Number(n);
  if (v < 1024) return `${v} B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let x = v / 1024;
  let i = 0;
  while (x >= 1024 && i < units.length - 1) { x /= 1024; i++; }
  return `${x < 10 ? x.toFixed(1) : Math.round(x)} ${units[i]}`;
}

/** Scroll position keeping the cursor on screen. */
export function scrollTo(cursor: number, top: number, height: number, count: number): number {
  let t = top;
  if (cursor < t) t = cursor;
  if (cursor >= t + height) t = cursor - height + 1;
  return Math.max(0, Math.min(t, Math.max(0, count - height)));
}

/** Cursor motion shared by every list; undefined when the action is not a motion. */
export function listMotion(a: Action, cursor: number, count: number, height: number): number | undefined {
  const last = Math.max(0, count - 1);
  switch (a) {
    case 'up': return Math.max(0, cursor - 1);
    case 'down': return Math.min(last, cursor + 1);
    case 'pageUp': return Math.max(0, cursor - height);
    case 'pageDown': return Math.min(last, cursor + height);
    case 'top': return 0;
    case 'bottom': return last;
    default: return undefined;
  }
}

export interface Row {
  text: string;
  tone?: Tone;
}

/** A virtualised list: only rows [top, top+height) are made and rendered. */
export function VList(props: { count: number; cursor: number; top: number; height: number; width: number; row: (i: number) => Row; color: boolean; header?: string; empty?: string }): React.ReactElement {
  const { count, cursor, top, height, width, row, color } = props;
  const lines: React.ReactElement[] = [];
  const h = props.header !== undefined ? height - 1 : height;
  if (props.header !== undefined) lines.push(<Text key="h" bold wrap="truncate">{pad(props.header, width)}</Text>);
  if (!count && props.empty) lines.push(<Text key="e" {...tone('dim', color)}>{props.empty}</Text>);
  for (let i = top; i < Math.min(count, top + h); i++) {
    const r = row(i);
    const sel = i === cursor;
    lines.push(
      <Text key={i} inverse={sel} {...(sel ? {} : tone(r.tone, color))} wrap="truncate">
        {pad(r.text, width)}
      </Text>,
    );
  }
  return <Box flexDirection="column" height={height} width={width}>{lines}</Box>;
}

/** Lines of text that scroll (help, core registers). */
export function TextLines(props: { lines: Row[]; top: number; height: number; width: number; color: boolean; cursor?: number }): React.ReactElement {
  const out: React.ReactElement[] = [];
  for (let i = props.top; i < Math.min(props.lines.length, props.top + props.height); i++) {
    const r = props.lines[i];
    const sel = props.cursor === i;
    out.push(<Text key={i} inverse={sel} {...(sel ? {} : tone(r.tone, props.color))} wrap="truncate">{pad(r.text, props.width)}</Text>);
  }
  return <Box flexDirection="column" height={props.height} width={props.width}>{out}</Box>;
}

export interface ListState {
  cursor?: number;
  top?: number;
  filter?: string;
}

export interface ListScreenProps extends ViewProps<ListState> {
  context?: Context;
  header?: string;
  count: number;
  /** identity of the rows (the filter is recomputed when it changes) */
  rowsKey?: unknown;
  row(i: number): Row;
  open?(i: number): void;
  /** view keys beyond motion/open/filter; i is the selected row */
  onKey?(a: Action, i: number): boolean;
  above?: React.ReactElement;
  aboveHeight?: number;
  below?: (i: number) => React.ReactElement | null;
  belowHeight?: number;
  empty?: string;
}

/** A filterable list screen: `/` filters, Enter opens, Esc clears the filter. */
export function ListScreen(p: ListScreenProps): React.ReactElement {
  const { state, setState, count, row } = p;
  const filter = state.filter;
  const index = React.useMemo(() => {
    if (!filter) return undefined;
    const q = filter.toLowerCase();
    const out: number[] = [];
    for (let i = 0; i < count; i++) if (row(i).text.toLowerCase().includes(q)) out.push(i);
    return out;
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [filter, count, p.rowsKey]);
  const n = index ? index.length : count;
  const real = (i: number) => (index ? index[i] : i);
  const listH = p.height - (p.aboveHeight ?? 0) - (p.belowHeight ?? 0) - (filter ? 1 : 0);
  const bodyH = listH - (p.header !== undefined ? 1 : 0);
  const cursor = Math.min(state.cursor ?? 0, Math.max(0, n - 1));
  const top = scrollTo(cursor, state.top ?? 0, bodyH, n);
  p.api.current = {
    context: p.context ?? 'list',
    searchLabel: 'filter',
    onAction(a) {
      const m = listMotion(a, cursor, n, bodyH);
      if (m !== undefined) {
        setState({ cursor: m, top: scrollTo(m, top, bodyH, n) });
        return true;
      }
      if (a === 'next' || a === 'prev') {
        const c = a === 'next' ? Math.min(n - 1, cursor + 1) : Math.max(0, cursor - 1);
        setState({ cursor: c, top: scrollTo(c, top, bodyH, n) });
        return true;
      }
      if (a === 'back' && filter) {
        setState({ filter: undefined, cursor: real(cursor), top: 0 });
        return true;
      }
      if (a === 'open' && p.open && n) {
        p.open(real(cursor));
        return true;
      }
      return p.onKey ? p.onKey(a, n ? real(cursor) : -1) : false;
    },
    onSearch(text) {
      setState({ filter: text || undefined, cursor: 0, top: 0 });
    },
  };
  return (
    <Box flexDirection="column" width={p.width} height={p.height}>
      {p.above}
      {filter ? <Text {...tone('warn', p.ctx.color)} wrap="truncate">{`filter /${filter}: ${n} of ${count} (esc clears)`}</Text> : null}
      <VList count={n} cursor={cursor} top={top} height={listH} width={p.width} row={(i) => row(real(i))} color={p.ctx.color} header={p.header} empty={p.empty ?? (filter ? 'nothing matches' : 'empty')} />
      {p.below && p.belowHeight ? <Box height={p.belowHeight} flexDirection="column">{p.below(n ? real(cursor) : -1)}</Box> : null}
    </Box>
  );
}
