// A collapsible JSON tree over one image (jless's model): {"magic", "entries": [...]} as CRIT
// shows it, each entry's JSON made only when the entry is first opened or searched.
import type { InspectedImage } from '../images/query/imagefile';
import { kindFor } from '../images/kinds';
import { writeEntryJson } from '../images/json/document';
import type { JsonOut } from '../images/json/tojson';
import { parseJson, JsonValue } from '../images/json/parse';
import { pyJson } from '../images/json/pytext';

export interface JNode {
  key: string;
  kind: 'object' | 'array' | 'scalar' | 'error';
  /** scalar JSON text, or the error message */
  text?: string;
  size?: number;
  children?: JNode[];
  load?: () => JNode[];
  expanded: boolean;
  /** entry index this node belongs to (-1 above the entries) */
  entry: number;
  depth: number;
  parent?: JNode;
  /** jq path, e.g. .entries[0].tc.comm */
  path: string;
}

class Out implements JsonOut {
  s = '';
  flush(): void { /* kept in s */ }
}

/** CRIT's pretty JSON of entry i, payloads shown by size (as `crit show --nopl`). */
export function entryJson(img: InspectedImage, i: number): string {
  const kind = kindFor(img.magic!)!;
  const out = new Out();
  writeEntryJson(kind, img.entries[i], { mode: 'pretty', nopl: true }, '', out);
  return out.s;
}

function keyPath(parent: string, key: string, isIndex: boolean): string {
  if (isIndex) return `${parent}[${key}]`;
  return /^[A-Za-z_][A-Za-z0-9_]*$/.test(key) ? `${parent}.${key}` : `${parent}[${JSON.stringify(key)}]`;
}

function fromValue(key: string, v: JsonValue, entry: number, depth: number, parent: JNode | undefined, path: string, crowded: boolean): JNode {
  if (v !== null && typeof v === 'object') {
    const isArr = Array.isArray(v);
    const keys = isArr ? (v as JsonValue[]).map((_, i) => String(i)) : Object.keys(v);
    const n: JNode = { key, kind: isArr ? 'array' : 'object', size: keys.length, expanded: false, entry, depth, parent, path };
    // jless opens everything; we keep long arrays of scalars and crowded levels closed
    const scalars = isArr && (v as JsonValue[]).every((x) => x === null || typeof x !== 'object');
    n.expanded = !crowded && !(scalars && keys.length > 16) && keys.length <= 200;
    n.load = () => {
      const many = keys.length > 100;
      return keys.map((k) => fromValue(k, isArr ? (v as JsonValue[])[Number(k)] : (v as Record<string, JsonValue>)[k], entry, depth + 1, n, keyPath(path, k, isArr), many));
    };
    return n;
  }
  return { key, kind: 'scalar', text: typeof v === 'bigint' ? v.toString() : pyJson(v), expanded: false, entry, depth, parent, path };
}

export function imageTree(img: InspectedImage): JNode {
  const root: JNode = { key: '', kind: 'object', expanded: true, entry: -1, depth: 0, path: '', size: 2 };
  const magic: JNode = { key: 'magic', kind: 'scalar', text: JSON.stringify(img.magic ?? '?'), expanded: false, entry: -1, depth: 1, parent: root, path: '.magic' };
  const entries: JNode = { key: 'entries', kind: 'array', size: img.entries.length, expanded: true, entry: -1, depth: 1, parent: root, path: '.entries' };
  const many = img.entries.length > 1;
  entries.children = img.entries.map((_, i) => {
    const path = `.entries[${i}]`;
    const n: JNode = { key: String(i), kind: 'object', expanded: !many, entry: i, depth: 2, parent: entries, path };
    n.load = () => {
      const v = parseJson(entryJson(img, i));
      const t = fromValue(String(i), v, i, 2, entries, path, false);
      n.size = t.size;
      n.kind = t.kind;
      const kids = t.load ? t.load() : [];
      for (const k of kids) k.parent = n;
      return kids;
    };
    return n;
  });
  root.children = [magic, entries];
  if (img.error) {
    const e = img.error as Error & { offset?: number; entry?: number };
    root.children.push({ key: 'error', kind: 'error', text: e.message.replace(img.file + ': ', ''), expanded: false, entry: e.entry ?? img.entries.length, depth: 1, parent: root, path: '' });
  }
  return root;
}

export function kids(n: JNode): JNode[] {
  if (!n.children && n.load) {
    n.children = n.load();
    n.load = undefined;
  }
  return n.children ?? [];
}

/** The visible lines: every node whose ancestors are all expanded (the root itself is not shown). */
export function flatten(root: JNode): JNode[] {
  const out: JNode[] = [];
  const walk = (n: JNode) => {
    for (const c of kids(n)) {
      out.push(c);
      if (c.expanded && (c.kind === 'object' || c.kind === 'array')) walk(c);
    }
  };
  walk(root);
  return out;
}

export function setAll(n: JNode, expanded: boolean, limit = 200_000): void {
  let budget = limit;
  const walk = (x: JNode) => {
    if (x.kind !== 'object' && x.kind !== 'array') return;
    x.expanded = expanded;
    if (!expanded && !x.children) return;
    if (--budget <= 0) return;
    for (const c of kids(x)) walk(c);
  };
  walk(n);
}

/** Nodes whose key or scalar text contains `needle` (case-insensitive), in document order. */
export function searchTree(root: JNode, needle: string, limit = 10_000): JNode[] {
  const q = needle.toLowerCase();
  const out: JNode[] = [];
  const walk = (n: JNode) => {
    for (const c of kids(n)) {
      if (out.length >= limit) return;
      if (c.key.toLowerCase().includes(q) || (c.text !== undefined && c.text.toLowerCase().includes(q))) out.push(c);
      if (c.kind === 'object' || c.kind === 'array') walk(c);
    }
  };
  walk(root);
  return out;
}

export function reveal(n: JNode): void {
  for (let p = n.parent; p; p = p.parent) p.expanded = true;
}

export function summary(n: JNode): string {
  if (n.kind === 'array') return n.size === undefined ? '[…]' : `[${n.size}]`;
  if (n.kind === 'object') return n.size === undefined ? '{…}' : `{${n.size}}`;
  return n.text ?? '';
}
