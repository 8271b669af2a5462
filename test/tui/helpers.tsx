// Rendering the TUI headless (ink-testing-library) at 80x24 and driving it with keys.
import * as React from 'react';
import * as ink from 'ink';
import { render } from 'ink-testing-library';
import { setInk } from '../../tui/ink';
import { App, AppProps } from '../../tui/app';
import { ImageSet } from '../../images/imageset';

setInk(ink);

export const ESC = '\x1b';
export const ENTER = '\r';
export const DOWN = '\x1b[B';
export const UP = '\x1b[A';
export const TAB = '\t';
export const PGDN = '\x1b[6~';

export function strip(s: string | undefined): string {
  return (s ?? '').replace(/\x1b\[[0-9;]*m/g, '');
}

export interface Tui {
  frame(): string;
  press(...keys: string[]): Promise<void>;
  type(text: string): Promise<void>;
  waitFor(text: string | RegExp, ms?: number): Promise<string>;
  raw(): string;
  unmount(): void;
}

const tick = (ms = 0) => new Promise((r) => setTimeout(r, ms));

export async function tui(dir: string | ImageSet, opts: Partial<AppProps> & { dirB?: string } = {}): Promise<Tui & { set: ImageSet }> {
  const set = typeof dir === 'string' ? new ImageSet(dir) : dir;
  const setB = opts.dirB ? new ImageSet(opts.dirB) : undefined;
  const r = render(<App set={set} setB={setB} width={80} height={23} color={false} {...opts} />);
  await tick(5);
  const t = {
    set,
    frame: () => strip(r.lastFrame()),
    raw: () => r.lastFrame() ?? '',
    async press(...keys: string[]) {
      for (const k of keys) {
        r.stdin.write(k);
        await tick(5);
      }
      await tick(10);
    },
    async type(text: string) {
      for (const ch of text) {
        r.stdin.write(ch);
        await tick(2);
      }
      await tick(10);
    },
    async waitFor(text: string | RegExp, ms = 5000) {
      const t0 = Date.now();
      for (;;) {
        const f = strip(r.lastFrame());
        if (typeof text === 'string' ? f.includes(text) : text.test(f)) return f;
        if (Date.now() - t0 > ms) throw new Error(`timed out waiting for ${text}; screen:\n${f}`);
        await tick(10);
      }
    },
    unmount() {
      r.unmount();
      set.close();
      setB?.close();
    },
  };
  return t;
}
