// ink 6 is an ES module with top-level await, so our CommonJS build cannot require() it. It is
// loaded once with a real dynamic import() before anything renders; the components and hooks
// below are live bindings (CommonJS reads them through the exports object at call time).
import type * as InkModule from 'ink' with { 'resolution-mode': 'import' };
import * as path from 'path';
import { pathToFileURL } from 'url';

export type Ink = typeof InkModule;
export type Key = InkModule.Key;

export let Box: Ink['Box'];
export let Text: Ink['Text'];
export let useInput: Ink['useInput'];
export let useApp: Ink['useApp'];
export let useStdout: Ink['useStdout'];
export let render: Ink['render'];

let loaded: Ink | undefined;

/** Use an already imported ink (tests import it directly). */
export function setInk(m: Ink): Ink {
  loaded = m;
  Box = m.Box;
  Text = m.Text;
  useInput = m.useInput;
  useApp = m.useApp;
  useStdout = m.useStdout;
  render = m.render;
  return m;
}

// tsc (module commonjs) rewrites import() into require(); a Function body is left alone.
const importEsm = new Function('url', 'return import(url)') as (url: string) => Promise<unknown>;

export async function loadInk(): Promise<Ink> {
  if (loaded) return loaded;
  // resolve from here (the "default" export condition also serves require.resolve), then import by URL
  const file = require.resolve('ink');
  return setInk((await importEsm(pathToFileURL(path.resolve(file)).href)) as Ink);
}
