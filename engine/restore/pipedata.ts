// A new pipe or FIFO given its dumped buffer size exactly (a smaller one would block the writer
// sooner) and its queued bytes, through a write end of the engine's.
import * as fs from 'fs';
import { native } from '../../native';
import { EngineError } from '../errors';
import type { PipeData } from './imageset';
import { F_SETPIPE_SZ, F_GETPIPE_SZ } from './sys';

/** `what` names the pipe in errors ("pipes-data.img: pipe 123"). */
export function fillPipe(w: number, queued: PipeData, what: string): void {
  const n = native();
  if (queued.size) {
    let got: number | string;
    try {
      got = n.fcntl(w, F_SETPIPE_SZ, queued.size);
    } catch (e) {
      got = (e as { code?: string }).code ?? String(e);
    }
    if (got !== queued.size) throw new EngineError(`${what}: cannot set its buffer size to ${queued.size} bytes (${typeof got === 'number' ? `got ${got}` : got})`);
  }
  // (the engine's end blocks: bytes beyond the buffer would never go in)
  const room = n.fcntl(w, F_GETPIPE_SZ);
  if (queued.data.length > room) throw new EngineError(`${what}: ${queued.data.length} bytes do not fit its ${room}-byte buffer`);
  let off = 0;
  while (off < queued.data.length) off += fs.writeSync(w, queued.data, off);
}
