// A second oracle: Debian's CRIT 3.17 (apt-get install criu), run for real on every corpus
// image it can read. Our JSON must agree on every field 3.17 knows; the fields it lacks are
// CRIU 4.x additions (spec §6), and its pagemap field 2 is named nr_pages (ours compat_nr_pages).
import { describe, it, expect } from 'vitest';
import * as fs from 'fs';
import * as path from 'path';
import { spawnSync } from 'child_process';
import { corpusSets, decodedImages, haveCorpus } from '../helpers/corpus';
import { decodeToString } from '../helpers/inproc';
import { parseJson, JsonValue } from '../../images/json/parse';

const DEBIAN_CRIT = '/usr/bin/crit';
const haveDebianCrit = fs.existsSync(DEBIAN_CRIT);
if (!haveDebianCrit) console.warn('\n*** /usr/bin/crit (Debian criu) not installed: the second-oracle comparison is SKIPPED ***\n');

/** Every key of `theirs` is in `ours` with an equal value (recursively). Returns mismatches. */
function subset(theirs: JsonValue, ours: JsonValue, at: string, magic: string, out: string[]): void {
  if (Array.isArray(theirs)) {
    if (!Array.isArray(ours) || ours.length !== theirs.length) { out.push(`${at}: array length ${Array.isArray(ours) ? ours.length : 'n/a'} vs ${theirs.length}`); return; }
    theirs.forEach((t, i) => subset(t, ours[i], `${at}[${i}]`, magic, out));
    return;
  }
  if (theirs !== null && typeof theirs === 'object') {
    if (ours === null || typeof ours !== 'object' || Array.isArray(ours)) { out.push(`${at}: not an object`); return; }
    for (const k of Object.keys(theirs)) {
      const ourKey = magic === 'PAGEMAP' && k === 'nr_pages' ? 'compat_nr_pages' : k;
      if (!(ourKey in ours)) { out.push(`${at}.${k}: missing in ours`); continue; }
      subset(theirs[k], (ours as Record<string, JsonValue>)[ourKey], `${at}.${k}`, magic, out);
    }
    return;
  }
  if (theirs !== ours) out.push(`${at}: ${String(ours)} vs Debian ${String(theirs)}`);
}

describe.skipIf(!haveCorpus || !haveDebianCrit)('agreement with Debian CRIT 3.17 on the fields it knows', () => {
  for (const set of corpusSets()) {
    it(set.name, () => {
      let compared = 0;
      for (const img of decodedImages(set)) {
        const file = path.join(set.dir, img);
        const r = spawnSync(DEBIAN_CRIT, ['decode', '-i', file], { maxBuffer: 1 << 28, timeout: 120_000 });
        expect(r.error, `${DEBIAN_CRIT} on ${img}`).toBeUndefined();
        if (r.status !== 0) continue; // 3.17 cannot read it (e.g. kinds new in 4.x); covered by the corpus oracle
        const theirs = parseJson(r.stdout.toString()) as Record<string, JsonValue>;
        const ours = parseJson(decodeToString(file, 'plain'));
        const bad: string[] = [];
        subset(theirs, ours, img, theirs.magic as string, bad);
        expect(bad, bad.slice(0, 5).join('\n')).toEqual([]);
        compared++;
      }
      expect(compared).toBeGreaterThan(0);
    });
  }
});
