// Locating the real CRIU image sets of ../shared/corpus (present in CI, maybe not elsewhere).
import * as fs from 'fs';
import * as path from 'path';

export const CORPUS = process.env.CRIT_CORPUS || path.resolve(__dirname, '..', '..', '..', 'shared', 'corpus');

export const haveCorpus = fs.existsSync(CORPUS);
if (!haveCorpus) {
  // Loud on purpose: these tests are the byte-for-byte oracle.
  console.warn(`\n*** corpus not found at ${CORPUS}: corpus comparisons are SKIPPED ***\n`);
}

export interface CorpusSet {
  name: string;
  dir: string;
}

export function corpusSets(): CorpusSet[] {
  if (!haveCorpus) return [];
  const out: CorpusSet[] = [];
  for (const ver of fs.readdirSync(CORPUS).sort()) {
    const vdir = path.join(CORPUS, ver);
    if (!fs.statSync(vdir).isDirectory()) continue;
    for (const set of fs.readdirSync(vdir).sort()) {
      const dir = path.join(vdir, set);
      if (fs.existsSync(path.join(dir, 'expected'))) out.push({ name: `${ver}/${set}`, dir });
    }
  }
  return out;
}

/** Images of a set that CRIT decoded (those with an expected/decode/<img>.json). */
export function decodedImages(set: CorpusSet): string[] {
  const d = path.join(set.dir, 'expected', 'decode');
  if (!fs.existsSync(d)) return [];
  return fs.readdirSync(d).filter((f) => f.endsWith('.json')).map((f) => f.slice(0, -5)).sort();
}
