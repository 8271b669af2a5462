// The one key table of `crit tui`. Dispatch, the footer hints and the `?` help screen are all
// generated from it (and so is the key list in `crit tui -h`): a key documented anywhere else
// would be a second copy waiting to drift.
import type { Key } from './ink';

/** Where a binding applies: everywhere, or in views of one kind. */
export type Context = 'global' | 'list' | 'tree' | 'task' | 'memory' | 'json' | 'prompt';

export type Action =
  | 'quit' | 'help' | 'back' | 'command' | 'search'
  | 'up' | 'down' | 'left' | 'right' | 'pageUp' | 'pageDown' | 'top' | 'bottom'
  | 'open' | 'next' | 'prev'
  | 'tabNext' | 'tabPrev' | 'memory'
  | 'goto' | 'follow' | 'vmaNext' | 'vmaPrev'
  | 'collapse' | 'expand' | 'collapseAll' | 'expandAll' | 'siblingNext' | 'siblingPrev' | 'pane'
  | 'edit'
  | 'screenOverview' | 'screenPs' | 'screenImages' | 'screenGpu' | 'screenDiff';

export interface Binding {
  action: Action;
  /** key names: a character, or up/down/left/right/pgup/pgdn/home/end/enter/esc/tab/shift+tab/ctrl+X */
  keys: string[];
  contexts: Context[];
  help: string;
  /** shown in the footer of views of these contexts */
  hint?: string;
}

// Order matters: view-specific bindings come before the generic ones they override.
export const KEYS: Binding[] = [
  // memory x-ray
  { action: 'goto', keys: ['g'], contexts: ['memory'], help: 'go to an address (hex; also :mem ADDR)', hint: 'g goto' },
  { action: 'follow', keys: ['p'], contexts: ['memory'], help: 'follow the pointer under the cursor (u64, little endian)', hint: 'p follow' },
  { action: 'vmaNext', keys: [']'], contexts: ['memory'], help: 'next VMA / next stored range' },
  { action: 'vmaPrev', keys: ['['], contexts: ['memory'], help: 'previous VMA / previous stored range' },
  // JSON tree (jless)
  { action: 'collapse', keys: ['h', 'left'], contexts: ['json'], help: 'collapse the node (or go to its parent)' },
  { action: 'expand', keys: ['l', 'right'], contexts: ['json'], help: 'expand the node (or go to its first child)' },
  { action: 'collapseAll', keys: ['c'], contexts: ['json'], help: 'collapse every node below the cursor' },
  { action: 'expandAll', keys: ['e'], contexts: ['json'], help: 'expand every node below the cursor' },
  { action: 'siblingNext', keys: ['J'], contexts: ['json'], help: 'next sibling' },
  { action: 'siblingPrev', keys: ['K'], contexts: ['json'], help: 'previous sibling' },
  { action: 'pane', keys: ['w'], contexts: ['json'], help: 'show or hide the raw wire bytes of the entry', hint: 'w wire' },
  // task
  { action: 'tabNext', keys: ['tab', 'right', 'l'], contexts: ['task'], help: 'next tab (core, fds, sockets, vmas)', hint: 'tab next tab' },
  { action: 'tabPrev', keys: ['shift+tab', 'left', 'h'], contexts: ['task'], help: 'previous tab' },
  { action: 'memory', keys: ['m'], contexts: ['task', 'tree'], help: "open the task's memory x-ray", hint: 'm memory' },
  { action: 'edit', keys: ['E'], contexts: ['memory', 'json'], help: 'edit the byte or field under the cursor (with the equivalent crit command)' },
  // moving
  { action: 'up', keys: ['k', 'up'], contexts: ['global'], help: 'move up' },
  { action: 'down', keys: ['j', 'down'], contexts: ['global'], help: 'move down' },
  { action: 'left', keys: ['h', 'left'], contexts: ['global'], help: 'move left (memory: one byte)' },
  { action: 'right', keys: ['l', 'right'], contexts: ['global'], help: 'move right (memory: one byte)' },
  { action: 'pageUp', keys: ['pgup', 'ctrl+b', 'ctrl+u'], contexts: ['global'], help: 'page up' },
  { action: 'pageDown', keys: ['pgdn', 'ctrl+f', 'ctrl+d', 'space'], contexts: ['global'], help: 'page down' },
  { action: 'top', keys: ['g', 'home'], contexts: ['global'], help: 'first line' },
  { action: 'bottom', keys: ['G', 'end'], contexts: ['global'], help: 'last line' },
  { action: 'open', keys: ['enter'], contexts: ['global'], help: 'open the selected item', hint: 'enter open' },
  { action: 'next', keys: ['n'], contexts: ['global'], help: 'next match' },
  { action: 'prev', keys: ['N'], contexts: ['global'], help: 'previous match' },
  // screens
  { action: 'screenOverview', keys: ['1'], contexts: ['global'], help: 'overview (:overview)' },
  { action: 'screenPs', keys: ['2'], contexts: ['global'], help: 'process tree (:ps)' },
  { action: 'screenImages', keys: ['3'], contexts: ['global'], help: 'image files (:img)' },
  { action: 'screenGpu', keys: ['4'], contexts: ['global'], help: 'GPU buffers (:gpu)' },
  { action: 'screenDiff', keys: ['5'], contexts: ['global'], help: 'differences, in diff mode (:diff)' },
  // global
  { action: 'search', keys: ['/'], contexts: ['global'], help: 'filter a list; search memory or a JSON tree (n/N: next/previous)', hint: '/ search' },
  { action: 'command', keys: [':'], contexts: ['global'], help: 'jump: type a command (see below)', hint: ': jump' },
  { action: 'back', keys: ['esc', 'backspace'], contexts: ['global'], help: 'back through the breadcrumb (and clear a filter)', hint: 'esc back' },
  { action: 'help', keys: ['?'], contexts: ['global'], help: 'this help', hint: '? help' },
  { action: 'quit', keys: ['q', 'ctrl+c'], contexts: ['global'], help: 'quit', hint: 'q quit' },
];

/** The `:` commands, for help and completion. */
export const COMMANDS: { name: string; args?: string; help: string }[] = [
  { name: 'overview', help: 'the set at a glance' },
  { name: 'ps', help: 'process tree' },
  { name: 'task', args: 'PID', help: "a task's core, fds, sockets and VMAs" },
  { name: 'fd', args: '[PID]', help: 'open files of a task' },
  { name: 'sk', args: '[PID]', help: 'sockets of a task' },
  { name: 'mm', args: '[PID]', help: 'VMAs of a task, with resident pages' },
  { name: 'mem', args: '[PID] ADDR', help: 'memory x-ray at an address (hex)' },
  { name: 'gpu', help: 'GPU buffer objects' },
  { name: 'img', args: '[NAME]', help: 'image files, or one image as a JSON tree' },
  { name: 'diff', help: 'differences between the two sets (crit tui A B)' },
  { name: 'check', help: "crit check's problems; Enter opens the damaged entry" },
  { name: 'q', help: 'quit' },
];

export function keyName(input: string, key: Key): string {
  if (key.upArrow) return 'up';
  if (key.downArrow) return 'down';
  if (key.leftArrow) return 'left';
  if (key.rightArrow) return 'right';
  if (key.pageUp) return 'pgup';
  if (key.pageDown) return 'pgdn';
  if (key.home) return 'home';
  if (key.end) return 'end';
  if (key.return) return 'enter';
  if (key.escape) return 'esc';
  if (key.tab) return key.shift ? 'shift+tab' : 'tab';
  if (key.backspace || key.delete) return 'backspace';
  if (key.ctrl && input) return `ctrl+${input.toLowerCase()}`;
  if (input === ' ') return 'space';
  return input;
}

/** The action a key means in a view of `context` (global bindings apply everywhere). */
export function actionFor(name: string, context: Context): Action | undefined {
  for (const b of KEYS) {
    if (!b.keys.includes(name)) continue;
    if (b.contexts.includes('global') || b.contexts.includes(context)) return b.action;
  }
  return undefined;
}

const SHOW: Record<string, string> = { up: '↑', down: '↓', left: '←', right: '→', pgup: 'PgUp', pgdn: 'PgDn', home: 'Home', end: 'End', enter: 'Enter', esc: 'Esc', tab: 'Tab', 'shift+tab': 'S-Tab', space: 'Space', backspace: 'Bksp' };

export function showKeys(keys: string[]): string {
  return keys.map((k) => SHOW[k] ?? k).join(' ');
}

/** Footer hints for a context. */
export function hints(context: Context): string {
  const own = KEYS.filter((b) => b.hint && b.contexts.includes(context)).map((b) => b.hint!);
  const glob = KEYS.filter((b) => b.hint && b.contexts.includes('global')).map((b) => b.hint!);
  return [...own, ...glob].join('  ');
}

/** The `?` screen: bindings that apply in `context`, then the `:` commands. */
export function helpLines(context: Context): string[] {
  const seen = new Set<string>();
  const out: string[] = [];
  const add = (title: string, bs: Binding[]) => {
    const rows = bs.filter((b) => {
      const k = b.action;
      if (seen.has(k)) return false;
      seen.add(k);
      return true;
    });
    if (!rows.length) return;
    out.push(title);
    for (const b of rows) out.push(`  ${showKeys(b.keys).padEnd(22)} ${b.help}`);
  };
  if (context !== 'global') add(`In this view (${context})`, KEYS.filter((b) => b.contexts.includes(context)));
  add('Everywhere', KEYS.filter((b) => b.contexts.includes('global')));
  out.push('Jump with :');
  for (const c of COMMANDS) out.push(`  :${(c.name + (c.args ? ' ' + c.args : '')).padEnd(21)} ${c.help}`);
  return out;
}

/** The whole table as text, for `crit tui -h` and the docs. */
export function keyReference(): string {
  const lines: string[] = [];
  const ctxs: Context[] = ['global', 'task', 'tree', 'memory', 'json'];
  for (const c of ctxs) {
    const bs = KEYS.filter((b) => b.contexts.includes(c));
    if (!bs.length) continue;
    lines.push(c === 'global' ? 'keys:' : `keys in ${c} views:`);
    for (const b of bs) lines.push(`  ${showKeys(b.keys).padEnd(22)} ${b.help}`);
  }
  lines.push('commands (after :):');
  for (const c of COMMANDS) lines.push(`  :${(c.name + (c.args ? ' ' + c.args : '')).padEnd(21)} ${c.help}`);
  return lines.join('\n');
}
