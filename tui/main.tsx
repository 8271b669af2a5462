// `crit tui DIR [DIR2]`: checks the terminal, loads ink (an ES module) and runs the app until q.
// React is loaded only here, after NODE_ENV is settled: its development build is several
// times slower to load and to render.
import { ImageSet } from '../images/imageset';
import { loadInk, render } from './ink';
import { keyReference } from './keys';

export const TUI_USAGE = `usage: crit tui [-h] dir [dir2]

  dir      images directory to explore
  dir2     a second images directory: explore the differences from dir to dir2

An interactive explorer (process tree, tasks, memory x-ray, GPU buffers, images).
Needs a terminal; for scripts use crit x / crit show / crit decode instead.

${keyReference()}`;

export class TuiError extends Error {}

export async function runTui(dirs: string[], io: { stdin?: NodeJS.ReadStream; stdout?: NodeJS.WriteStream } = {}): Promise<number> {
  const stdout = io.stdout ?? process.stdout;
  const stdin = io.stdin ?? process.stdin;
  if (!stdout.isTTY || !stdin.isTTY) {
    process.stderr.write(`crit tui: not a terminal; use the crit commands instead (crit x ${dirs[0] ?? 'DIR'} ps|fds|mems|rss, crit show IMAGE, crit decode)\n`);
    return 1;
  }
  if (process.env.NODE_ENV === undefined) process.env.NODE_ENV = 'production';
  const set = new ImageSet(dirs[0]);
  const setB = dirs[1] ? new ImageSet(dirs[1]) : undefined;
  // ink decides once, when it loads, whether it runs in CI (and then prints only the last
  // frame), and chalk whether to colour (never, under CI); on a real terminal we want both
  // interactive and coloured whatever the environment says, so CI variables are hidden while
  // they load
  const hidden: [string, string | undefined][] = Object.keys(process.env)
    .filter((k) => k === 'CI' || k === 'CONTINUOUS_INTEGRATION' || k.startsWith('CI_'))
    .map((k) => [k, process.env[k]]);
  for (const [k] of hidden) delete process.env[k];
  try {
    await loadInk();
  } finally {
    for (const [k, v] of hidden) process.env[k] = v;
  }
  const React = await import('react');
  const { App } = await import('./app');
  const { noColor } = await import('./ui');
  stdout.write('\x1b[?1049h\x1b[H'); // the alternate screen, as full-screen tools do
  const restore = () => stdout.write('\x1b[?1049l');
  process.once('exit', restore);
  try {
    const inst = render(React.createElement(App, { set, setB, color: !noColor() }), { stdout, stdin, exitOnCtrlC: true, patchConsole: true, maxFps: 60 });
    await inst.waitUntilExit();
  } finally {
    restore();
    process.removeListener('exit', restore);
    set.close();
    setB?.close();
  }
  return 0;
}
