// The byte-for-byte oracle: every image of the real CRIU sets decodes to exactly CRIT 4.2's
// JSON (plain and --pretty), encodes back to the original bytes from both, and `info` agrees.
import { describe, it, expect } from 'vitest';
import * as fs from 'fs';
import * as path from 'path';
import { corpusSets, decodedImages, haveCorpus } from '../helpers/corpus';
import { decodeToString, encodeFromString } from '../helpers/inproc';
import { imageInfo } from '../../crit/commands/codec';

// Deliberate differences from CRIT 4.2, by name (README "Where we differ from CRIT"):
// `info` counts entries, where CRIT walks size words and miscounts kinds with extra payloads.
const INFO_COUNTS_EXTRAS = new Set(['PIPES_DATA', 'FIFO_DATA', 'SK_QUEUES', 'TCP_STREAM', 'IPCNS_MSG', 'IPCNS_SEM', 'IPCNS_SHM', 'BPFMAP_DATA']);

describe.skipIf(!haveCorpus)('corpus: decode, encode and info match CRIT 4.2', () => {
  for (const set of corpusSets()) {
    describe(set.name, () => {
      for (const img of decodedImages(set)) {
        const file = path.join(set.dir, img);
        it(`${img}: plain and pretty JSON are CRIT's bytes; both encode back exactly`, () => {
          const orig = fs.readFileSync(file);
          const plain = fs.readFileSync(path.join(set.dir, 'expected', 'decode', img + '.json'), 'utf8');
          const pretty = fs.readFileSync(path.join(set.dir, 'expected', 'decode-pretty', img + '.json'), 'utf8');
          expect(decodeToString(file, 'plain') + '\n').toBe(plain);
          expect(decodeToString(file, 'pretty') + '\n').toBe(pretty);
          expect(Buffer.compare(encodeFromString(plain), orig)).toBe(0);
          expect(Buffer.compare(encodeFromString(pretty), orig)).toBe(0);
        });
      }
      const infoDir = path.join(set.dir, 'expected', 'info');
      if (fs.existsSync(infoDir)) {
        it('info agrees with CRIT (except the documented extra-payload counts)', () => {
          for (const f of fs.readdirSync(infoDir).filter((x) => x.endsWith('.txt'))) {
            const img = path.join(set.dir, f.slice(0, -4));
            const want = JSON.parse(fs.readFileSync(path.join(infoDir, f), 'utf8'));
            const ours = imageInfo(img);
            if (INFO_COUNTS_EXTRAS.has(want.magic)) {
              expect(ours.magic).toBe(want.magic);
              // our count is the number of entries CRIT itself decodes; its `info` walk miscounts
              const critDecode = JSON.parse(fs.readFileSync(path.join(set.dir, 'expected', 'decode', f.slice(0, -4) + '.json'), 'utf8'));
              expect(ours.count).toBe(critDecode.entries.length);
            } else {
              expect(ours, f).toEqual(want);
            }
          }
        });
      }
      it('raw pages files are refused with a clear reason, as CRIT refuses them', () => {
        const fails = path.join(set.dir, 'expected', 'failures.txt');
        if (!fs.existsSync(fails)) return;
        for (const line of fs.readFileSync(fails, 'utf8').split('\n').filter(Boolean)) {
          const name = line.split(':')[0];
          const file = path.join(set.dir, name);
          if (!fs.existsSync(file)) continue;
          expect(() => decodeToString(file, 'plain')).toThrow(/raw page data/);
        }
      });
    });
  }
});
