// Any image as a collapsible JSON tree (jless: h/l collapse and expand, container sizes), the
// raw bytes of the selected entry beside it, and for a damaged file where decoding stopped.
import * as React from 'react';
import { Box, Text } from '../ink';
import { ViewProps, tone, pad, clip, scrollTo, listMotion, Row, TextLines } from '../ui';
import { inspected, forgetImage } from '../data';
import { editImage, parseAssignment } from '../../images/query/edit';
import { entryRange, readFileRange, InspectedImage } from '../../images/query/imagefile';
import { ImageError } from '../../images/image';
import { hexRows } from '../../images/query/hexdump';
import { JNode, imageTree, flatten, kids, setAll, searchTree, reveal, summary } from '../jsontree';

export interface ImageState {
  cursor?: number;
  top?: number;
  rev?: number;
  wire?: boolean;
  matches?: JNode[];
  match?: number;
  pattern?: string;
  placed?: boolean;
}

const trees = new WeakMap<InspectedImage, JNode>();

function treeOf(img: InspectedImage): JNode {
  let t = trees.get(img);
  if (!t) trees.set(img, (t = imageTree(img)));
  return t;
}

function nodeText(n: JNode): string {
  const ind = '  '.repeat(Math.max(0, n.depth - 1));
  if (n.kind === 'error') return `${ind}✗ decoding stopped: ${n.text}`;
  const isIdx = n.parent?.kind === 'array';
  const key = isIdx ? `[${n.key}]` : n.key;
  if (n.kind === 'scalar') return `${ind}  ${key}: ${n.text}`;
  if (n.entry >= 0 && n.depth === 2 && n.load) kids(n); // entries show their size once visible
  return `${ind}${n.expanded ? '▾' : '▸'} ${key}: ${summary(n)}`;
}

/** Hex lines of the raw bytes of entry `i` (or, for the error line, around where decoding stopped). */
export function wireLines(img: InspectedImage, n: JNode | undefined, max: number): Row[] {
  if (!n) return [];
  let start: number, end: number, title: string;
  if (n.kind === 'error') {
    const off = img.error instanceof ImageError && img.error.offset !== undefined ? img.error.offset : img.entries.length ? entryRange(img, img.entries.length - 1).end : 0;
    start = Math.max(0, off - (off % 16) - 32);
    end = Math.min(img.size, off + 96);
    title = `bytes ${start}..${end} of ${img.size}; decoding stopped at byte ${off}`;
  } else if (n.entry >= 0) {
    const r = entryRange(img, n.entry);
    start = r.start;
    end = r.end;
    title = `entry ${n.entry}: bytes ${start}..${end} (${end - start} B: size word + payload${end - start > 4 ? '' : ''})`;
  } else {
    start = 0;
    end = Math.min(img.size, img.entries.length ? img.entries[0].offset : img.size);
    title = `header: bytes 0..${end} (magic words)`;
  }
  const data = readFileRange(img.file, start, Math.min(end - start, max * 16 + 16));
  const rows: Row[] = [{ text: title, tone: 'dim' }];
  for (const r of hexRows([{ addr: BigInt(start), len: data.length, data }], 16, true)) {
    const hexs = r.bytes.map((b) => (b === undefined ? '  ' : b.toString(16).padStart(2, '0'))).join(' ');
    const asc = r.bytes.map((b) => (b === undefined ? ' ' : b >= 0x20 && b < 0x7f ? String.fromCharCode(b) : '.')).join('');
    rows.push({ text: `${r.addr.toString(16).padStart(6, '0')}  ${hexs}  ${asc}` });
    if (r.squeezed) rows.push({ text: `        * ${r.squeezed} more rows of the same bytes`, tone: 'dim' });
  }
  if (end - start > data.length) rows.push({ text: `… ${end - start - data.length} more bytes`, tone: 'dim' });
  return rows;
}

export function ImageView(p: ViewProps<ImageState> & { name: string; entry?: number }): React.ReactElement {
  const { ctx, state: st } = p;
  const img = inspected(ctx.set, p.name);
  const root = treeOf(img);
  const rev = st.rev ?? 0;
  if (!st.placed && p.entry !== undefined) {
    const entries = kids(root)[1];
    const n = kids(entries)[p.entry];
    if (n) {
      n.expanded = true;
      kids(n);
    }
  }
  const flat = React.useMemo(() => flatten(root), [root, rev]); // eslint-disable-line react-hooks/exhaustive-deps
  let cursor = st.cursor ?? 0;
  if (!st.placed && p.entry !== undefined) {
    const i = flat.findIndex((n) => n.entry === p.entry && n.depth === 2);
    if (i >= 0) cursor = i;
  } else if (st.cursor === undefined && img.error && !img.entries.length) cursor = flat.length - 1;
  cursor = Math.min(cursor, Math.max(0, flat.length - 1));
  const wire = st.wire ?? true;
  const side = p.width >= 140;
  const wireH = wire && !side ? Math.min(10, Math.max(4, Math.floor(p.height / 2.5))) : 0;
  const treeW = wire && side ? p.width - 76 : p.width;
  const treeH = p.height - wireH - (st.matches ? 1 : 0);
  const top = scrollTo(cursor, st.top ?? 0, treeH, flat.length);
  const node = flat[cursor];
  const bump = (patch: Partial<ImageState> = {}) => p.setState({ rev: rev + 1, placed: true, ...patch });
  const place = (n: JNode, extra: Partial<ImageState> = {}) => {
    reveal(n);
    const f = flatten(root);
    const i = f.indexOf(n);
    p.setState({ rev: rev + 1, placed: true, cursor: i, top: scrollTo(i, top, treeH, f.length), ...extra });
  };
  p.api.current = {
    context: 'json',
    searchLabel: 'search keys and values',
    onAction(a) {
      const m = listMotion(a, cursor, flat.length, treeH);
      if (m !== undefined) {
        p.setState({ cursor: m, top: scrollTo(m, top, treeH, flat.length), placed: true });
        return true;
      }
      if (!node) return false;
      const container = node.kind === 'object' || node.kind === 'array';
      switch (a) {
        case 'expand':
        case 'open':
          if (container && !node.expanded) { node.expanded = true; bump(); }
          else if (container && kids(node).length) p.setState({ cursor: cursor + 1, top: scrollTo(cursor + 1, top, treeH, flat.length), placed: true });
          return true;
        case 'collapse':
          if (container && node.expanded) { node.expanded = false; bump(); }
          else if (node.parent && node.parent.depth > 0) { const i = flat.indexOf(node.parent); if (i >= 0) p.setState({ cursor: i, top: scrollTo(i, top, treeH, flat.length), placed: true }); }
          return true;
        case 'expandAll': setAll(node, true); bump(); return true;
        case 'collapseAll': setAll(node, false); bump(); return true;
        case 'siblingNext':
        case 'siblingPrev': {
          const sibs = node.parent ? kids(node.parent) : [];
          const j = sibs.indexOf(node) + (a === 'siblingNext' ? 1 : -1);
          if (j >= 0 && j < sibs.length) { const i = flat.indexOf(sibs[j]); p.setState({ cursor: i, top: scrollTo(i, top, treeH, flat.length), placed: true }); }
          return true;
        }
        case 'pane': p.setState({ wire: !wire }); return true;
        case 'edit': {
          if (node.kind !== 'scalar' || node.entry < 0 || !node.path.startsWith('.entries')) { ctx.status('edit: put the cursor on a field of an entry'); return true; }
          const field = node.path.slice(1);
          const file = ctx.set.path(p.name);
          ctx.ask(`set ${field} (JSON, as crit encode reads it)`, (v) => {
            const cmd = `crit edit ${file} --set '${field}=${v}'`;
            try {
              editImage(file, [parseAssignment(`${field}=${v}`)]);
              forgetImage(ctx.set, p.name);
              p.setState({ rev: rev + 1 });
              ctx.status(`written atomically; the same as: ${cmd}`);
            } catch (e) {
              ctx.status(`${(e as Error).message}  (${cmd})`, true);
            }
          }, node.text);
          return true;
        }
        case 'next':
        case 'prev': {
          const ms = st.matches;
          if (!ms || !ms.length) { ctx.status('search first with /'); return true; }
          const k = ((st.match ?? 0) + (a === 'next' ? 1 : ms.length - 1)) % ms.length;
          place(ms[k], { match: k });
          return true;
        }
        case 'back':
          if (st.matches) { p.setState({ matches: undefined, match: undefined, pattern: undefined }); return true; }
          return false;
      }
      return false;
    },
    onSearch(text) {
      if (!text) return;
      const ms = searchTree(root, text);
      if (!ms.length) { p.setState({ matches: [], pattern: text }); ctx.status(`no match for ${text}`, true); return; }
      // the first match at or after the cursor, in document order
      const after = flatten(root);
      let k = 0;
      for (let i = 0; i < ms.length; i++) { const at = after.indexOf(ms[i]); if (at >= cursor) { k = i; break; } }
      ctx.status(`${ms.length} matches for ${text}`);
      place(ms[k], { matches: ms, match: k, pattern: text });
    },
  };
  const rows = (i: number): Row => {
    const n = flat[i];
    return { text: nodeText(n), tone: n.kind === 'error' ? 'error' : st.matches && st.matches.includes(n) ? 'warn' : undefined };
  };
  const treeLines: Row[] = [];
  for (let i = top; i < Math.min(flat.length, top + treeH); i++) treeLines.push(rows(i));
  const wl = wire ? wireLines(img, node, (side ? p.height : wireH) - 2) : [];
  return (
    <Box flexDirection="column" width={p.width} height={p.height}>
      {st.matches ? <Text {...tone('warn', ctx.color)} wrap="truncate">{clip(`/${st.pattern}: ${st.matches.length ? `${(st.match ?? 0) + 1}/${st.matches.length}` : 'no match'}  (n/N, esc clears)  ${node?.path ?? ''}`, p.width)}</Text> : null}
      <Box flexDirection={side ? 'row' : 'column'}>
        <TextLines lines={treeLines} top={0} height={treeH} width={treeW} color={ctx.color} cursor={cursor - top} />
        {wire ? (
          <Box flexDirection="column" width={side ? 76 : p.width} height={side ? treeH : wireH} marginLeft={side ? 0 : 0}>
            <Text wrap="truncate" {...tone('accent', ctx.color)}>{pad(clip(`${p.name}${node?.path ? '  ' + node.path : ''}`, side ? 75 : p.width), side ? 75 : p.width)}</Text>
            {wl.slice(0, (side ? treeH : wireH) - 1).map((r, i) => (
              <Text key={i} wrap="truncate" {...tone(r.tone, ctx.color)}>{r.text}</Text>
            ))}
          </Box>
        ) : null}
      </Box>
    </Box>
  );
}
