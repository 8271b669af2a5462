// crit compress DIR -o OUT / crit decompress DIR -o OUT: the set with its memory pages stored
// LZ4-compressed or plainly (CRIT's semantics and messages; OUT is written completely or not
// at all). Errors: "failed to compress checkpoint: ..." on one line, exit 1.
import { compressSet, decompressSet, ConvertError, ConvertReport } from '../../images/memory/convert';
import { SCHEMA_LABEL, Schema } from '../../images/memory/compressed';
import { Lz4Error } from '../../images/memory/lz4';
import { PageSourceError } from '../../images/memory/pagesource';

export { ConvertError };

/** "256K", "4M", "65536": bytes. */
export function parseSize(v: string): number | undefined {
  const m = /^(\d+)([kKmM]i?[bB]?)?$/.exec(v.trim());
  if (!m) return undefined;
  const mult = !m[2] ? 1 : /^k/i.test(m[2]) ? 1024 : 1 << 20;
  return Number(m[1]) * mult;
}

function report(verb: 'compress' | 'decompress', r: ConvertReport, detail: string): void {
  const out: string[] = [];
  if (r.already) out.push(`Checkpoint in ${r.dir} is already ${verb}ed`);
  else {
    out.push(`${verb === 'compress' ? 'Compressing' : 'Decompressing'} checkpoint in ${r.dir}`);
    for (const p of r.pagemaps) {
      const k = (n: number) => `${Math.floor(n / 1024)}K`;
      if (verb === 'compress') {
        if (!p.inBytes) continue; // as CRIT: nothing to say about an empty pages file
        const saved = ((1 - p.outBytes / p.inBytes) * 100).toFixed(1);
        out.push(`  ${p.name}: ${p.pages} pages (${k(p.inBytes)} -> ${k(p.outBytes)}, ${saved}% saved)`);
      } else out.push(`  ${p.name}: ${p.pages} pages (${k(p.inBytes)} -> ${k(p.outBytes)})`);
    }
  }
  for (const s of r.skipped) out.push(`  note: subdirectory ${s}/ not copied`);
  out.push(`Done: ${r.out}${r.already ? ' (a copy)' : detail}`);
  process.stdout.write(out.join('\n') + '\n');
}

function wrap(verb: string, f: () => void): void {
  try {
    f();
  } catch (e) {
    if (e instanceof ConvertError || e instanceof PageSourceError || e instanceof Lz4Error || (e instanceof Error && ['ImageError', 'ImageSetError'].includes(e.constructor.name)) || (e as NodeJS.ErrnoException)?.syscall) {
      throw new ConvertError(`failed to ${verb} checkpoint: ${(e as Error).message}`);
    }
    throw e;
  }
}

export function compress(dir: string, opts: { out: string; region?: string; schema?: string; padded?: boolean; acceleration?: string; pageSize?: number }): void {
  let blockBytes: number | undefined;
  if (opts.region !== undefined) {
    blockBytes = parseSize(opts.region);
    if (blockBytes === undefined) throw new ConvertError(`--region: '${opts.region}' is not a size (e.g. 262144, 256K, 4M)`);
  }
  const schema = (opts.schema ?? 'g1').toLowerCase();
  if (schema !== 'g1' && schema !== 'g2') throw new ConvertError(`--schema: '${opts.schema}' is neither g1 nor g2`);
  const acceleration = opts.acceleration !== undefined ? Number(opts.acceleration) : undefined;
  wrap('compress', () => {
    const r = compressSet(dir, opts.out, { schema: schema as Schema, blockBytes, padded: opts.padded, acceleration, pageSize: opts.pageSize });
    const gran = blockBytes ? `blocks of ${blockBytes} bytes` : 'per page';
    report('compress', r, ` (LZ4, ${gran}, ${SCHEMA_LABEL[schema as Schema]}${opts.padded ? ', padded' : ''})`);
  });
}

export function decompress(dir: string, opts: { out: string; pageSize?: number }): void {
  wrap('decompress', () => report('decompress', decompressSet(dir, opts.out, { pageSize: opts.pageSize }), ''));
}
