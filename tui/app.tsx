// The explorer's shell: a breadcrumb of views (Esc goes back), the `:` jump line, the `/`
// filter/search line, `?` help from the key table, and one input handler that turns keys into
// actions (tui/keys.ts) for the view on top.
import * as React from 'react';
import * as path from 'path';
import { Box, Text, useInput, useApp, useStdout, Key } from './ink';
import { actionFor, keyName, hints, helpLines, Context, COMMANDS } from './keys';
import { Ctx, Spec, ViewApi, tone, pad, clip, TextLines, listMotion, scrollTo } from './ui';
import type { ImageSet } from '../images/imageset';
import { processes } from './data';
import { memorySource, fileSource, parseAddress, HexSource } from './hexmodel';
import { OverviewView } from './views/overview';
import { PsView } from './views/ps';
import { TaskView } from './views/task';
import { MemoryView } from './views/memory';
import { GpuView } from './views/gpu';
import { ImageView } from './views/image';
import { DiffView, MemDiffView } from './views/diff';
import { CheckView } from './views/check';

interface Frame {
  id: number;
  spec: Spec;
  state: Record<string, unknown>;
}

interface Prompt {
  kind: 'command' | 'search' | 'ask';
  label: string;
  text: string;
  onSubmit?: (text: string) => void;
}

export interface AppProps {
  set: ImageSet;
  setB?: ImageSet;
  width?: number;
  height?: number;
  color?: boolean;
  /** the first view (tests start anywhere) */
  start?: Spec;
}

let frameIds = 0;

function title(set: ImageSet, s: Spec): string {
  switch (s.v) {
    case 'overview': return path.basename(set.dir);
    case 'ps': return 'processes';
    case 'task': {
      const c = processes(set).find((r) => r.pid === s.pid)?.comm;
      return `${s.pid}${c ? ' ' + c : ''}`;
    }
    case 'mem': return `memory${s.addr !== undefined ? ' @' + s.addr.toString(16) : ''}`;
    case 'hexfile': return s.title.split(' (')[0];
    case 'gpu': return 'gpu';
    case 'image': return s.name + (s.entry !== undefined ? `[${s.entry}]` : '');
    case 'diff': return 'diff';
    case 'check': return 'check';
    case 'memdiff': return `memory ${s.pid} A/B`;
    case 'help': return 'help';
  }
}

function contextOf(s: Spec): Context {
  switch (s.v) {
    case 'ps': return 'tree';
    case 'task': return 'task';
    case 'mem': case 'hexfile': case 'memdiff': return 'memory';
    case 'image': return 'json';
    default: return 'list';
  }
}

/** The pid a command without one refers to: the nearest task in the breadcrumb, else the root task. */
function currentPid(set: ImageSet, stack: Frame[]): number | undefined {
  for (let i = stack.length - 1; i >= 0; i--) {
    const s = stack[i].spec;
    if ('pid' in s && typeof s.pid === 'number') return s.pid;
  }
  return processes(set)[0]?.pid;
}

export function App(props: AppProps): React.ReactElement {
  const { set, setB } = props;
  const app = useApp();
  const { stdout } = useStdout();
  // one line short of the terminal: a frame as tall as the screen makes ink clear it every time
  const [dims, setDims] = React.useState({ w: stdout?.columns || 80, h: (stdout?.rows || 25) - 1 });
  React.useEffect(() => {
    if (!stdout || props.width) return;
    const on = () => setDims({ w: stdout.columns || 80, h: (stdout.rows || 25) - 1 });
    stdout.on('resize', on);
    return () => { stdout.off('resize', on); };
  }, [stdout, props.width]);
  const width = props.width ?? dims.w;
  const height = props.height ?? dims.h;
  const color = props.color ?? true;
  const [stack, setStack] = React.useState<Frame[]>(() => {
    const base: Frame[] = [{ id: frameIds++, spec: setB ? { v: 'diff' } : { v: 'overview' }, state: {} }];
    if (props.start && props.start.v !== base[0].spec.v) base.push({ id: frameIds++, spec: props.start, state: {} });
    return base;
  });
  const [prompt, setPrompt] = React.useState<Prompt | null>(null);
  const [status, setStatus] = React.useState<{ msg: string; error?: boolean } | null>(null);
  const api = React.useRef<ViewApi | null>(null);
  const top = stack[stack.length - 1];

  const open = React.useCallback((spec: Spec) => setStack((s) => [...s, { id: frameIds++, spec, state: {} }]), []);
  const back = React.useCallback(() => setStack((s) => (s.length > 1 ? s.slice(0, -1) : s)), []);
  const ctx: Ctx = {
    set,
    setB,
    color,
    open,
    back,
    status: (msg, error) => setStatus({ msg, error }),
    ask: (label, onSubmit, initial) => putPrompt({ kind: 'ask', label, text: initial ?? '', onSubmit }),
  };
  const setFrameState = (id: number) => (patch: Record<string, unknown>) =>
    setStack((s) => s.map((f) => (f.id === id ? { ...f, state: { ...f.state, ...patch } } : f)));

  const runCommand = (line: string) => {
    const [cmd, ...args] = line.trim().split(/\s+/);
    const pidArg = (x: string | undefined) => (x !== undefined && /^\d+$/.test(x) ? Number(x) : undefined);
    const pid = pidArg(args[0]) ?? currentPid(set, stack);
    const needPid = (f: (p: number) => void) => (pid === undefined ? setStatus({ msg: 'no task in this set', error: true }) : f(pid));
    switch (cmd) {
      case '': return;
      case 'q': case 'quit': return app.exit();
      case 'o': case 'overview': case 'home': return open({ v: 'overview' });
      case 'ps': case 'tree': return open({ v: 'ps' });
      case 'task': case 'core': return needPid((p) => open({ v: 'task', pid: p, tab: 'core' }));
      case 'fd': case 'fds': return needPid((p) => open({ v: 'task', pid: p, tab: 'fds' }));
      case 'sk': case 'sockets': return needPid((p) => open({ v: 'task', pid: p, tab: 'sockets' }));
      case 'mm': case 'vmas': return needPid((p) => open({ v: 'task', pid: p, tab: 'vmas' }));
      case 'mem': case 'x': case 'xray': {
        const addrText = args.length >= 2 ? args[1] : args.length === 1 && pidArg(args[0]) === undefined ? args[0] : args.length === 1 && /^0x/i.test(args[0]) ? args[0] : undefined;
        let addr: bigint | undefined;
        try {
          addr = addrText !== undefined ? parseAddress(addrText) : undefined;
        } catch (e) {
          return setStatus({ msg: (e as Error).message, error: true });
        }
        let p = args.length >= 2 ? pidArg(args[0]) : currentPid(set, stack);
        if (addr !== undefined && args.length < 2) {
          // the task whose VMAs hold the address, preferring the current one
          const holds = (q: number) => { try { return !!set.memory(q).vmaAt(addr!); } catch { return false; } };
          if (p === undefined || !holds(p)) p = processes(set).find((r) => holds(r.pid))?.pid ?? p;
        }
        if (p === undefined) return setStatus({ msg: 'no task in this set', error: true });
        return open({ v: 'mem', pid: p, addr });
      }
      case 'gpu': return open({ v: 'gpu' });
      case 'img': case 'image': case 'show': {
        if (!args[0]) return open({ v: 'overview' });
        const names = set.names();
        const want = args[0];
        const name = names.find((n) => n === want) ?? names.find((n) => n === want + '.img') ?? names.find((n) => n.startsWith(want));
        if (!name) return setStatus({ msg: `no image ${want} in this set`, error: true });
        return open({ v: 'image', name, entry: args[1] !== undefined ? Number(args[1]) : undefined });
      }
      case 'diff': return open({ v: 'diff' });
      case 'check': return open({ v: 'check' });
      case 'help': return open({ v: 'help', context: contextOf(top.spec) });
      default:
        setStatus({ msg: `unknown command :${cmd} (try ${COMMANDS.map((c) => ':' + c.name).join(' ')})`, error: true });
    }
  };

  // the prompt is also kept in a ref so that several keys arriving in one chunk see each other
  const promptRef = React.useRef<Prompt | null>(null);
  promptRef.current = prompt;
  const putPrompt = (p: Prompt | null) => { promptRef.current = p; setPrompt(p); };
  const submit = (p: Prompt, text: string) => {
    putPrompt(null);
    if (p.kind === 'command') runCommand(text);
    else if (p.kind === 'search') api.current?.onSearch?.(text);
    else p.onSubmit?.(text);
  };

  const onKey = (input: string, key: Key) => {
    // a chunk of plain characters (typed ahead, or pasted) is taken one key at a time
    if (input.length > 1 && !key.ctrl && !key.meta && !promptRef.current) {
      for (const ch of input) onKey(ch === '\r' || ch === '\n' ? '' : ch, { ...key, return: ch === '\r' || ch === '\n', shift: /[A-Z]/.test(ch) });
      return;
    }
    const prompt = promptRef.current;
    if (prompt) {
      if (key.escape) return putPrompt(null);
      if (key.return) return submit(prompt, prompt.text);
      if (key.backspace || key.delete) {
        if (!prompt.text) return putPrompt(null);
        return putPrompt({ ...prompt, text: prompt.text.slice(0, -1) });
      }
      if (key.ctrl && input === 'u') return putPrompt({ ...prompt, text: '' });
      if (key.ctrl || key.meta || key.upArrow || key.downArrow || key.leftArrow || key.rightArrow || key.tab) return;
      // pasted text may carry the Enter with it
      const nl = input.search(/[\r\n]/);
      if (nl >= 0) return submit(prompt, prompt.text + input.slice(0, nl));
      return putPrompt({ ...prompt, text: prompt.text + input.replace(/[\x00-\x1f]/g, '') });
    }
    setStatus(null);
    const context: Context = api.current?.context ?? 'list';
    const a = actionFor(keyName(input, key), context);
    if (!a) return;
    switch (a) {
      case 'quit': return app.exit();
      case 'help':
        if (top.spec.v === 'help') return back();
        return open({ v: 'help', context: contextOf(top.spec) });
      case 'command': return putPrompt({ kind: 'command', label: ':', text: '' });
      case 'search': return putPrompt({ kind: 'search', label: `/ ${api.current?.searchLabel ?? 'search'}: `, text: '' });
      case 'screenOverview': return open({ v: 'overview' });
      case 'screenPs': return open({ v: 'ps' });
      case 'screenImages': return open({ v: 'overview' });
      case 'screenGpu': return open({ v: 'gpu' });
      case 'screenDiff': return open({ v: 'diff' });
    }
    if (api.current?.onAction(a)) return;
    if (a === 'back') {
      if (stack.length > 1) back();
      else setStatus({ msg: 'at the top (q quits)' });
    }
  };
  useInput(onKey);

  const bodyH = Math.max(3, height - 2);
  const crumbs = stack.map((f) => title(set, f.spec));
  // long breadcrumbs keep the first and the last views: a › … › y › z
  let crumb = crumbs.join(' › ');
  while (crumb.length > width - 12 && crumbs.length > 2) {
    if (crumbs[1] === '…') {
      if (crumbs.length <= 3) break;
      crumbs.splice(2, 1);
    } else crumbs.splice(1, 1, '…');
    crumb = crumbs.join(' › ');
  }
  const viewProps = { ctx, state: top.state, setState: setFrameState(top.id), width, height: bodyH, api };
  const footer = prompt
    ? <Text wrap="truncate">{clip(`${prompt.kind === 'command' ? ':' : prompt.kind === 'ask' ? prompt.label + ': ' : prompt.label}${prompt.text}█`, width)}</Text>
    : status
      ? <Text wrap="truncate" {...tone(status.error ? 'error' : 'warn', color)}>{clip(status.msg, width)}</Text>
      : <Text wrap="truncate" {...tone('dim', color)}>{clip(hints(contextOf(top.spec)), width)}</Text>;
  return (
    <Box flexDirection="column" width={width} height={height}>
      <Text wrap="truncate" inverse>{pad(` crit tui${setB ? ' (diff)' : ''} › ${crumb}`, width)}</Text>
      <Box height={bodyH} flexDirection="column">
        <View key={top.id} spec={top.spec} {...viewProps} />
      </Box>
      {footer}
    </Box>
  );
}

const sources = new WeakMap<object, HexSource | Error>();

function sourceFor(set: ImageSet, spec: Spec & ({ v: 'mem' } | { v: 'hexfile' })): HexSource | Error {
  let s = sources.get(spec);
  if (!s) {
    try {
      s = spec.v === 'mem' ? memorySource(() => set.memory(spec.pid), spec.pid) : fileSource(spec.file, spec.offset, spec.size, spec.title);
    } catch (e) {
      s = e as Error;
    }
    sources.set(spec, s);
  }
  return s;
}

/** crit xray --patch for the memory view: the command always, the change when the build has it. */
function memoryPatcher(set: ImageSet, pid: number): { cmd: (a: bigint, hex: string) => string; apply?: (a: bigint, b: Uint8Array) => void } {
  let patchMemory: ((set: ImageSet, pid: number, addr: bigint, bytes: Uint8Array) => unknown) | undefined;
  try {
    patchMemory = require('../images/memory/patch').patchMemory; // eslint-disable-line @typescript-eslint/no-require-imports
  } catch { /* not in this build */ }
  return {
    cmd: (a, hex) => `crit xray ${set.dir} --pid ${pid} --addr 0x${a.toString(16)} --patch "${hex}"`,
    apply: patchMemory ? (a, b) => {
      patchMemory!(set, pid, a, b);
      set.close(); // the pages file changed under the open readers; the next read opens new ones
    } : undefined,
  };
}

type VP = { ctx: Ctx; state: Record<string, unknown>; setState(p: Record<string, unknown>): void; width: number; height: number; api: { current: ViewApi | null } };

function View(p: VP & { spec: Spec }): React.ReactElement {
  const { spec } = p;
  const vp = p as VP & { state: any }; // eslint-disable-line @typescript-eslint/no-explicit-any
  switch (spec.v) {
    case 'overview': return <OverviewView {...vp} />;
    case 'ps': return <PsView {...vp} />;
    case 'task': return <TaskView {...vp} state={{ tab: spec.tab, ...vp.state }} pid={spec.pid} />;
    case 'mem':
    case 'hexfile': {
      const src = sourceFor(p.ctx.set, spec);
      if (src instanceof Error) {
        p.api.current = { context: 'memory', onAction: () => false };
        return <Text {...tone('error', p.ctx.color)}>{src.message}</Text>;
      }
      const follow = spec.v === 'mem' ? (a: bigint) => p.ctx.open({ v: 'mem', pid: spec.pid, addr: a }) : undefined;
      const patch = spec.v === 'mem' ? memoryPatcher(p.ctx.set, spec.pid) : undefined;
      return <MemoryView {...vp} src={src} initial={spec.v === 'mem' ? spec.addr : undefined} follow={follow} patch={patch} />;
    }
    case 'gpu': return <GpuView {...vp} />;
    case 'image': return <ImageView {...vp} name={spec.name} entry={spec.entry} />;
    case 'diff': return <DiffView {...vp} />;
    case 'check': return <CheckView {...vp} />;
    case 'memdiff': return <MemDiffView {...vp} pid={spec.pid} addr={spec.addr} />;
    case 'help': return <HelpView {...vp} context={spec.context} />;
  }
}

function HelpView(p: VP & { context: Context }): React.ReactElement {
  const lines = helpLines(p.context).map((t) => ({ text: t, tone: t.startsWith(' ') ? undefined : ('header' as const) }));
  const cur = (p.state.cursor as number | undefined) ?? 0;
  const top = scrollTo(cur, (p.state.top as number | undefined) ?? 0, p.height, lines.length);
  p.api.current = {
    context: 'list',
    onAction(a) {
      const m = listMotion(a, cur, lines.length, p.height);
      if (m === undefined) return false;
      p.setState({ cursor: m, top: scrollTo(m, top, p.height, lines.length) });
      return true;
    },
  };
  return <TextLines lines={lines} top={top} height={p.height} width={p.width} color={p.ctx.color} />;
}
