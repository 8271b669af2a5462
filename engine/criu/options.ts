// CRIU's command-line syntax, parsed as CRIU's getopt_long does: long options with "=VALUE" or a
// separate value, unambiguous prefixes, "--no-X" for boolean ones, bundled short options, "-v"
// with an attached level ("-v4", "-vvv", even zdtm's "-verbosity=0"), and the command anywhere.
// Every CRIU option is in the table: what we do with it, or why it is refused. None is dropped.
import { EngineError } from '../errors';

type Arg = 'none' | 'required' | 'optional';

interface OptionDef {
  long: string;
  short?: string;
  arg: Arg;
  /** a CRIU boolean: "--no-NAME" is accepted and means the default (off) */
  bool?: boolean;
  /** why this engine refuses the option; absent: supported */
  refused?: string;
}

const NS = 'namespaces and mounts are not handled by this engine yet (the tree must live in the host namespaces)';
const REMOTE = 'page servers, lazy pages, incremental and streamed dumps are not implemented by this engine';

const TABLE: OptionDef[] = [
  { long: 'tree', short: 't', arg: 'required' },
  { long: 'leave-stopped', short: 's', arg: 'none' },
  { long: 'leave-running', short: 'R', arg: 'none' },
  // CRIU 2026 page compression (its G1 command line)
  { long: 'compress', short: 'c', arg: 'none', bool: true },
  { long: 'compress-region', arg: 'required' },
  { long: 'compress-acceleration', arg: 'required' },
  { long: 'restore-detached', short: 'd', arg: 'none', bool: true },
  { long: 'daemon', arg: 'none', bool: true },
  { long: 'restore-sibling', short: 'S', arg: 'none', bool: true, refused: 'the restored root is always a child of this process' },
  { long: 'images-dir', short: 'D', arg: 'required' },
  { long: 'work-dir', short: 'W', arg: 'required' },
  { long: 'log-file', short: 'o', arg: 'required' },
  { long: 'verbosity', short: 'v', arg: 'optional' },
  { long: 'help', short: 'h', arg: 'none' },
  { long: 'version', short: 'V', arg: 'none' },
  { long: 'pidfile', arg: 'required' },
  { long: 'shell-job', short: 'j', arg: 'none', bool: true },
  { long: 'file-locks', arg: 'none', bool: true },
  { long: 'timeout', arg: 'required' },
  { long: 'status-fd', arg: 'required' },
  { long: 'no-default-config', arg: 'none' },
  { long: 'close', arg: 'required' },
  { long: 'display-stats', arg: 'none', bool: true },
  { long: 'feature', arg: 'required' },
  { long: 'all', arg: 'none' },
  { long: 'extra', arg: 'none', bool: true },
  { long: 'experimental', arg: 'none', bool: true },
  { long: 'ms', arg: 'none' },
  { long: 'file-validation', arg: 'required' },
  { long: 'config', arg: 'required', refused: 'configuration files are not read by this engine' },
  { long: 'log-pid', arg: 'none', bool: true, refused: 'this engine writes one log' },
  { long: 'tcp-established', short: 'l', arg: 'none', bool: true },
  { long: 'tcp-close', arg: 'none', bool: true },
  { long: 'skip-in-flight', arg: 'none', bool: true },
  { long: 'network-lock', arg: 'required' },
  { long: 'ext-unix-sk', short: 'x', arg: 'optional' },
  { long: 'link-remap', arg: 'none', bool: true },
  { long: 'ghost-limit', arg: 'required' },
  // another way to find a ghost file's data; SEEK_DATA/SEEK_HOLE finds the same regions
  { long: 'ghost-fiemap', arg: 'none', bool: true },
  { long: 'manage-cgroups', arg: 'optional' },
  { long: 'cgroup-root', arg: 'required' },
  { long: 'cgroup-props', arg: 'required' },
  { long: 'cgroup-props-file', arg: 'required' },
  { long: 'cgroup-dump-controller', arg: 'required' },
  { long: 'cgroup-yard', arg: 'required' },
  { long: 'freeze-cgroup', arg: 'required', refused: 'this engine freezes with its own cgroup v2 freezer or ptrace' },
  { long: 'evasive-devices', arg: 'none', bool: true, refused: 'device files are dumped only through their plugins' },
  { long: 'external', arg: 'required', refused: 'external resources are not implemented by this engine' },
  { long: 'inherit-fd', arg: 'required', refused: 'inherited fds are not implemented by this engine' },
  { long: 'root', short: 'r', arg: 'required', refused: NS },
  { long: 'join-ns', short: 'J', arg: 'required', refused: NS },
  { long: 'empty-ns', arg: 'required', refused: NS },
  { long: 'ext-mount-map', short: 'M', arg: 'required', refused: NS },
  { long: 'enable-external-sharing', arg: 'none', refused: NS },
  { long: 'enable-external-masters', arg: 'none', refused: NS },
  { long: 'skip-mnt', arg: 'required', refused: NS },
  { long: 'enable-fs', arg: 'required', refused: NS },
  { long: 'mntns-compat-mode', arg: 'none', bool: true, refused: NS },
  { long: 'veth-pair', arg: 'required', refused: NS },
  { long: 'weak-sysctls', arg: 'none', bool: true, refused: NS },
  { long: 'page-server', arg: 'none', bool: true, refused: REMOTE },
  { long: 'address', arg: 'required', refused: REMOTE },
  { long: 'port', arg: 'required', refused: REMOTE },
  { long: 'ps-socket', arg: 'required', refused: REMOTE },
  { long: 'prev-images-dir', arg: 'required', refused: REMOTE },
  { long: 'track-mem', arg: 'none', bool: true, refused: REMOTE },
  { long: 'auto-dedup', arg: 'none', bool: true, refused: REMOTE },
  { long: 'lazy-pages', arg: 'none', refused: REMOTE },
  // it only shapes a pre-dump (refused as a command); a dump ignores it, as CRIU's does
  { long: 'pre-dump-mode', arg: 'required' },
  { long: 'stream', arg: 'none', bool: true, refused: REMOTE },
  { long: 'tls', arg: 'none', bool: true, refused: REMOTE },
  { long: 'tls-cacert', arg: 'required', refused: REMOTE },
  { long: 'tls-cacrl', arg: 'required', refused: REMOTE },
  { long: 'tls-cert', arg: 'required', refused: REMOTE },
  { long: 'tls-key', arg: 'required', refused: REMOTE },
  { long: 'tls-no-cn-verify', arg: 'none', refused: REMOTE },
  { long: 'libdir', short: 'L', arg: 'required', refused: 'plugins are built into this engine (amdgpu); none are loaded from a directory' },
  { long: 'action-script', arg: 'required', refused: 'action scripts are not run by this engine' },
  { long: 'exec-cmd', arg: 'none', refused: 'this engine does not exec a command after restore' },
  { long: 'cpu-cap', arg: 'optional', refused: 'this engine always checks the XSAVE features of the set against this CPU' },
  // what irmap gives CRIU (a watch's path) is what this engine always records, found through the
  // watch's file handle; the restore adds watches by that path
  { long: 'force-irmap', arg: 'none', bool: true },
  { long: 'irmap-scan-path', arg: 'required' },
  { long: 'lsm-profile', arg: 'required', refused: 'LSM profiles are not handled by this engine' },
  { long: 'lsm-mount-context', arg: 'required', refused: 'LSM profiles are not handled by this engine' },
  { long: 'deprecated', arg: 'none', bool: true, refused: 'no deprecated behaviour is kept by this engine' },
  { long: 'unprivileged', arg: 'none', bool: true, refused: 'this engine runs as root' },
  { long: 'allow-uprobes', arg: 'none', bool: true, refused: 'uprobes mappings are not handled by this engine' },
  { long: 'skip-file-rwx-check', arg: 'none', bool: true, refused: 'this engine always checks files it reopens' },
  { long: 'pidfd-store', arg: 'required', refused: REMOTE },
];

const BY_LONG = new Map(TABLE.map((d) => [d.long, d]));
const BY_SHORT = new Map(TABLE.filter((d) => d.short).map((d) => [d.short!, d]));

export interface ParsedArgs {
  command?: string;
  /** option name -> its values in order (true for flags, false for --no-X) */
  values: Map<string, (string | boolean)[]>;
  /** CRIU's log level, 2 (warnings) unless -v says otherwise */
  verbosity: number;
  /** refused options, in order, with the reason */
  refused: { option: string; why: string }[];
  /** arguments after the command that are not options */
  rest: string[];
}

function usageError(msg: string): EngineError {
  return new EngineError(msg, 'EUSAGE');
}

/** C's atoi: leading digits, else 0 */
const atoi = (s: string) => {
  const m = /^\s*([+-]?\d+)/.exec(s);
  return m ? Number(m[1]) : 0;
};

export function parseArgs(argv: string[]): ParsedArgs {
  const out: ParsedArgs = { values: new Map(), verbosity: 2, refused: [], rest: [] };
  const put = (d: OptionDef, v: string | boolean, shown: string) => {
    if (d.long === 'verbosity') {
      if (v === true) out.verbosity++;
      else if (typeof v === 'string') out.verbosity = v.startsWith('v') ? out.verbosity + v.length + 1 : atoi(v);
      return;
    }
    // "--no-X" restores the default, which is always what this engine does
    if (d.refused && v !== false) out.refused.push({ option: shown, why: d.refused });
    const list = out.values.get(d.long) ?? [];
    list.push(v);
    out.values.set(d.long, list);
  };
  let i = 0;
  let endOfOptions = false;
  while (i < argv.length) {
    const a = argv[i++];
    if (endOfOptions || a === '-' || !a.startsWith('-')) {
      if (out.command === undefined) out.command = a;
      else out.rest.push(a);
      continue;
    }
    if (a === '--') {
      endOfOptions = true;
      continue;
    }
    if (a.startsWith('--')) {
      const eq = a.indexOf('=');
      const name = a.slice(2, eq < 0 ? undefined : eq);
      const attached = eq < 0 ? undefined : a.slice(eq + 1);
      const { def, negated } = findLong(name);
      if (negated) {
        if (attached !== undefined) throw usageError(`option '--${name}' doesn't allow an argument`);
        put(def, false, a);
        continue;
      }
      if (def.arg === 'none') {
        if (attached !== undefined) throw usageError(`option '--${def.long}' doesn't allow an argument`);
        put(def, true, `--${def.long}`);
      } else if (def.arg === 'optional') {
        put(def, attached ?? true, `--${def.long}`);
      } else {
        const v = attached ?? argv[i++];
        if (v === undefined) throw usageError(`option '--${def.long}' requires an argument`);
        put(def, v, `--${def.long}`);
      }
      continue;
    }
    // a bundle of short options: "-dR", "-t123", "-v4"
    for (let k = 1; k < a.length; k++) {
      const def = BY_SHORT.get(a[k]);
      if (!def) throw usageError(`invalid option -- '${a[k]}'`);
      const tail = a.slice(k + 1);
      if (def.arg === 'none') {
        put(def, true, `-${a[k]}`);
        continue;
      }
      if (def.arg === 'optional') put(def, tail.length ? tail : true, `-${a[k]}`);
      else {
        const v = tail.length ? tail : argv[i++];
        if (v === undefined) throw usageError(`option requires an argument -- '${a[k]}'`);
        put(def, v, `-${a[k]}`);
      }
      break;
    }
  }
  return out;
}

function findLong(name: string): { def: OptionDef; negated: boolean } {
  const exact = BY_LONG.get(name);
  if (exact) return { def: exact, negated: false };
  if (name.startsWith('no-')) {
    const d = BY_LONG.get(name.slice(3));
    if (d?.bool) return { def: d, negated: true };
  }
  // getopt_long takes an unambiguous prefix
  const hits = TABLE.filter((d) => d.long.startsWith(name));
  if (hits.length === 1) return { def: hits[0], negated: false };
  if (hits.length > 1) throw usageError(`option '--${name}' is ambiguous; possibilities: ${hits.map((d) => `'--${d.long}'`).join(' ')}`);
  throw usageError(`unrecognized option '--${name}'`);
}

/** The last value given for an option (CRIU: a later option overrides an earlier one). */
export function last(p: ParsedArgs, name: string): string | boolean | undefined {
  const l = p.values.get(name);
  return l?.[l.length - 1];
}

export function flag(p: ParsedArgs, name: string): boolean {
  return last(p, name) === true;
}

export function str(p: ParsedArgs, name: string): string | undefined {
  const v = last(p, name);
  return typeof v === 'string' ? v : undefined;
}

/** Every option this engine refuses, for --help. */
export function refusedOptions(): { option: string; why: string }[] {
  return TABLE.filter((d) => d.refused).map((d) => ({ option: `--${d.long}${d.short ? `/-${d.short}` : ''}`, why: d.refused! }));
}
