// The crit command line: CRIT's subcommands (decode, encode, info, show, x) and ours.
import { parseArgs, UsageError, OptSpec } from './args';
import { abortAll } from './io';
import { ImageError } from '../images/image';

const VERSION = '0.1.0';

const USAGE = `usage: crit [-h] [--version] {decode,encode,info,show,x} ...

CRIU image tool: decode, encode and explore checkpoint images (a faster,
exact successor of CRIU's CRIT, with the same JSON).

commands:
  decode   convert a criu image from binary to JSON
  encode   convert a criu image from JSON to binary
  info     show the kind and entry count of an image
  show     convert a criu image from binary to human-readable JSON
  x        explore an images directory (ps, fds, mems, rss)

Run 'crit COMMAND -h' for a command's options.`;

const SUB_USAGE: Record<string, string> = {
  decode: `usage: crit decode [-h] [--pretty] [-i IN] [-o OUT]

  --pretty           multiline with indents and some numerical fields in field-specific format
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
  x: `usage: crit x [-h] [--json] dir {ps,fds,mems,rss}

  dir      images directory
  --json   print the explorer's data as JSON instead of text`,
};

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
  if (!usage) throw new UsageError(`argument command: invalid choice: '${cmd}' (choose from 'decode', 'encode', 'info', 'show', 'x')`, USAGE);
  const help = () => { process.stdout.write(usage + '\n'); };
  switch (cmd) {
    case 'decode': {
      const p = parseArgs(rest, [HELP, { names: ['--pretty'], key: 'pretty' }, { names: ['-i', '--in'], key: 'in', value: true }, { names: ['-o', '--out'], key: 'out', value: true }], usage, 0);
      if (p.opts.help) return help();
      require('./commands/codec').decode(p.opts.in, p.opts.out, p.opts.pretty ? 'pretty' : 'plain');
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

function isBrokenPipe(e: unknown): boolean {
  return !!e && typeof e === 'object' && (e as NodeJS.ErrnoException).code === 'EPIPE';
}

export function main(argv: string[]): void {
  process.on('SIGINT', () => { abortAll(); process.exit(130); });
  process.on('SIGTERM', () => { abortAll(); process.exit(143); });
  try {
    run(argv);
  } catch (e) {
    abortAll();
    if (isBrokenPipe(e)) process.exit(0);
    if (e instanceof UsageError) {
      process.stderr.write(`${e.usage.split('\n')[0]}\ncrit: error: ${e.message}\n`);
      process.exit(2);
    }
    const known = e instanceof ImageError || (e instanceof Error && ['CliError', 'JsonInputError', 'ExploreError'].includes(e.constructor.name));
    if (known) {
      process.stderr.write(`crit: ${(e as Error).message}\n`);
      process.exit(1);
    }
    if (e instanceof Error && (e as NodeJS.ErrnoException).code && (e as NodeJS.ErrnoException).syscall) {
      process.stderr.write(`crit: ${e.message}\n`);
      process.exit(1);
    }
    // A bug in crit itself: say so plainly, with the stack only when asked for.
    process.stderr.write(`crit: internal error: ${(e as Error)?.message ?? String(e)}\n`);
    if (process.env.CRIT_DEBUG) process.stderr.write(`${(e as Error)?.stack}\n`);
    process.exit(1);
  }
}
