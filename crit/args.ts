// A small argparse-like parser: flags with values, booleans, positionals, and usage errors
// (exit 2) that name the problem.

export class UsageError extends Error {
  constructor(message: string, public usage: string) {
    super(message);
  }
}

export interface OptSpec {
  /** names, e.g. ['-i', '--in'] */
  names: string[];
  key: string;
  value?: boolean;
  repeat?: boolean;
}

export interface Parsed {
  opts: Record<string, string | boolean | string[] | undefined>;
  pos: string[];
}

export function parseArgs(argv: string[], specs: OptSpec[], usage: string, maxPos = Infinity): Parsed {
  const opts: Parsed['opts'] = {};
  const pos: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--') { pos.push(...argv.slice(i + 1)); break; }
    if (a.startsWith('-') && a !== '-') {
      let name = a;
      let inline: string | undefined;
      const eq = a.indexOf('=');
      if (a.startsWith('--') && eq > 0) { name = a.slice(0, eq); inline = a.slice(eq + 1); }
      const spec = specs.find((s) => s.names.includes(name));
      if (!spec) throw new UsageError(`unrecognized arguments: ${a}`, usage);
      if (spec.value) {
        const v = inline ?? argv[++i];
        if (v === undefined) throw new UsageError(`argument ${spec.names.join('/')}: expected one argument`, usage);
        if (spec.repeat) ((opts[spec.key] as string[]) ||= []).push(v);
        else opts[spec.key] = v;
      } else opts[spec.key] = true;
      continue;
    }
    pos.push(a);
  }
  if (pos.length > maxPos) throw new UsageError(`unrecognized arguments: ${pos.slice(maxPos).join(' ')}`, usage);
  return { opts, pos };
}
