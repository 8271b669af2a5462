// crit diff A B [--json] [--memory]: what changed between two checkpoints. Exit status as
// diff(1): 0 equal, 1 different, 2 trouble.
import { diffSets, SetDiff, Change, SECTIONS } from '../../images/query/diff';
import type { PagePair } from '../../images/query/memdiff';
import { pyJson } from '../../images/json/pytext';
import { TextSink } from '../../images/json/document';
import { ImageError } from '../../images/image';
import { stdoutFd, printError, printStack } from '../io';

export interface DiffCliOptions {
  json?: boolean;
  /** show a hex diff of differing pages */
  memory?: boolean;
  /** pages of hex diff at most (default 64) */
  maxPages?: number;
  pageSize?: number;
  color?: boolean;
}

const SGR = { red: '\x1b[31m', green: '\x1b[32m', yellow: '\x1b[33m', bold: '\x1b[1m', dim: '\x1b[2m', off: '\x1b[0m' };

function hex(v: bigint | number): string {
  return '0x' + v.toString(16);
}

/** The report as JSON for scripts: exact values, addresses as hex strings. */
export function diffJson(d: SetDiff, withPages: boolean): unknown {
  const counts: Record<string, number> = {};
  for (const c of d.changes) counts[c.section] = (counts[c.section] ?? 0) + 1;
  return {
    a: d.a,
    b: d.b,
    equal: d.changes.length === 0,
    counts,
    changes: d.changes.map((c) => ({
      section: c.section,
      op: c.op,
      path: c.path,
      pid: c.pid,
      label: c.label,
      old: c.old,
      new: c.new,
      text: changeText(c),
      run: c.run && { kind: c.run.kind, start: hex(c.run.start), end: hex(c.run.end), pages: c.run.pages, bytes: c.run.bytes, first: c.run.first !== undefined ? hex(c.run.first) : undefined, reason: c.run.reason, where: c.run.where },
    })),
    compared_pages: d.comparedPages,
    pages: withPages ? d.pages.map((p) => ({ pid: p.pid, addr: hex(p.addr), a: Buffer.from(p.a).toString('hex'), b: Buffer.from(p.b).toString('hex') })) : undefined,
    pages_not_shown: withPages && d.droppedPages ? d.droppedPages : undefined,
  };
}

function changeText(c: Change): string {
  if (c.op === 'changed') return c.oldText !== undefined ? `${c.oldText} -> ${c.newText}` : c.newText ?? '';
  if (c.op === 'added') return c.newText ?? '';
  return c.oldText ?? '';
}

const MARK = { added: '+', removed: '-', changed: '~' } as const;

/** Human text, grouped by section and by what changed. */
export function renderDiff(d: SetDiff, opts: { color: boolean; memory: boolean }): string {
  const col = (s: string, c: keyof typeof SGR) => (opts.color ? SGR[c] + s + SGR.off : s);
  const lines: string[] = [];
  if (!d.changes.length) return `no differences between ${d.a} and ${d.b}\n`;
  lines.push(`${d.changes.length} difference${d.changes.length === 1 ? '' : 's'} between ${d.a} (A) and ${d.b} (B)`);
  for (const sec of SECTIONS) {
    const cs = d.changes.filter((c) => c.section === sec);
    if (!cs.length) continue;
    lines.push('', col(`${sec} (${cs.length})`, 'bold'));
    let label: string | undefined;
    for (const c of cs) {
      const mark = col(MARK[c.op], c.op === 'added' ? 'green' : c.op === 'removed' ? 'red' : 'yellow');
      if (c.run) {
        lines.push(`  ${mark} ${c.label}: ${changeText(c)}`);
        continue;
      }
      if (c.label && c.label !== label) lines.push(`  ${c.label}`);
      label = c.label;
      const ind = c.label ? '    ' : '  ';
      let body: string;
      if (c.op === 'changed') body = c.oldText !== undefined ? `${col(c.oldText, 'red')} -> ${col(c.newText ?? '', 'green')}` : col(c.newText ?? '', 'yellow');
      else if (c.op === 'added') body = c.newText !== undefined ? col(c.newText, 'green') : col('added', 'green');
      else body = c.oldText !== undefined ? col(c.oldText, 'red') : col('removed', 'red');
      lines.push(`${ind}${mark} ${c.path}: ${body}`);
    }
  }
  if (opts.memory && d.pages.length) {
    lines.push('', col('memory contents (A above B, differing rows only)', 'bold'));
    for (const p of d.pages) lines.push(...hexDiff(p, opts.color));
    if (d.droppedPages) lines.push(`  ... ${d.droppedPages} more differing page${d.droppedPages === 1 ? '' : 's'} not shown (--max-pages)`);
  }
  return lines.join('\n') + '\n';
}

function printable(b: number): string {
  return b >= 0x20 && b < 0x7f ? String.fromCharCode(b) : '.';
}

/** Rows of 16 bytes of one page where A and B differ; the differing bytes highlighted. */
export function hexDiff(p: PagePair, color: boolean): string[] {
  const out = [`  task ${p.pid} page ${hex(p.addr)}:`];
  let last = -2;
  for (let off = 0; off < p.a.length; off += 16) {
    let same = true;
    for (let i = off; i < off + 16 && i < p.a.length; i++) if (p.a[i] !== p.b[i]) { same = false; break; }
    if (same) continue;
    if (last >= 0 && off / 16 !== last + 1) out.push('    *');
    last = off / 16;
    const row = (x: Uint8Array, y: Uint8Array, c: 'red' | 'green') => {
      let h = '', t = '';
      for (let i = off; i < off + 16 && i < x.length; i++) {
        const hx = x[i].toString(16).padStart(2, '0');
        const diff = x[i] !== y[i];
        h += (i > off ? ' ' : '') + (diff && color ? SGR[c] + hx + SGR.off : hx);
        t += diff && color ? SGR[c] + printable(x[i]) + SGR.off : printable(x[i]);
      }
      return `${h}  |${t}|`;
    };
    const addr = (p.addr + BigInt(off)).toString(16).padStart(16, '0');
    out.push(`    ${addr}  A ${row(p.a, p.b, 'red')}`);
    out.push(`    ${' '.repeat(16)}  B ${row(p.b, p.a, 'green')}`);
  }
  return out;
}

export class DiffError extends Error {}

/** Runs the comparison and prints it; returns the exit status. */
export function diff(a: string, b: string, opts: DiffCliOptions): number {
  let d: SetDiff;
  try {
    d = diffSets(a, b, { keepPages: opts.memory ? opts.maxPages ?? 64 : 0, pageSize: opts.pageSize });
  } catch (e) {
    if (e instanceof Error && (e instanceof ImageError || ['ImageSetError', 'PageSourceError', 'MemoryError'].includes(e.constructor.name) || (e as NodeJS.ErrnoException).syscall)) {
      printError(e.message);
      return 2;
    }
    if ((e as NodeJS.ErrnoException)?.code === 'EPIPE') throw e;
    // diff(1): any trouble is status 2, even a bug of ours
    printError(`internal error: ${(e as Error)?.message ?? String(e)}`);
    printStack(e);
    return 2;
  }
  const out = new TextSink(stdoutFd());
  const color = opts.color ?? (!!process.stdout.isTTY && !process.env.NO_COLOR);
  if (opts.json) out.write(pyJson(diffJson(d, !!opts.memory), true) + '\n');
  else out.write(renderDiff(d, { color, memory: !!opts.memory }));
  out.flush();
  return d.changes.length ? 1 : 0;
}
