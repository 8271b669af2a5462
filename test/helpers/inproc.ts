// In-process decode/encode through the same streaming paths the CLI uses (fast for tests).
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { ByteSource } from '../../images/source';
import { encode, decodeStream } from '../../crit/commands/codec';
import type { Mode } from '../../images/json/tojson';

class StringSink {
  parts: string[] = [];
  s = '';
  flush(): void { this.parts.push(this.s); this.s = ''; }
}

export function decodeToString(file: string, mode: Mode, nopl = false): string {
  const src = ByteSource.open(file);
  try {
    const sink = new StringSink();
    decodeStream(src, path.basename(file), sink, mode, nopl);
    sink.flush();
    return sink.parts.join('');
  } finally {
    src.close();
  }
}

export function decodeBuffer(buf: Uint8Array, name: string, mode: Mode = 'plain'): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'crit-dec-'));
  const tmp = path.join(dir, name);
  fs.writeFileSync(tmp, buf);
  try {
    return decodeToString(tmp, mode);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/** Encodes JSON text with the very function `crit encode -i IN -o OUT` runs. */
export function encodeFromString(json: string): Buffer {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'crit-enc-'));
  const inFile = path.join(dir, 'in.json');
  const outFile = path.join(dir, 'out.img');
  fs.writeFileSync(inFile, json);
  try {
    encode(inFile, outFile);
    return fs.readFileSync(outFile);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
