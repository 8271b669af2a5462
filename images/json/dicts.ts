// The value dictionaries behind CRIT's pretty mode: bit-flag names ((criu).flags), value labels
// ((criu).dict), device numbers ((criu).dev/odev) and IP addresses ((criu).ipadd).
import { U64 } from '../wire';
import { clipText } from './clip';

/** A value pretty mode cannot print (e.g. an address of 2 or 3 words). */
export class FormatError extends Error {}

export const FLAG_DICTS: Record<string, [string, number][]> = {
  'mmap.prot': [['PROT_READ', 0x1], ['PROT_WRITE', 0x2], ['PROT_EXEC', 0x4]],
  'mmap.flags': [['MAP_SHARED', 0x1], ['MAP_PRIVATE', 0x2], ['MAP_DROPPABLE', 0x8], ['MAP_ANON', 0x20], ['MAP_GROWSDOWN', 0x100]],
  'mmap.status': [
    ['VMA_AREA_NONE', 0x0], ['VMA_AREA_REGULAR', 0x1], ['VMA_AREA_STACK', 0x2], ['VMA_AREA_VSYSCALL', 0x4],
    ['VMA_AREA_VDSO', 0x8], ['VMA_AREA_HEAP', 0x20], ['VMA_FILE_PRIVATE', 0x40], ['VMA_FILE_SHARED', 0x80],
    ['VMA_ANON_SHARED', 0x100], ['VMA_ANON_PRIVATE', 0x200], ['VMA_AREA_SYSVIPC', 0x400], ['VMA_AREA_SOCKET', 0x800],
    ['VMA_AREA_VVAR', 0x1000], ['VMA_AREA_AIORING', 0x2000], ['VMA_AREA_MEMFD', 0x4000], ['VMA_AREA_SHSTK', 0x8000],
    ['VMA_AREA_UPROBES', 0x20000], ['VMA_UNSUPP', 0x80000000],
  ],
  'rfile.flags': [
    ['O_WRONLY', 0o1], ['O_RDWR', 0o2], ['O_CREAT', 0o100], ['O_EXCL', 0o200], ['O_NOCTTY', 0o400],
    ['O_TRUNC', 0o1000], ['O_APPEND', 0o2000], ['O_NONBLOCK', 0o4000], ['O_DSYNC', 0o10000], ['FASYNC', 0o20000],
    ['O_DIRECT', 0o40000], ['O_LARGEFILE', 0o100000], ['O_DIRECTORY', 0o200000], ['O_NOFOLLOW', 0o400000],
    ['O_NOATIME', 0o1000000], ['O_CLOEXEC', 0o2000000],
  ],
  'pmap.flags': [['PE_PARENT', 0x1], ['PE_LAZY', 0x2], ['PE_PRESENT', 0x4]],
  'seals.flags': [['F_SEAL_SEAL', 0x1], ['F_SEAL_SHRINK', 0x2], ['F_SEAL_GROW', 0x4], ['F_SEAL_WRITE', 0x8], ['F_SEAL_FUTURE_WRITE', 0x10]],
};

// CRIT's labels for task_state: 3 and 6 are swapped against CRIU's own constants
// (ALIVE 1, DEAD 2, STOPPED 3, ZOMBIE 6). Kept as CRIT prints them, for identical JSON.
export const VALUE_DICTS: Record<string, Record<string, [number, string][]>> = {
  gen: { task_state: [[1, 'Alive'], [3, 'Zombie'], [6, 'Stopped']] },
  sk: {
    family: [[1, 'UNIX'], [2, 'INET'], [10, 'INET6'], [16, 'NETLINK'], [17, 'PACKET']],
    type: [[1, 'STREAM'], [2, 'DGRAM'], [3, 'RAW'], [5, 'SEQPACKET'], [10, 'PACKET']],
    state: [[1, 'ESTABLISHED'], [2, 'SYN_SENT'], [3, 'SYN_RECV'], [4, 'FIN_WAIT1'], [5, 'FIN_WAIT2'], [6, 'TIME_WAIT'], [7, 'CLOSE'], [8, 'CLOSE_WAIT'], [9, 'LAST_ACK'], [10, 'LISTEN']],
    proto: [[0, 'IP'], [6, 'TCP'], [17, 'UDP'], [136, 'UDPLITE']],
  },
};

/**
 * CRIU's real task states, for our own views (CRIT's labels above are wrong for 3 and 6).
 * CRIU records a zombie as TASK_DEAD (2); 6 is its internal zombie value.
 */
export const TASK_STATES: Record<number, string> = { 1: 'alive', 2: 'zombie', 3: 'stopped', 6: 'zombie' };

const TWO32 = 4294967296;

export function hexString(v: U64): string {
  if (typeof v === 'number') {
    if (v >= 0 && v < TWO32) return '0x' + v.toString(16);
    if (v >= TWO32 && v <= Number.MAX_SAFE_INTEGER) {
      const hi = Math.floor(v / TWO32);
      return '0x' + hi.toString(16) + (v % TWO32).toString(16).padStart(8, '0');
    }
    return v < 0 ? '-0x' + (-v).toString(16) : '0x' + v.toString(16);
  }
  return v < 0n ? '-0x' + (-v).toString(16) : '0x' + v.toString(16);
}

const flagMemo = new WeakMap<[string, number][], Map<number, string>>();

export function flagsString(v: U64, dict: [string, number][]): string {
  // flag values repeat (every VMA of a kind has the same prot/flags/status): memoise them
  if (typeof v === 'number') {
    let memo = flagMemo.get(dict);
    if (!memo) flagMemo.set(dict, (memo = new Map()));
    let s = memo.get(v);
    if (s === undefined) {
      s = flagsStringSlow(v, dict);
      if (memo.size < 4096) memo.set(v, s);
    }
    return s;
  }
  return flagsStringSlow(v, dict);
}

function flagsStringSlow(v: U64, dict: [string, number][]): string {
  const big = BigInt(v);
  const names: string[] = [];
  let all = 0n;
  for (const [name, bits] of dict) {
    const b = BigInt(bits);
    all |= b;
    if ((b & big) !== 0n) names.push(name);
  }
  const rest = big & ~all;
  if (rest !== 0n) names.push(hexString(rest));
  return names.join(' | ');
}

export function devString(v: U64, odev: boolean): string {
  const x = BigInt(v);
  let major: bigint, minor: bigint;
  if (odev) {
    major = ((x >> 8n) & 0xfffn) | ((x >> 32n) & ~0xfffn);
    minor = (x & 0xffn) | ((x >> 12n) & ~0xffn);
  } else {
    major = x >> 20n;
    minor = x & 0xfffffn;
  }
  return `${major}:${minor}`;
}

export function parseDev(s: string, odev: boolean): bigint {
  const [a, b] = s.split(':');
  const major = parsePyInt10(a), minor = parsePyInt10(b);
  if (odev) return (minor & 0xffn) | ((major & 0xfffn) << 8n) | ((minor & ~0xffn) << 12n) | ((major & ~0xfffn) << 32n);
  return (major << 20n) | minor;
}

function parsePyInt10(s: string | undefined): bigint {
  if (s === undefined || !/^\s*[+-]?\d(_?\d)*\s*$/.test(s)) throw new Error(`invalid literal for int() with base 10: '${clipText(s ?? '')}'`);
  return BigInt(s.trim().replace(/_/g, ''));
}

export function parseFlags(s: string, dict: [string, number][]): bigint {
  if (s === '') return 0n;
  let sum = 0n;
  for (const tok of s.split('|')) {
    const t = tok.trim();
    const hit = dict.find(([n]) => n === t);
    sum += hit ? BigInt(hit[1]) : parsePyInt(t);
  }
  return sum;
}

/** Python's int(text, 0). */
export function parsePyInt(text: string): bigint {
  const t = text.trim();
  const m = /^([+-]?)(0[xX](?:_?[0-9a-fA-F])+|0[oO](?:_?[0-7])+|0[bB](?:_?[01])+|0+(?:_?0)*|[1-9](?:_?\d)*)$/.exec(t);
  if (!m) throw new Error(`invalid literal for int() with base 0: '${clipText(text)}'`);
  const body = m[2].replace(/_/g, '');
  let v: bigint;
  if (/^0[oO]/.test(body)) v = BigInt('0o' + body.slice(2));
  else if (/^0[bB]/.test(body)) v = BigInt('0b' + body.slice(2));
  else v = BigInt(body.toLowerCase());
  return m[1] === '-' ? -v : v;
}

export function ipString(words: U64[]): string {
  if (words.length === 1) {
    const w = Number(words[0]) >>> 0;
    return `${w & 0xff}.${(w >>> 8) & 0xff}.${(w >>> 16) & 0xff}.${w >>> 24}`;
  }
  // CRIT crashes on 2 or 3 words and silently prints the first 4 of more: both are damage
  if (words.length !== 4) throw new FormatError(`an address (ipadd) of ${words.length} words: only 1 (IPv4) or 4 (IPv6) can be printed`);
  const bytes: number[] = [];
  for (let i = 0; i < 4; i++) {
    const w = Number(words[i]) >>> 0;
    bytes.push(w & 0xff, (w >>> 8) & 0xff, (w >>> 16) & 0xff, w >>> 24);
  }
  const groups: number[] = [];
  for (let i = 0; i < 16; i += 2) groups.push((bytes[i] << 8) | bytes[i + 1]);
  // longest run (>= 2) of zero groups, leftmost on ties, becomes "::"
  let best = -1, bestLen = 0;
  for (let i = 0; i < 8;) {
    if (groups[i] !== 0) { i++; continue; }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen) { best = i; bestLen = j - i; }
    i = j;
  }
  const hx = groups.map((g) => g.toString(16));
  if (bestLen < 2) return hx.join(':');
  const left = hx.slice(0, best).join(':');
  const right = hx.slice(best + bestLen).join(':');
  return `${left}::${right}`;
}

export function parseIp(s: string): number[] {
  if (!s.includes(':')) {
    const parts = s.split('.').map((p) => {
      if (!/^\d{1,3}$/.test(p) || Number(p) > 255) throw new Error(`invalid IPv4 address '${clipText(s)}'`);
      return Number(p);
    });
    if (parts.length !== 4) throw new Error(`invalid IPv4 address '${clipText(s)}'`);
    return [(parts[0] | (parts[1] << 8) | (parts[2] << 16) | (parts[3] << 24)) >>> 0];
  }
  let text = s;
  // an embedded dotted IPv4 tail (::ffff:1.2.3.4)
  const v4 = /(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  let tail: number[] = [];
  if (v4) {
    const w = parseIp(v4[1])[0];
    tail = [((w & 0xff) << 8) | ((w >>> 8) & 0xff), (((w >>> 16) & 0xff) << 8) | (w >>> 24)];
    text = text.slice(0, -v4[1].length) + '0:0';
  }
  const halves = text.split('::');
  if (halves.length > 2) throw new Error(`invalid IPv6 address '${clipText(s)}'`);
  const parse = (h: string) => (h === '' ? [] : h.split(':').map((g) => {
    if (!/^[0-9a-fA-F]{1,4}$/.test(g)) throw new Error(`invalid IPv6 address '${clipText(s)}'`);
    return parseInt(g, 16);
  }));
  let groups: number[];
  if (halves.length === 2) {
    const a = parse(halves[0]), b = parse(halves[1]);
    if (a.length + b.length > 7) throw new Error(`invalid IPv6 address '${clipText(s)}'`);
    groups = [...a, ...new Array(8 - a.length - b.length).fill(0), ...b];
  } else groups = parse(halves[0]);
  if (groups.length !== 8) throw new Error(`invalid IPv6 address '${clipText(s)}'`);
  if (tail.length) { groups[6] = tail[0]; groups[7] = tail[1]; }
  const words: number[] = [];
  for (let i = 0; i < 8; i += 2) {
    const b = [groups[i] >> 8, groups[i] & 0xff, groups[i + 1] >> 8, groups[i + 1] & 0xff];
    words.push((b[0] | (b[1] << 8) | (b[2] << 16) | (b[3] << 24)) >>> 0);
  }
  return words;
}
