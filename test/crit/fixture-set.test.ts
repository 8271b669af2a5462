// The engine-made fixture set (fixtures/sets/counter, see its README): the crit commands the
// README shows work on it, and the memory reader finds the program's known patterns.
import { describe, it, expect } from 'vitest';
import * as fs from 'fs';
import * as path from 'path';
import { crit, ROOT } from '../helpers/cli';
import { ImageSet } from '../../images/imageset';

const SET = path.join(ROOT, 'fixtures', 'sets', 'counter');

describe('fixtures/sets/counter', () => {
  it('every protobuf image decodes and re-encodes byte for byte', () => {
    for (const f of fs.readdirSync(SET).filter((x) => !x.startsWith('pages-'))) {
      const d = crit(['decode', '-i', path.join(SET, f)]);
      expect(d.status, `${f}: ${d.stderr}`).toBe(0);
      const e = crit(['encode'], d.stdout);
      expect(e.stdout.equals(fs.readFileSync(path.join(SET, f))), f).toBe(true);
    }
  });
  it('explorers and the memory reader see what the program had', () => {
    expect(crit(['x', SET, 'fds']).stdout.toString()).toMatch(/\t {6}5: \/tmp\/fx\/counter\.txt\n/);
    const set = new ImageSet(SET);
    const pid = set.tasks()[0].pid;
    const mem = set.memory(pid);
    const data = mem.readBytes(0x55c94f33f080n, 3 * 4096);
    expect(data.every((b, i) => b === ((i * 7 + 1) & 0xff))).toBe(true);
    const heap = mem.readBytes(0x55c956e082a0n, 65536);
    expect(heap.every((b, i) => b === (0xa5 ^ (i >> 12)))).toBe(true);
    const pipes = crit(['decode', '-i', path.join(SET, 'pipes-data.img')]).stdout.toString();
    expect(pipes).toContain(`"extra": "${Buffer.from('hello-pipe').toString('base64')}\\n"`);
    set.close();
  });
});
