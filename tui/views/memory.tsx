// The memory x-ray: a hexdump pane over a task's address space (or a GPU buffer's saved
// contents) with byte classes, squeezed repeats, one line per range the image lacks (with the
// reason), the VMA and file under the cursor, search with n/N, and a data inspector.
import * as React from 'react';
import { Box, Text } from '../ink';
import { ViewProps, tone, Tone, pad, size, clip } from '../ui';
import { byteClass } from '../../images/query/hexdump';
import { HexSource, Line, buildLines, lineIndexOf, lineStart, lineEnd, rowStart, prevLineStart, inspect, parsePattern, parseAddress, WIDTH } from '../hexmodel';

export interface MemState {
  addr?: bigint;
  top?: bigint;
  matches?: { addr: bigint; length: number }[];
  match?: number;
  pattern?: string;
}

const INSPECTOR_H = 3;

function charOf(b: number): string {
  const c = byteClass(b);
  if (c === 'nul') return '⋄';
  if (c === 'printable') return String.fromCharCode(b);
  if (c === 'whitespace') return b === 0x20 ? ' ' : '_';
  return b < 0x80 ? '•' : '×';
}

interface Seg { text: string; tone?: Tone; inverse?: boolean }

function pushSeg(segs: Seg[], s: Seg): void {
  const last = segs[segs.length - 1];
  if (last && last.tone === s.tone && !!last.inverse === !!s.inverse) last.text += s.text;
  else segs.push({ ...s });
}

export function addrText(a: bigint, offsets: boolean): string {
  return offsets ? a.toString(16).padStart(8, '0') : a.toString(16).padStart(12, '0');
}

function lineSegs(l: Line, cur: bigint, match: { addr: bigint; length: number } | undefined, offsets: boolean, width: number): Seg[] {
  const segs: Seg[] = [];
  const at = addrText(lineStart(l), offsets);
  if (l.kind === 'hex') {
    pushSeg(segs, { text: at + ' ', tone: 'dim' });
    const ascii: Seg[] = [];
    for (let i = 0; i < WIDTH; i++) {
      const b = l.bytes[i];
      const a = l.addr + BigInt(i);
      const isCur = a === cur;
      const inMatch = !!match && a >= match.addr && a < match.addr + BigInt(match.length);
      if (i === 8) pushSeg(segs, { text: ' ' });
      if (b === undefined) {
        pushSeg(segs, { text: '   ' });
        pushSeg(ascii, { text: ' ' });
        continue;
      }
      const t: Tone = inMatch ? 'match' : b < 0 ? 'absent' : byteClass(b);
      pushSeg(segs, { text: b < 0 ? '--' : b.toString(16).padStart(2, '0'), tone: t, inverse: isCur });
      pushSeg(segs, { text: ' ' });
      pushSeg(ascii, { text: b < 0 ? ' ' : charOf(b), tone: t, inverse: isCur });
    }
    for (const s of ascii) pushSeg(segs, s);
    return segs;
  }
  const sel = cur >= lineStart(l) && cur < lineEnd(l);
  if (l.kind === 'squeeze') return [{ text: `${' '.repeat(at.length)} * ${Number((l.end - l.start) / BigInt(WIDTH))} more rows of the same bytes`, tone: 'dim', inverse: sel }];
  if (l.kind === 'end') return [{ text: `${at} end of the address space`, tone: 'dim' }];
  const span = `${at}..${addrText(l.end, offsets)} ${size(l.end - l.start)}`;
  if (l.kind === 'gap') return [{ text: clip(`${span}  unmapped`, width), tone: 'dim', inverse: sel }];
  return [{ text: clip(`${span}  ${l.why}`, width), tone: 'absent', inverse: sel }];
}

function num(v: number | bigint | undefined, signed: boolean): string {
  if (v === undefined) return '-';
  return signed ? String(v) : `${v}`;
}

export function MemoryView(p: ViewProps<MemState> & { src: HexSource; initial?: bigint; follow?: (a: bigint) => void; patch?: { cmd: (a: bigint, hex: string) => string; apply?: (a: bigint, bytes: Uint8Array) => void } }): React.ReactElement {
  const { src, ctx } = p;
  const st = p.state;
  const hexH = Math.max(3, p.height - 2 - INSPECTOR_H);
  const start = st.addr ?? p.initial ?? src.first();
  const cur = start;
  const top = st.top ?? rowStart(src, cur);
  const lines = React.useMemo(() => buildLines(src, top, hexH + 3), [src, top, hexH]);
  const match = st.matches && st.match !== undefined ? st.matches[st.match] : undefined;

  const go = (a: bigint, newTop?: bigint, extra: Partial<MemState> = {}) => {
    let t = newTop;
    if (t === undefined) {
      const i = lineIndexOf(lines, a);
      t = i >= 0 && i < hexH ? top : rowStart(src, a);
    }
    p.setState({ addr: a, top: t, ...extra });
  };
  const curIdx = lineIndexOf(lines, cur);
  const curLine = curIdx >= 0 ? lines[curIdx] : undefined;
  const col = curLine && curLine.kind === 'hex' ? cur - curLine.addr : 0n;
  const targetIn = (l: Line, c: bigint) => (l.kind === 'hex' ? l.addr + c : lineStart(l));
  const down = (c: bigint): boolean => {
    let j = curIdx + 1;
    if (lines[j]?.kind === 'squeeze') j++;
    const l = lines[j];
    if (!l || l.kind === 'end') return false;
    let t = top;
    if (j >= hexH) {
      let k = j - hexH + 1;
      if (lines[k]?.kind === 'squeeze') k++;
      t = lineStart(lines[k]);
    }
    go(targetIn(l, c), t);
    return true;
  };
  const up = (c: bigint, toEnd = false): boolean => {
    let j = curIdx - 1;
    if (lines[j]?.kind === 'squeeze') j--;
    if (j >= 0) {
      const l = lines[j];
      go(toEnd ? lineEnd(l) - 1n : targetIn(l, c), top);
      return true;
    }
    const pt = prevLineStart(src, top);
    if (pt >= top) return false;
    const l = buildLines(src, pt, 1)[0];
    go(toEnd ? lineEnd(l) - 1n : targetIn(l, c), pt);
    return true;
  };
  const lastRegion = () => src.prevRegion(BigInt('0xffffffffffffffff'));

  p.api.current = {
    context: 'memory',
    searchLabel: 'search (text, x:HEX BYTES, re:REGEX)',
    onAction(a) {
      switch (a) {
        case 'down': return down(col) || true;
        case 'up': return up(col) || true;
        case 'right':
          if (curLine?.kind === 'hex' && col < BigInt(WIDTH - 1) && curLine.bytes[Number(col) + 1] !== undefined) go(cur + 1n, top);
          else down(0n);
          return true;
        case 'left':
          if (curLine?.kind === 'hex' && col > 0n && curLine.bytes[Number(col) - 1] !== undefined) go(cur - 1n, top);
          else up(0n, true);
          return true;
        case 'pageDown': {
          let k = Math.min(hexH, lines.length - 1);
          if (lines[k]?.kind === 'squeeze') k++;
          const l = lines[k];
          if (!l || l.kind === 'end') return true;
          go(targetIn(l, col), lineStart(l));
          return true;
        }
        case 'pageUp': {
          let t = top;
          for (let i = 0; i < hexH; i++) {
            const pt = prevLineStart(src, t);
            if (pt >= t) break;
            t = pt;
          }
          const l = buildLines(src, t, 1)[0];
          go(targetIn(l, col), t);
          return true;
        }
        case 'top': go(src.first(), rowStart(src, src.first())); return true;
        case 'bottom': { const r = lastRegion(); if (r) go(r.start, rowStart(src, r.start)); return true; }
        case 'vmaNext': {
          const r = src.nextRegion(cur);
          if (r) go(r.start, r.start);
          else ctx.status('no further mapping');
          return true;
        }
        case 'vmaPrev': {
          const r = src.regionAt(cur);
          const t = r && cur > r.start ? r : src.prevRegion(r ? r.start : cur);
          if (t) go(t.start, t.start);
          return true;
        }
        case 'goto':
          ctx.ask('go to address (hex)', (text) => {
            try {
              const x = parseAddress(text);
              go(x, rowStart(src, x));
            } catch (e) {
              ctx.status((e as Error).message, true);
            }
          });
          return true;
        case 'open':
        case 'follow': {
          const v = inspect(src, cur).u64le;
          if (v === undefined) ctx.status('no 8 bytes here to read a pointer from', true);
          else if (!p.follow || !src.regionAt(v)) ctx.status(`0x${v.toString(16)} does not point into a mapping`, true);
          else p.follow(v);
          return true;
        }
        case 'next':
        case 'prev': {
          const m = st.matches;
          if (!m || !m.length) {
            ctx.status(st.pattern ? `no match for ${st.pattern}` : 'search first with /');
            return true;
          }
          let i: number;
          if (a === 'next') {
            i = m.findIndex((x) => x.addr > cur);
            if (i < 0) { i = 0; ctx.status('search wrapped to the first match'); }
          } else {
            i = -1;
            for (let k = m.length - 1; k >= 0; k--) if (m[k].addr < cur) { i = k; break; }
            if (i < 0) { i = m.length - 1; ctx.status('search wrapped to the last match'); }
          }
          go(m[i].addr, undefined, { match: i });
          return true;
        }
        case 'edit': {
          const pt = p.patch;
          if (!pt) { ctx.status('these bytes cannot be edited here'); return true; }
          ctx.ask(`patch bytes at 0x${cur.toString(16)} (hex, e.g. de ad be ef)`, (text) => {
            const hexText = text.replace(/[\s,]/g, '').replace(/^0x/i, '');
            if (!hexText || hexText.length % 2 || /[^0-9a-f]/i.test(hexText)) return ctx.status(`not hex bytes: ${text}`, true);
            const cmd = pt.cmd(cur, hexText.replace(/(..)(?!$)/g, '$1 '));
            if (!pt.apply) return ctx.status(`not in this build; the command is: ${cmd}`, true);
            try {
              pt.apply(cur, Uint8Array.from(Buffer.from(hexText, 'hex')));
              p.setState({ top: top });
              ctx.status(`written atomically; the same as: ${cmd}`);
            } catch (e) {
              ctx.status(`${(e as Error).message}  (${cmd})`, true);
            }
          });
          return true;
        }
        case 'back':
          if (st.matches) {
            p.setState({ matches: undefined, match: undefined, pattern: undefined });
            return true;
          }
          return false;
      }
      return false;
    },
    onSearch(text) {
      if (!text) return;
      try {
        const pat = parsePattern(text);
        const m = src.search(pat);
        if (!m.length) {
          p.setState({ matches: [], match: undefined, pattern: text });
          ctx.status(`no match for ${text}`, true);
          return;
        }
        let i = m.findIndex((x) => x.addr >= cur);
        if (i < 0) i = 0;
        ctx.status(`${m.length}${m.length >= 10_000 ? '+' : ''} matches for ${text}`);
        go(m[i].addr, rowStart(src, m[i].addr), { matches: m, match: i, pattern: text });
      } catch (e) {
        ctx.status((e as Error).message, true);
      }
    },
  };

  // where the cursor is
  const r = src.regionAt(cur);
  const sp = src.layout(cur, 1)[0];
  const here = `${src.offsets ? '+0x' : '0x'}${cur.toString(16)}  ${r ? `${r.label}${src.offsets ? '' : ` +0x${(cur - r.start).toString(16)}`}` : 'unmapped'}  ${sp ? (sp.present ? sp.origin ?? '' : sp.absent ?? '') : ''}`;
  const ins = inspect(src, cur);
  const ptr = ins.u64le !== undefined && src.regionAt(ins.u64le) ? `  ptr -> ${src.regionAt(ins.u64le)!.label} (p)` : '';
  const w = p.width;
  const inspector = ins.bytes.length
    ? [
        `u8 ${num(ins.u8, false)}  i8 ${num(ins.i8, true)}  u16 ${num(ins.u16le, false)}/${num(ins.u16be, false)}  i16 ${num(ins.i16le, true)}/${num(ins.i16be, true)}  (LE/BE)`,
        `u32 ${num(ins.u32le, false)}/${num(ins.u32be, false)}  i32 ${num(ins.i32le, true)}/${num(ins.i32be, true)}  f32 ${ins.f32le !== undefined ? ins.f32le.toPrecision(6) : '-'}`,
        `u64 0x${ins.u64le?.toString(16) ?? '-'}/0x${ins.u64be?.toString(16) ?? '-'}  i64 ${num(ins.i64le, true)}${ptr}`,
      ]
    : ['no bytes at the cursor: ' + (sp?.absent ?? 'unmapped'), '', ''];
  const matchInfo = st.matches ? `  /${st.pattern}: ${st.matches.length ? `${(st.match ?? 0) + 1}/${st.matches.length}` : 'no match'}` : '';
  return (
    <Box flexDirection="column" width={w} height={p.height}>
      <Text wrap="truncate" {...tone('accent', ctx.color)}>{pad(clip(here, w - matchInfo.length) + matchInfo, w)}</Text>
      <Box flexDirection="column" height={hexH}>
        {lines.slice(0, hexH).map((l, i) => (
          <Text key={i} wrap="truncate">
            {lineSegs(l, cur, match, src.offsets, w).map((s, k) => (
              <Text key={k} inverse={s.inverse} {...tone(s.tone, ctx.color)}>{s.text}</Text>
            ))}
          </Text>
        ))}
      </Box>
      <Text wrap="truncate" {...tone('dim', ctx.color)}>{pad(`inspector @${cur.toString(16)}  ${ins.bytes.map((b) => b.toString(16).padStart(2, '0')).join(' ')}`, w)}</Text>
      {inspector.map((t, i) => (
        <Text key={i} wrap="truncate">{clip(t, w)}</Text>
      ))}
    </Box>
  );
}
