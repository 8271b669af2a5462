// The crit command line: CRIT's subcommands (decode, encode, info, show, x) and ours.
import { parseArgs, UsageError, OptSpec } from './args';
import { abortAll, printError } from './io';
import { writeAll } from '../images/image';
import { ImageError } from '../images/image';

const VERSION = '0.1.0';

const USAGE = `usage: crit [-h] [--version] {decode,encode,info,show,x,xray,diff,check,edit,coredump,compress,decompress,tui} ...

CRIU image tool: decode, encode and explore checkpoint images (a faster,
exact successor of CRIU's CRIT, with the same JSON).

commands:
  decode   convert a criu image from binary to JSON
  encode   convert a criu image from JSON to binary
  info     show the kind and entry count of an image
  show     convert a criu image from binary to human-readable JSON
  x        explore an images directory (ps, fds, mems, rss, sk, tree, gpu)
  xray     hexdump, search and raw bytes of a dumped task's memory or GPU buffers
  diff     what changed between two checkpoints (exit 0 same, 1 different, 2 trouble)
  check    validate an images directory and locate damage (exit 0 clean, 1 problems)
  edit     change fields of an image; the rest of the file stays byte-identical
  coredump an ELF core file per task (core.PID) for gdb, from an images directory
  compress   a copy of an images directory with its memory pages LZ4-compressed (CRIU 2026)
  decompress a copy of an images directory with its compressed pages stored plainly
  tui      interactive explorer: processes, memory x-ray, GPU buffers, images, diff

Run 'crit COMMAND -h' for a command's options.`;

const SUB_USAGE: Record<string, string> = {
  decode: `usage: crit decode [-h] [--pretty] [--salvage] [-i IN] [-o OUT]

  --pretty           multiline with indents and some numerical fields in field-specific format
  --salvage          for a damaged image: print every entry that can still be read, then
                     say on stderr where and why reading stopped (exit 1 if it stopped early)
  -i IN, --in IN     criu image in binary format to be decoded (stdin by default)
  -o OUT, --out OUT  where to put the criu image in JSON format (stdout by default;
                     a file is written completely or not at all)`,
  encode: `usage: crit encode [-h] [-i IN] [-o OUT]

  -i IN, --in IN     criu image in JSON format to be encoded (stdin by default)
  -o OUT, --out OUT  where to put the criu image in binary format (stdout by default;
                     a file is written completely or not at all)`,
  info: `usage: crit info [-h] in

  in   criu image in binary format`,
  show: `usage: crit show [-h] [--nopl] in

  in       criu image in binary format
  --nopl   do not show entry payload (if exists)`,
  x: `usage: crit x [-h] [--json] dir {ps,fds,mems,rss,sk,tree,gpu}

  dir      images directory
  ps|fds|mems|rss   CRIT's explorers (same text)
  sk       sockets with addresses and queued bytes
  tree     process tree with threads, sessions, groups, argv and env read from memory
  gpu      amdgpu buffer objects: handle, size, domains, GPU VA mappings, contents file
  --json   print the explorer's data as JSON instead of text`,
  xray: `usage: crit xray [-h] dir --pid PID [--addr A [--len N] | --vma I] [options]

  without --addr/--vma: the task's VMAs and how much of each the image holds
  --addr A --len N     hexdump of [A, A+N) (N defaults to 256), annotated with VMAs,
                       files and the pages the image does not hold (and why)
  --vma I              hexdump of VMA number I
  --raw                write the exact bytes to stdout; fails at the first byte the
                       image does not hold unless --zero-fill
  --search TEXT | --hex BYTES | --regex RE
                       list matches (across page boundaries) with --context N bytes (16)
  --strings [--min N]  printable strings of at least N bytes (6)
  --gpu [--bo N]       the same for amdgpu buffer contents (see crit x DIR gpu)
  --patch HEX --addr A change memory bytes in the pages file (atomically; -o OUT to write elsewhere)
  VMA filters, for the VMA list, --search/--hex/--regex and --strings (all given must match):
  --prot P             r-x, rw- (exactly) or w, rx (at least); several with commas
  --range A-B          VMAs overlapping [A, B), and only those bytes (hex, as in /proc/PID/maps)
  --kind K[,K...]      stack, heap, anon, file, shared, vdso, vvar, vsyscall, memfd, sysv
  --json               JSON instead of text
  --color auto|always|never   (NO_COLOR and non-terminals turn colour off)
  --page-size N        page size of the dumped machine (default 4096)`,
};

SUB_USAGE.diff = `usage: crit diff [-h] [--json] [--memory] [--max-pages N] [--page-size N] a b

  a, b             two images directories (A the older, B the newer)
  --json           the differences as JSON (exact values, JSON paths) instead of text
  --memory         also show a hex diff of the pages whose contents differ
  --max-pages N    pages of hex diff to show at most (64)
  --page-size N    page size of the dumped machine (default 4096)
  Exit status: 0 no differences, 1 differences, 2 trouble.`;
SUB_USAGE.check = `usage: crit check [-h] [--json] [--page-size N] dir

  dir              images directory to validate: framing of every file (file, byte offset,
                   entry), required fields, and cross-references (tasks, fds, files,
                   pagemaps and pages files, VMAs, shmem/memfd, parent chain, plugin files);
                   then sense: every thread's ip/sp/TLS against its mappings, signal
                   handlers in executable memory, the tree's threads, sessions and
                   groups, inventory plugins against the plugin files present
  --json           the problems as JSON
  Exit status: 0 clean, 1 problems found.`;
SUB_USAGE.edit = `usage: crit edit [-h] image --set PATH=VALUE [--set PATH=VALUE ...] [-o OUT]

  image            the binary image to change (in place unless -o)
  --set PATH=VALUE set a field: PATH like entries[0].tc.comm or [0].tc.comm; VALUE as in
                   crit encode's JSON (numbers, "0x..." hex, flag names, enum names,
                   JSON for sub-messages and lists; null removes an optional field)
  -o OUT, --out OUT  write the result there instead (always written completely or not at all)`;

SUB_USAGE.coredump = `usage: crit coredump [-h] dir [-p PID] -o OUTDIR [--page-size N]

  dir              images directory (x86_64 or aarch64 dumps; the architecture is the image's)
  -p PID, --pid PID  only this task (default: every task that has memory)
  -o OUTDIR, --out OUTDIR  where to write core.PID (created if missing; each core is written
                   completely or not at all)
  --page-size N    page size of the dumped machine (default 4096)
  Notes as the kernel writes them (NT_PRSTATUS, NT_FPREGSET and NT_X86_XSTATE or NT_ARM_TLS per
  thread, NT_PRPSINFO, NT_SIGINFO, NT_AUXV, NT_FILE) and a PT_LOAD per VMA: the image's pages,
  clean pages of mapped files read from this host, zeros elsewhere (a warning says what could
  not be filled). Load it with: gdb EXE core.PID`;

SUB_USAGE.compress = `usage: crit compress [-h] dir -o OUT [--region SIZE] [--schema g1|g2] [--padded]
                     [--acceleration N] [--page-size N]

  dir              images directory whose memory pages to compress (left unchanged)
  -o OUT, --out OUT  the new images directory (must not exist, or be empty; written
                   completely or not at all)
  --region SIZE    LZ4 blocks of SIZE bytes (e.g. 256K; a multiple of the page size, at most
                   4M) instead of one block per page; G1 marks the inventory compress = 2
  --schema g1|g2   pagemap schema: g1 (compressed_size fields, as CRIU's CRIT writes; the
                   default) or g2 (pagemap_blocks)
  --padded         G2 only: every stored block padded to a page boundary (CRIU's O_DIRECT layout)
  --acceleration N LZ4 acceleration (1=default, higher=faster), 1..65537
  --page-size N    page size of the dumped machine (default 4096)
  Zero pages take no bytes, pages LZ4 cannot shrink by an eighth stay raw, hugetlb and device-
  plugin VMAs stay raw (as CRIU's CRIT). An already compressed set is copied as it is.`;
SUB_USAGE.decompress = `usage: crit decompress [-h] dir -o OUT [--page-size N]

  dir              images directory with compressed pages (either schema; left unchanged)
  -o OUT, --out OUT  the new images directory, with plain pages files (must not exist, or be
                   empty; written completely or not at all)
  --page-size N    page size of the dumped machine (default 4096)`;

SUB_USAGE.tui = `usage: crit tui [-h] dir [dir2]

  dir      images directory to explore (needs a terminal)
  dir2     a second images directory: explore the differences from dir to dir2
  (crit tui -h lists every key)`;

const HELP: OptSpec = { names: ['-h', '--help'], key: 'help' };

function run(argv: string[]): void {
  if (argv[0] === '--version') {
    process.stdout.write(`${VERSION}\n`);
    return;
  }
  if (!argv.length) throw new UsageError('too few arguments', USAGE);
  if (argv[0] === '-h' || argv[0] === '--help') {
    process.stdout.write(USAGE + '\n');
    return;
  }
  const [cmd, ...rest] = argv;
  const usage = SUB_USAGE[cmd];
  if (!usage) throw new UsageError(`argument command: invalid choice: '${cmd}' (choose from 'decode', 'encode', 'info', 'show', 'x', 'xray', 'diff', 'check', 'edit', 'coredump', 'compress', 'decompress', 'tui')`, USAGE);
  const help = () => { process.stdout.write(usage + '\n'); };
  if (cmd === 'xray') {
    const v = (names: string[], key: string): OptSpec => ({ names, key, value: true });
    const p = parseArgs(rest, [HELP, v(['--pid', '-p'], 'pid'), v(['--addr', '-a'], 'addr'), v(['--len', '-n'], 'len'), v(['--vma'], 'vma'),
      { names: ['--raw'], key: 'raw' }, { names: ['--zero-fill'], key: 'zeroFill' }, v(['--search', '-s'], 'search'), v(['--hex'], 'hex'), v(['--regex', '-r'], 'regex'),
      v(['--context', '-c'], 'context'), { names: ['--strings'], key: 'strings' }, v(['--min'], 'min'), { names: ['--gpu'], key: 'gpu' }, v(['--bo'], 'bo'),
      { names: ['--json'], key: 'json' }, v(['--color'], 'color'), v(['--page-size'], 'pageSize'), v(['--patch'], 'patch'), v(['-o', '--out'], 'out'),
      v(['--prot'], 'prot'), v(['--range'], 'range'), v(['--kind'], 'kind')], usage, 1);
    if (p.opts.help) return help();
    if (p.pos.length !== 1) throw new UsageError('the following arguments are required: dir', usage);
    require('./commands/xray').xray(p.pos[0], p.opts);
    return;
  }
  if (cmd === 'diff' || cmd === 'check' || cmd === 'edit' || cmd === 'coredump' || cmd === 'compress' || cmd === 'decompress') return runInspect(cmd, rest, usage, help);
  if (cmd === 'tui') {
    const p = parseArgs(rest, [HELP], usage, 2);
    if (p.opts.help) return void process.stdout.write(require('../tui/main').TUI_USAGE + '\n');
    if (p.pos.length < 1 || p.pos.length > 2) throw new UsageError('the following arguments are required: dir', usage);
    require('../tui/main').runTui(p.pos).then(
      (code: number) => { process.exitCode = code; },
      (e: Error) => {
        const known = ['ImageError', 'ImageSetError', 'MemoryError'].includes(e?.constructor?.name);
        printError(`${known ? '' : 'internal error: '}${e?.message ?? String(e)}`);
        if (process.env.CRIT_DEBUG) process.stderr.write(`${e?.stack}\n`);
        process.exitCode = 1;
      },
    );
    return;
  }
  switch (cmd) {
    case 'decode': {
      const p = parseArgs(rest, [HELP, { names: ['--pretty'], key: 'pretty' }, { names: ['--salvage'], key: 'salvage' }, { names: ['-i', '--in'], key: 'in', value: true }, { names: ['-o', '--out'], key: 'out', value: true }], usage, 0);
      if (p.opts.help) return help();
      if (p.opts.salvage) require('./commands/codec').decodeSalvage(p.opts.in, p.opts.out, p.opts.pretty ? 'pretty' : 'plain');
      else require('./commands/codec').decode(p.opts.in, p.opts.out, p.opts.pretty ? 'pretty' : 'plain');
      return;
    }
    case 'encode': {
      const p = parseArgs(rest, [HELP, { names: ['-i', '--in'], key: 'in', value: true }, { names: ['-o', '--out'], key: 'out', value: true }], usage, 0);
      if (p.opts.help) return help();
      require('./commands/codec').encode(p.opts.in, p.opts.out);
      return;
    }
    case 'info': {
      const p = parseArgs(rest, [HELP], usage, 1);
      if (p.opts.help) return help();
      if (p.pos.length !== 1) throw new UsageError('the following arguments are required: in', usage);
      require('./commands/codec').info(p.pos[0]);
      return;
    }
    case 'show': {
      const p = parseArgs(rest, [HELP, { names: ['--nopl'], key: 'nopl' }], usage, 1);
      if (p.opts.help) return help();
      if (p.pos.length !== 1) throw new UsageError('the following arguments are required: in', usage);
      require('./commands/codec').decode(p.pos[0], undefined, 'pretty', !!p.opts.nopl);
      return;
    }
    case 'x': {
      const p = parseArgs(rest, [HELP, { names: ['--json'], key: 'json' }], usage, 2);
      if (p.opts.help) return help();
      if (p.pos.length !== 2) throw new UsageError('the following arguments are required: dir, what', usage);
      require('./commands/explore').explore(p.pos[0], p.pos[1], { json: !!p.opts.json });
      return;
    }
  }
}

/** crit diff / check / edit / coredump (their exit status is set here; errors go through main). */
function runInspect(cmd: string, rest: string[], usage: string, help: () => void): void {
  const num = (v: unknown, what: string): number | undefined => {
    if (v === undefined) return undefined;
    const n = Number(v);
    if (!Number.isInteger(n) || n <= 0) throw new UsageError(`argument ${what}: expected a positive integer, got '${v}'`, usage);
    return n;
  };
  if (cmd === 'diff') {
    const p = parseArgs(rest, [HELP, { names: ['--json'], key: 'json' }, { names: ['--memory'], key: 'memory' }, { names: ['--max-pages'], key: 'maxPages', value: true }, { names: ['--page-size'], key: 'pageSize', value: true }], usage, 2);
    if (p.opts.help) return help();
    if (p.pos.length !== 2) throw new UsageError('the following arguments are required: a, b', usage);
    process.exitCode = require('./commands/diff').diff(p.pos[0], p.pos[1], { json: !!p.opts.json, memory: !!p.opts.memory, maxPages: num(p.opts.maxPages, '--max-pages'), pageSize: num(p.opts.pageSize, '--page-size') });
    return;
  }
  if (cmd === 'check') {
    const p = parseArgs(rest, [HELP, { names: ['--json'], key: 'json' }, { names: ['--page-size'], key: 'pageSize', value: true }], usage, 1);
    if (p.opts.help) return help();
    if (p.pos.length !== 1) throw new UsageError('the following arguments are required: dir', usage);
    process.exitCode = require('./commands/check').check(p.pos[0], { json: !!p.opts.json, pageSize: num(p.opts.pageSize, '--page-size') });
    return;
  }
  if (cmd === 'coredump') {
    const p = parseArgs(rest, [HELP, { names: ['-p', '--pid'], key: 'pid', value: true }, { names: ['-o', '--out'], key: 'out', value: true }, { names: ['--page-size'], key: 'pageSize', value: true }], usage, 1);
    if (p.opts.help) return help();
    if (p.pos.length !== 1) throw new UsageError('the following arguments are required: dir', usage);
    if (!p.opts.out) throw new UsageError('the following arguments are required: -o/--out OUTDIR', usage);
    require('./commands/coredump').coredump(p.pos[0], { pid: p.opts.pid as string | undefined, out: p.opts.out as string, pageSize: num(p.opts.pageSize, '--page-size') });
    return;
  }
  if (cmd === 'compress' || cmd === 'decompress') {
    const v = (names: string[], key: string): OptSpec => ({ names, key, value: true });
    const specs = [HELP, v(['-o', '--out'], 'out'), v(['--page-size'], 'pageSize')];
    if (cmd === 'compress') specs.push(v(['--region'], 'region'), v(['--schema'], 'schema'), { names: ['--padded'], key: 'padded' }, v(['--acceleration'], 'acceleration'));
    const p = parseArgs(rest, specs, usage, 1);
    if (p.opts.help) return help();
    if (p.pos.length !== 1) throw new UsageError('the following arguments are required: dir', usage);
    if (!p.opts.out) throw new UsageError('the following arguments are required: -o/--out OUT', usage);
    const o = { ...p.opts, out: p.opts.out as string, pageSize: num(p.opts.pageSize, '--page-size') } as Record<string, unknown>;
    require('./commands/compress')[cmd](p.pos[0], o);
    return;
  }
  const p = parseArgs(rest, [HELP, { names: ['--set'], key: 'set', value: true, repeat: true }, { names: ['-o', '--out'], key: 'out', value: true }], usage, 1);
  if (p.opts.help) return help();
  if (p.pos.length !== 1) throw new UsageError('the following arguments are required: image', usage);
  if (!p.opts.set) throw new UsageError('the following arguments are required: --set PATH=VALUE', usage);
  require('./commands/edit').edit(p.pos[0], p.opts.set as string[], p.opts.out as string | undefined);
}

function isBrokenPipe(e: unknown): boolean {
  return !!e && typeof e === 'object' && (e as NodeJS.ErrnoException).code === 'EPIPE';
}

const KNOWN = ['CliError', 'JsonInputError', 'ExploreError', 'EditError', 'CheckError', 'PatchError', 'XrayError', 'VmaFilterError', 'CoredumpError', 'ConvertError', 'Lz4Error', 'MemoryError', 'ImageSetError', 'PageSourceError'];

/**
 * What an error from a command is: 'usage' (exit 2), 'known' (bad input, told plainly, exit
 * 1), 'pipe' (the reader went away) or 'internal' (a bug in crit). The fuzz harness uses
 * the same verdicts.
 */
export function errorKind(e: unknown): 'usage' | 'known' | 'pipe' | 'internal' {
  if (isBrokenPipe(e)) return 'pipe';
  if (e instanceof UsageError) return 'usage';
  if (e instanceof ImageError || (e instanceof Error && KNOWN.includes(e.constructor.name))) return 'known';
  if (e instanceof Error && (e as NodeJS.ErrnoException).code && (e as NodeJS.ErrnoException).syscall) return 'known';
  return 'internal';
}

export function main(argv: string[]): void {
  process.on('SIGINT', () => { abortAll(); process.exit(130); });
  process.on('SIGTERM', () => { abortAll(); process.exit(143); });
  try {
    run(argv);
  } catch (e) {
    abortAll();
    switch (errorKind(e)) {
      case 'pipe':
        process.exit(0);
      // eslint-disable-next-line no-fallthrough
      case 'usage': {
        const u = e as UsageError;
        writeAll(2, Buffer.from(`${u.usage.split('\n')[0]}\n`));
        printError(`error: ${u.message}`);
        process.exit(2);
      }
      // eslint-disable-next-line no-fallthrough
      case 'known':
        printError((e as Error).message);
        process.exit(1);
      // eslint-disable-next-line no-fallthrough
      default:
        // A bug in crit itself: say so plainly, with the stack only when asked for.
        printError(`internal error: ${(e as Error)?.message ?? String(e)}`);
        if (process.env.CRIT_DEBUG) writeAll(2, Buffer.from(`${(e as Error)?.stack}\n`));
        process.exit(1);
    }
  }
}
